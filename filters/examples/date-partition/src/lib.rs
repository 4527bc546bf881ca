//! # date-partition
//!
//! Rewrites date-stamped file names into Hive-style partitions, so that
//! query engines can prune by date:
//!
//! `logs/2024-05-01-app.log` → `logs/year=2024/month=05/day=01/app.log`
//!
//! The date must start the last path segment as `YYYY-MM-DD`, followed by
//! `-` or `_` (dropped) or `.` (kept: `2024-05-01.log` becomes
//! `year=2024/month=05/day=01/2024-05-01.log`). Other keys are kept as they are.
//!
//! Parameters (`date-partition.toml`), all optional:
//!
//! ```toml
//! prefixes = ["logs/"]   # only rewrite keys under these; all keys when empty
//! ```

use s3rf_filter::{Decision, Filter, Object};

/// Parameters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Only keys under one of these prefixes are rewritten; all when empty.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

/// The filter.
#[derive(Debug)]
pub struct DatePartition(Params);

/// The partitioned form of `key`, if its file name starts with a date.
pub fn partition(key: &str) -> Option<String> {
    let (dir, name) = match key.rfind('/') {
        Some(i) => key.split_at(i + 1),
        None => ("", key),
    };
    let b = name.as_bytes();
    if b.len() < 11 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && digits(5..7) && digits(8..10)) {
        return None;
    }
    let (year, month, day) = (&name[0..4], &name[5..7], &name[8..10]);
    if !("01"..="12").contains(&month) || !("01"..="31").contains(&day) {
        return None;
    }
    let rest = match b[10] {
        b'-' | b'_' => &name[11..],
        b'.' => name,
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    Some(format!("{dir}year={year}/month={month}/day={day}/{rest}"))
}

impl Filter for DatePartition {
    type Params = Params;

    fn new(params: Params) -> Result<Self, String> {
        Ok(Self(params))
    }

    fn decide(&self, obj: &Object<'_>) -> Decision {
        let wanted = self.0.prefixes.is_empty()
            || self
                .0
                .prefixes
                .iter()
                .any(|p| obj.key.starts_with(p.as_str()));
        match partition(obj.key).filter(|_| wanted) {
            Some(key) => Decision::rename(key),
            None => Decision::Keep,
        }
    }
}

s3rf_filter::export_filter!(DatePartition);

#[cfg(test)]
mod tests {
    use super::partition;

    #[test]
    fn table() {
        #[rustfmt::skip]
        let table = [
            ("logs/2024-05-01-app.log", Some("logs/year=2024/month=05/day=01/app.log")),
            ("2024-05-01_app.log", Some("year=2024/month=05/day=01/app.log")),
            ("a/b/2024-12-31.log", Some("a/b/year=2024/month=12/day=31/2024-12-31.log")),
            ("logs/2024-13-01-app.log", None),
            ("logs/2024-05-00-app.log", None),
            ("logs/2024-05-01", None),
            ("logs/2024-05-01-", None),
            ("logs/app-2024-05-01.log", None),
            ("logs/year=2024/month=05/day=01/app.log", None),
        ];
        for (key, want) in table {
            assert_eq!(partition(key).as_deref(), want, "{key}");
        }
    }
}
