//! Test only: the crate's top-level modules import each other without
//! cycles. A module's imports are every `crate::<module>` path in its file
//! (or its directory), comments left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module name → modules it names, read from the source tree.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f);
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "module_graph" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let deps = g.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    g
}

/// A cycle, as the modules on it, if there is one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(g, m, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 20, "read the source tree: {g:?}");
    assert!(g["worker"].contains("executor"), "{:?}", g["worker"]);
    if let Some(c) = cycle(&g) {
        panic!(
            "modules import each other in a cycle: {}; move what both need into a module of its own",
            c.join(" -> ")
        );
    }
}

#[test]
fn a_cycle_is_found() {
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.to_owned()).or_default().insert(b.to_owned());
    }
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.get_mut("c").map(|d| d.remove("a"));
    assert_eq!(cycle(&g), None);
}

#[test]
fn every_file_is_in_the_code_map_and_says_what_it_owns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("../../ARCHITECTURE.md")).unwrap_or_default();
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut unnamed = Vec::new();
    let mut undocumented = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap_or(f);
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
        let named = match (name.as_deref(), rel.parent()) {
            (Some("lib.rs"), _) => true,
            (Some("mod.rs"), Some(dir)) => map.contains(&format!("`{}/`", dir.display())),
            (Some(n), _) => map.contains(&format!("`{n}`")) || map.contains(&format!("{n}`")),
            _ => false,
        };
        if !named {
            unnamed.push(rel.display().to_string());
        }
        let text = std::fs::read_to_string(f).unwrap_or_default();
        if !text.trim_start().starts_with("//!") {
            undocumented.push(rel.display().to_string());
        }
    }
    assert!(files.len() > 30, "read the source tree");
    assert!(
        unnamed.is_empty(),
        "ARCHITECTURE.md's code map does not name {unnamed:?}; add each with what it owns"
    );
    assert!(
        undocumented.is_empty(),
        "{undocumented:?} do not open with a //! comment saying what they own"
    );
}
