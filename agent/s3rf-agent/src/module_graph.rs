//! Test only: the layout rules of s3rf-agent and s3rf-core. Top-level
//! modules import each other without cycles (a module's imports are every
//! `crate::<module>` path in its file or directory, comments left out);
//! every source file of every crate in `agent/` is in ARCHITECTURE.md's
//! code map and opens with a `//!` comment; s3rf-core depends on no IO
//! crate.

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

/// The source directories of s3rf-agent and s3rf-core.
fn crates() -> [std::path::PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("src"), root.join("../s3rf-core/src")]
}

#[test]
fn the_module_graph_has_no_cycle() {
    let [agent, core] = crates();
    let g = graph(&agent);
    assert!(g.len() > 20, "read the source tree: {g:?}");
    assert!(g["worker"].contains("executor"), "{:?}", g["worker"]);
    let core = graph(&core);
    assert!(core["plan"].contains("settings"), "{:?}", core.get("plan"));
    for g in [g, core] {
        if let Some(c) = cycle(&g) {
            panic!(
                "modules import each other in a cycle: {}; move what both need into a module of its own",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn the_core_crate_depends_on_no_io_crate() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../s3rf-core/Cargo.toml"),
    )
    .unwrap_or_default();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|d| d.split("\n[").next())
        .unwrap_or_default();
    assert!(deps.contains("serde"), "read the manifest: {deps}");
    for io in [
        "tokio",
        "aws-",
        "async-nats",
        "wasmtime",
        "hyper",
        "reqwest",
    ] {
        assert!(
            !deps.contains(io),
            "s3rf-core must stay pure, but depends on {io}; do the IO in s3rf-agent"
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
    let mut files = Vec::new();
    let others =
        ["s3rf-wire", "s3rf-testkit", "s3rf-bench"].map(|c| root.join("..").join(c).join("src"));
    for src in crates().into_iter().chain(others) {
        let mut found = Vec::new();
        sources(&src, &mut found);
        files.extend(found.into_iter().map(|f| (src.clone(), f)));
    }
    let mut unnamed = Vec::new();
    let mut undocumented = Vec::new();
    for (src, f) in &files {
        let rel = f.strip_prefix(src).unwrap_or(f);
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
