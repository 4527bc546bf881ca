//! The byte layouts of ABI version 1 (see `filters/ABI.md`): the object the
//! agent sends and the decision the filter returns.

/// Which job asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The object is about to be copied.
    Copy,
    /// The object is about to be deleted at the destination (an event sync
    /// delete, or a mirror migration removing an extraneous object). Size,
    /// ETag, content type and metadata are unknown for deletes.
    Delete,
}

/// One object, as the filter sees it. Strings borrow from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<'a> {
    /// Copy or delete.
    pub kind: Kind,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Last-modified time in milliseconds since the Unix epoch, when known.
    pub last_modified_ms: Option<i64>,
    /// Source endpoint name (from the agent's config).
    pub src_endpoint: &'a str,
    /// Source bucket.
    pub src_bucket: &'a str,
    /// Source key, as stored.
    pub src_key: &'a str,
    /// Destination bucket (after earlier filters' renames).
    pub bucket: &'a str,
    /// Destination key (after earlier filters' renames). Match on this.
    pub key: &'a str,
    /// ETag without quotes, when known.
    pub etag: Option<&'a str>,
    /// Content-Type, when known.
    pub content_type: Option<&'a str>,
    /// User metadata (`x-amz-meta-*` without the prefix), in the store's order.
    pub metadata: Vec<(&'a str, &'a str)>,
}

impl Object<'_> {
    /// The value of user metadata `name` (case-insensitive), if present.
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// What to do with the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Copy (or delete) it as it is.
    Keep,
    /// Leave it alone; the reason is logged and counted as "filtered".
    Skip(String),
    /// Use a new destination key, and optionally a new destination bucket.
    Rename {
        /// New destination key: UTF-8, 1 to 1024 bytes, no control characters.
        key: String,
        /// New destination bucket on the same endpoint.
        bucket: Option<String>,
    },
}

impl Decision {
    /// Skip with a reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Decision::Skip(reason.into())
    }

    /// Rename the destination key.
    pub fn rename(key: impl Into<String>) -> Self {
        Decision::Rename {
            key: key.into(),
            bucket: None,
        }
    }

    /// Rename the destination key and bucket.
    pub fn rename_in(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Decision::Rename {
            key: key.into(),
            bucket: Some(bucket.into()),
        }
    }

    /// Appends the ABI encoding of this decision to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Decision::Keep => out.push(VERDICT_KEEP),
            Decision::Skip(reason) => {
                out.push(VERDICT_SKIP);
                put_str(out, reason);
            }
            Decision::Rename { key, bucket } => {
                out.push(VERDICT_RENAME);
                put_str(out, key);
                put_str(out, bucket.as_deref().unwrap_or(""));
            }
        }
    }
}

/// Output verdict byte: keep.
pub const VERDICT_KEEP: u8 = 0;
/// Output verdict byte: skip.
pub const VERDICT_SKIP: u8 = 1;
/// Output verdict byte: rename.
pub const VERDICT_RENAME: u8 = 2;

/// Input flag: `size` is known.
pub const FLAG_SIZE: u8 = 1;
/// Input flag: `last_modified_ms` is known.
pub const FLAG_LAST_MODIFIED: u8 = 2;

/// Bytes before the first string of the input.
pub const HEADER_LEN: usize = 24;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("input truncated at byte {}", self.pos))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = self.u32()? as usize;
        let b = self.bytes(len)?;
        std::str::from_utf8(b).map_err(|e| format!("input string not UTF-8: {e}"))
    }
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Decodes the agent's input. Trailing bytes (fields of later ABI revisions)
/// are ignored.
pub fn decode(buf: &[u8]) -> Result<Object<'_>, String> {
    if buf.len() < HEADER_LEN {
        return Err(format!(
            "input of {} bytes is shorter than the header",
            buf.len()
        ));
    }
    let kind = match buf[0] {
        0 => Kind::Copy,
        1 => Kind::Delete,
        k => return Err(format!("unknown job kind {k}")),
    };
    let flags = buf[1];
    let size = u64::from_le_bytes(le8(&buf[8..16]));
    let last_modified = i64::from_le_bytes(le8(&buf[16..24]));
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    let src_endpoint = r.str()?;
    let src_bucket = r.str()?;
    let src_key = r.str()?;
    let bucket = r.str()?;
    let key = r.str()?;
    let etag = r.str()?;
    let content_type = r.str()?;
    let n = r.u32()? as usize;
    let mut metadata = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = r.str()?;
        let v = r.str()?;
        metadata.push((k, v));
    }
    Ok(Object {
        kind,
        size: (flags & FLAG_SIZE != 0).then_some(size),
        last_modified_ms: (flags & FLAG_LAST_MODIFIED != 0).then_some(last_modified),
        src_endpoint,
        src_bucket,
        src_key,
        bucket,
        key,
        etag: non_empty(etag),
        content_type: non_empty(content_type),
        metadata,
    })
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Encodes an object the way the agent does (for tests and tools).
pub fn encode(obj: &Object<'_>, out: &mut Vec<u8>) {
    out.push(match obj.kind {
        Kind::Copy => 0,
        Kind::Delete => 1,
    });
    let mut flags = 0;
    if obj.size.is_some() {
        flags |= FLAG_SIZE;
    }
    if obj.last_modified_ms.is_some() {
        flags |= FLAG_LAST_MODIFIED;
    }
    out.push(flags);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&obj.size.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&obj.last_modified_ms.unwrap_or(0).to_le_bytes());
    for s in [
        obj.src_endpoint,
        obj.src_bucket,
        obj.src_key,
        obj.bucket,
        obj.key,
        obj.etag.unwrap_or(""),
        obj.content_type.unwrap_or(""),
    ] {
        put_str(out, s);
    }
    let n = u32::try_from(obj.metadata.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    for (k, v) in obj.metadata.iter().take(n as usize) {
        put_str(out, k);
        put_str(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let obj = Object {
            kind: Kind::Delete,
            size: Some(42),
            last_modified_ms: None,
            src_endpoint: "src",
            src_bucket: "b",
            src_key: "a/ключ",
            bucket: "b2",
            key: "x/a/ключ",
            etag: Some("abc"),
            content_type: None,
            metadata: vec![("Owner", "me"), ("k", "")],
        };
        let mut buf = Vec::new();
        encode(&obj, &mut buf);
        buf.extend_from_slice(b"future fields");
        let back = decode(&buf).unwrap();
        assert_eq!(back, obj);
        assert_eq!(back.metadata("owner"), Some("me"));
        assert!(decode(&buf[..30]).unwrap_err().contains("truncated"));
    }
}
