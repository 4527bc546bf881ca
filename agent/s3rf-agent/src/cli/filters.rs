//! `s3rf-agent filter test` and `filter list`: trying a Wasm filter on
//! keys, and listing the filters a config would load.

use super::*;

pub(super) fn filter_test(
    args: &FilterTestArgs,
    limits: crate::config::FilterLimits,
) -> anyhow::Result<ExitCode> {
    use crate::filter::{Chain, Kind, ObjectInput, Verdict, dir};
    use std::io::BufRead as _;

    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("filter.wasm")
        .to_owned();
    let params = args.params.clone().or_else(|| {
        ["toml", "json"]
            .iter()
            .map(|ext| args.file.with_extension(ext))
            .find(|p| p.is_file())
    });
    let entry = dir::Entry {
        name: name.clone(),
        wasm: args.file.clone(),
        params,
    };
    let loaded = dir::load(&entry, limits).with_context(|| format!("filter {name} refused"))?;
    eprintln!("filter {name}@{}", loaded.version);
    let chain = Chain::new(vec![std::sync::Arc::new(loaded)]);
    let mut lines: Box<dyn Iterator<Item = String>> = if args.keys.is_empty() {
        Box::new(std::io::stdin().lock().lines().map_while(Result::ok))
    } else {
        Box::new(args.keys.clone().into_iter())
    };
    let mut failed = false;
    for line in &mut lines {
        let (key, size) = match line.split_once('\t') {
            Some((k, s)) => (k.to_owned(), s.trim().parse().ok().or(args.size)),
            None => (line.clone(), args.size),
        };
        if key.is_empty() {
            continue;
        }
        let input = ObjectInput {
            kind: Some(if args.delete {
                Kind::Delete
            } else {
                Kind::Copy
            }),
            size: if args.delete { None } else { size },
            src_endpoint: args.endpoint.clone(),
            src_bucket: args.bucket.clone(),
            src_key: key.clone(),
            bucket: args.bucket.clone(),
            key: key.clone(),
            ..ObjectInput::default()
        };
        match chain.decide(input) {
            Ok(Verdict::Skip { reason, .. }) => println!("{key}\tskip\t{reason}"),
            Ok(Verdict::Proceed { renamed: false, .. }) => println!("{key}\tkeep"),
            Ok(Verdict::Proceed {
                bucket, key: to, ..
            }) if bucket == args.bucket => {
                println!("{key}\trename\t{to}");
            }
            Ok(Verdict::Proceed {
                bucket, key: to, ..
            }) => {
                println!("{key}\trename\t{bucket}/{to}");
            }
            Err(e) => {
                failed = true;
                println!("{key}\terror\t{e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn filter_list(cfg: &Config) -> anyhow::Result<ExitCode> {
    let Some(dir) = cfg.filters.dir.clone() else {
        println!("no filter directory configured; set [filters] dir");
        return Ok(ExitCode::SUCCESS);
    };
    crate::filter::dir::scan(&dir)?;
    let filters = crate::filter::Filters::default();
    let mut watcher = crate::filter::Watcher::new(dir.clone(), cfg.filters.limits, filters);
    watcher.refresh();
    let status = watcher.status();
    println!(
        "{} ({} filter file(s), run in this order)",
        dir.display(),
        status.len()
    );
    let mut refused = false;
    for s in status {
        match (&s.version, &s.error) {
            (Some(v), None) => println!("  {}  {v}  ok", s.name),
            (_, Some(e)) => {
                refused = true;
                println!("  {}  -  refused: {e}", s.name);
            }
            (None, None) => println!("  {}  -  not loaded", s.name),
        }
    }
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
