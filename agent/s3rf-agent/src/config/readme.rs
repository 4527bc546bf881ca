//! Test only: README.md's configuration reference is true. Every key of
//! every section is in its table, no table names a key the code lacks, and
//! every default the README states is the default the code applies.
//!
//! The keys come from the serde derive itself (the field list it hands to
//! `deserialize_struct`); a stated default is checked by reading the section
//! with only that key set and comparing it with the section left empty.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Visitor};

use super::*;

/// The field names serde's derive knows for `T`.
fn fields<T: de::DeserializeOwned>() -> BTreeSet<String> {
    struct Introspect<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for Introspect<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(de::Error::custom("introspected"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut got = None;
    let _ = T::deserialize(Introspect(&mut got));
    got.unwrap_or_default()
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// One row of a README table: its keys and the default it states.
#[derive(Debug)]
struct Row {
    keys: Vec<String>,
    default: String,
}

/// README's tables by section heading (`[nats]`, `[endpoints.<name>]`, …).
fn readme_tables() -> BTreeMap<String, Vec<Row>> {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("## Configuration reference")
        .expect("README has a configuration reference");
    let body = &readme[start..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 3);
    let mut tables: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut section = None;
    for line in body[..end].lines() {
        if let Some(h) = line.strip_prefix("### ") {
            let name = h.split('`').nth(1).unwrap_or(h).to_owned();
            tables.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        let Some(s) = &section else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "key" || cells[1].starts_with("---") {
            continue;
        }
        let keys = cells[1]
            .split(',')
            .map(|k| k.trim().trim_matches('`').to_owned())
            .collect();
        let row = Row {
            keys,
            default: cells[2].to_owned(),
        };
        tables.entry(s.clone()).or_default().push(row);
    }
    tables
}

/// The TOML value a README default stands for, or `None` for a default
/// that is not a value ("—", "none", "AWS", "state dir", …).
fn literal(default: &str) -> Option<String> {
    let d = default.trim();
    let quoted = d.starts_with('`') && d.ends_with('`') && d.len() > 2;
    let d = d.trim_matches('`');
    if d == "true" || d == "false" || d.parse::<i64>().is_ok() {
        return Some(d.to_owned());
    }
    quoted.then(|| format!("{d:?}"))
}

/// A whole config with `key = value` in `section` (queue keys in a queue
/// that has its required keys), validated and printed: two configs the
/// runtime treats alike print alike.
fn parse_with(section: &str, key: Option<(&str, &str)>) -> String {
    let set = key.map(|(k, v)| format!("{k} = {v}\n")).unwrap_or_default();
    let text = match section {
        "[endpoints.<name>]" => format!("[endpoints.e]\n{set}"),
        "[nats]" => format!("[nats]\n{set}[endpoints.e]\n"),
        "[bridge]" => {
            let queue_key = key.is_some_and(|(k, _)| k.starts_with("queues[]."));
            let (top, queue) = match queue_key {
                true => (String::new(), set.replacen("queues[].", "", 1)),
                false => (set, String::new()),
            };
            format!(
                "[bridge]\n{top}[[bridge.queues]]\nqueue_url = \"http://q\"\nsqs_endpoint = \"e\"\nsrc = \"e\"\ndst = \"e\"\n{queue}"
            )
        }
        s => format!("{s}\n{set}"),
    };
    let text = if section.starts_with("[endpoints") || section == "[nats]" {
        text
    } else {
        format!("{text}[endpoints.e]\n")
    };
    let raw: RawConfig =
        toml::from_str(&text).unwrap_or_else(|e| panic!("README {section}: {e}\n{text}"));
    let config = raw
        .validate()
        .unwrap_or_else(|e| panic!("README {section}: {e}\n{text}"));
    format!("{config:?}")
}

fn code_keys() -> BTreeMap<&'static str, BTreeSet<String>> {
    let queue: BTreeSet<String> = fields::<RawQueue>()
        .into_iter()
        .map(|k| format!("queues[].{k}"))
        .collect();
    let mut bridge = fields::<RawBridge>();
    bridge.remove("queues");
    bridge.extend(queue);
    BTreeMap::from([
        ("[nats]", fields::<RawNats>()),
        ("[endpoints.<name>]", fields::<RawEndpoint>()),
        ("[copy]", fields::<RawCopy>()),
        ("[limits]", fields::<RawLimits>()),
        ("[migrate]", fields::<RawMigrate>()),
        ("[sync]", fields::<RawSync>()),
        ("[bridge]", bridge),
        ("[filters]", fields::<RawFilters>()),
        ("[metrics]", fields::<RawMetrics>()),
        ("[log]", fields::<RawLog>()),
    ])
}

#[test]
fn the_readme_names_every_key_and_no_other() {
    let tables = readme_tables();
    let code = code_keys();
    assert_eq!(
        fields::<RawConfig>().len(),
        code.len(),
        "a section of RawConfig has no README table: {:?}",
        fields::<RawConfig>()
    );
    for (section, keys) in &code {
        let rows = tables
            .get(*section)
            .unwrap_or_else(|| panic!("README has no table for {section}"));
        let documented: BTreeSet<String> = rows.iter().flat_map(|r| r.keys.clone()).collect();
        let missing: Vec<_> = keys.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(keys).collect();
        assert!(
            missing.is_empty(),
            "README's {section} table lacks {missing:?}; add a row for each"
        );
        assert!(
            unknown.is_empty(),
            "README's {section} table names {unknown:?}, which the code does not read"
        );
    }
}

#[test]
fn the_readme_states_the_defaults_the_code_applies() {
    let mut checked = 0;
    for (section, rows) in readme_tables() {
        let base = parse_with(&section, None);
        for row in rows {
            let Some(value) = literal(&row.default) else {
                continue;
            };
            for key in &row.keys {
                let set = parse_with(&section, Some((key, &value)));
                assert_eq!(
                    set, base,
                    "README's {section} says {key} defaults to {}, but setting it to that changes the config",
                    row.default
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} defaults were checked");
}

#[test]
fn literals_of_readme_defaults() {
    assert_eq!(literal("30").as_deref(), Some("30"));
    assert_eq!(literal("false").as_deref(), Some("false"));
    assert_eq!(literal("`16MiB`").as_deref(), Some("\"16MiB\""));
    assert_eq!(literal("—"), None);
    assert_eq!(literal("state dir"), None);
}
