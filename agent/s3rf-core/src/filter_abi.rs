//! ABI version 1, host side (the layouts are in `filters/ABI.md`): encoding
//! the object for the guest and reading the guest's decision back. Pure.

/// The ABI version this agent speaks.
pub const ABI_VERSION: i32 = 1;

/// Export: the ABI version marker, `() -> i32`.
pub const EXPORT_VERSION: &str = "s3rf_abi_version";
/// Export: the allocator, `(len: i32) -> i32`.
pub const EXPORT_ALLOC: &str = "s3rf_alloc";
/// Export (optional): parameters, `(ptr: i32, len: i32) -> i64`.
pub const EXPORT_INIT: &str = "s3rf_init";
/// Export: the decision, `(ptr: i32, len: i32) -> i64`.
pub const EXPORT_FILTER: &str = "s3rf_filter";
/// Export: the linear memory.
pub const EXPORT_MEMORY: &str = "memory";

/// Longest key or bucket a filter may return, in bytes (S3's key limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Which job asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A copy.
    Copy,
    /// A delete at the destination.
    Delete,
}

/// What a filter sees of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInput {
    /// Copy or delete.
    pub kind: Option<Kind>,
    /// Size, when known.
    pub size: Option<u64>,
    /// Last-modified, milliseconds since the Unix epoch, when known.
    pub last_modified_ms: Option<i64>,
    /// Source endpoint name.
    pub src_endpoint: String,
    /// Source bucket.
    pub src_bucket: String,
    /// Source key.
    pub src_key: String,
    /// Destination bucket (renamed by earlier filters).
    pub bucket: String,
    /// Destination key (renamed by earlier filters).
    pub key: String,
    /// ETag without quotes.
    pub etag: Option<String>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// User metadata, sorted by name so that every agent sends the same bytes.
    pub metadata: Vec<(String, String)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings are bounded by S3 (keys 1024 bytes, metadata 2 KiB in all).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes `obj` into `out` (cleared first).
pub fn encode(obj: &ObjectInput, out: &mut Vec<u8>) {
    out.clear();
    out.push(match obj.kind {
        Some(Kind::Delete) => 1,
        _ => 0,
    });
    let flags = u8::from(obj.size.is_some()) | (u8::from(obj.last_modified_ms.is_some()) << 1);
    out.push(flags);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&obj.size.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&obj.last_modified_ms.unwrap_or(0).to_le_bytes());
    for s in [
        &obj.src_endpoint,
        &obj.src_bucket,
        &obj.src_key,
        &obj.bucket,
        &obj.key,
        obj.etag.as_deref().unwrap_or(""),
        obj.content_type.as_deref().unwrap_or(""),
    ] {
        put_str(out, s);
    }
    let n = u32::try_from(obj.metadata.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    for (k, v) in &obj.metadata {
        put_str(out, k);
        put_str(out, v);
    }
}

/// One filter's decision, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Keep,
    /// Leave the object alone.
    Skip(String),
    /// New destination key, and bucket if given.
    Rename {
        /// New key.
        key: String,
        /// New bucket.
        bucket: Option<String>,
    },
}

/// Why a filter's output was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("returned an empty decision")]
    Empty,
    #[error("returned unknown verdict {0}")]
    Verdict(u8),
    #[error("returned a truncated decision")]
    Truncated,
    #[error("returned a {field} that is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("returned an empty {field}")]
    EmptyString { field: &'static str },
    #[error("returned a {field} of {len} bytes (the limit is {MAX_KEY_BYTES})")]
    TooLong { field: &'static str, len: usize },
    #[error("returned a {field} with a control character at byte {at}")]
    Control { field: &'static str, at: usize },
    #[error("returned an invalid bucket name {0:?} (3-63 of a-z, 0-9, '.', '-')")]
    Bucket(String),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], OutputError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(OutputError::Truncated)?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, OutputError> {
        let l = self.bytes(4)?;
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let b = self.bytes(len)?;
        std::str::from_utf8(b).map_err(|_| OutputError::NotUtf8 { field })
    }
}

/// Checks a string the agent will use or log: at most 1024 bytes, no control
/// characters, and (when `required`) not empty.
fn checked(s: &str, field: &'static str, required: bool) -> Result<String, OutputError> {
    if required && s.is_empty() {
        return Err(OutputError::EmptyString { field });
    }
    if s.len() > MAX_KEY_BYTES {
        return Err(OutputError::TooLong {
            field,
            len: s.len(),
        });
    }
    if let Some((at, _)) = s.char_indices().find(|(_, c)| c.is_control()) {
        return Err(OutputError::Control { field, at });
    }
    Ok(s.to_owned())
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// Reads and validates a decision. Trailing bytes are ignored.
pub fn decode(out: &[u8]) -> Result<Decision, OutputError> {
    let (&verdict, _) = out.split_first().ok_or(OutputError::Empty)?;
    let mut r = Reader { buf: out, pos: 1 };
    match verdict {
        0 => Ok(Decision::Keep),
        1 => Ok(Decision::Skip(checked(r.str("reason")?, "reason", false)?)),
        2 => {
            let key = checked(r.str("key")?, "key", true)?;
            let bucket = r.str("bucket")?;
            let bucket = if bucket.is_empty() {
                None
            } else if valid_bucket(bucket) {
                Some(bucket.to_owned())
            } else {
                return Err(OutputError::Bucket(bucket.chars().take(80).collect()));
            };
            Ok(Decision::Rename { key, bucket })
        }
        v => Err(OutputError::Verdict(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_bytes(s: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(s.len()).unwrap().to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    fn rename(key: &[u8], bucket: &[u8]) -> Vec<u8> {
        let mut v = vec![2];
        v.extend(str_bytes(key));
        v.extend(str_bytes(bucket));
        v
    }

    fn check(out: Vec<u8>, want: Result<Decision, &str>) {
        let got = decode(&out).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_owned), "output {out:?}");
    }

    #[test]
    fn decisions() {
        let r = |k: &str, b: Option<&str>| {
            Ok(Decision::Rename {
                key: k.to_owned(),
                bucket: b.map(str::to_owned),
            })
        };
        check(vec![0], Ok(Decision::Keep));
        check(vec![0, 9, 9], Ok(Decision::Keep));
        let mut skip = vec![1];
        skip.extend(str_bytes(b"too big"));
        check(skip, Ok(Decision::Skip("too big".to_owned())));
        check(rename(b"a/b", b""), r("a/b", None));
        check(
            rename("ключ".as_bytes(), b"other-bucket"),
            r("ключ", Some("other-bucket")),
        );
        check(vec![], Err("returned an empty decision"));
        check(vec![7], Err("returned unknown verdict 7"));
        check(
            vec![2, 5, 0, 0, 0, b'a'],
            Err("returned a truncated decision"),
        );
        check(rename(b"", b""), Err("returned an empty key"));
        check(
            rename(&[0xff, 0xfe], b""),
            Err("returned a key that is not UTF-8"),
        );
        check(
            rename(&[b'a'; 1025], b""),
            Err("returned a key of 1025 bytes (the limit is 1024)"),
        );
        check(
            rename(b"a\nb", b""),
            Err("returned a key with a control character at byte 1"),
        );
        check(
            rename(b"k", b"Bad_Bucket"),
            Err("returned an invalid bucket name \"Bad_Bucket\" (3-63 of a-z, 0-9, '.', '-')"),
        );
    }

    #[test]
    fn encoding_is_stable() {
        let obj = ObjectInput {
            kind: Some(Kind::Copy),
            size: Some(5),
            last_modified_ms: None,
            src_endpoint: "e".to_owned(),
            src_bucket: "b".to_owned(),
            src_key: "k".to_owned(),
            bucket: "b".to_owned(),
            key: "k".to_owned(),
            etag: None,
            content_type: Some("t".to_owned()),
            metadata: vec![("m".to_owned(), "v".to_owned())],
        };
        let mut out = Vec::new();
        encode(&obj, &mut out);
        let mut want = vec![0u8, 1, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0];
        want.extend([0; 8]);
        for s in ["e", "b", "k", "b", "k", "", "t"] {
            want.extend(str_bytes(s.as_bytes()));
        }
        want.extend(1u32.to_le_bytes());
        want.extend(str_bytes(b"m"));
        want.extend(str_bytes(b"v"));
        assert_eq!(out, want);
    }
}

/// Property tests: any bytes a filter returns decode to a decision the agent
/// can use safely, or to an error.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn safe(s: &str) -> bool {
        s.len() <= MAX_KEY_BYTES && !s.chars().any(char::is_control)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_output_is_a_safe_decision_or_an_error(
            verdict in 0u8..4,
            a in prop::collection::vec(any::<u8>(), 0..64),
            b in prop::collection::vec(any::<u8>(), 0..64),
            lie in any::<Option<u32>>(),
        ) {
            let mut out = vec![verdict];
            for s in [&a, &b] {
                let len = lie.unwrap_or(u32::try_from(s.len()).unwrap_or(0));
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s);
            }
            match decode(&out) {
                Ok(Decision::Keep) | Err(_) => {}
                Ok(Decision::Skip(reason)) => prop_assert!(safe(&reason)),
                Ok(Decision::Rename { key, bucket }) => {
                    prop_assert!(!key.is_empty() && safe(&key));
                    prop_assert!(bucket.as_deref().is_none_or(valid_bucket));
                }
            }
        }

        #[test]
        fn raw_bytes_never_panic(out in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&out);
        }
    }
}
