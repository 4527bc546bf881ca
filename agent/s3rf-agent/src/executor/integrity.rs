//! End-to-end integrity of the bytes s3rf moves: digests, what an ETag can
//! prove, and the comparison of what a store stored with what was sent.
//!
//! The rules, all pure:
//! - a source's ETag proves its bytes only when it is a plain MD5: 32 hex
//!   digits, no `-N` multipart suffix, not SSE-KMS or SSE-C (their ETags
//!   are not the MD5 of the plaintext), not a directory bucket (random
//!   ETags), and not an endpoint with `verify = "off"`;
//! - every PUT and UploadPart carries `Content-MD5`, so the destination
//!   refuses bytes that changed in transit (`BadDigest`);
//! - what a write returns is compared with what was sent: a single PUT's
//!   ETag with the MD5 of the body, a completed multipart upload's ETag with
//!   the MD5 of the part MD5s and the part count. An ETag that cannot be an
//!   MD5 (encrypted, directory bucket) is not compared.

use ::md5::Digest as _;
use base64::Engine as _;

/// An MD5 digest.
pub type Md5 = [u8; 16];

/// The MD5 of `bytes`.
pub fn md5(bytes: &[u8]) -> Md5 {
    ::md5::Md5::digest(bytes).into()
}

/// Lower-case hex, as S3 writes ETags.
pub fn hex(d: &Md5) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Content-MD5` header value: base64 of the digest.
pub fn content_md5(d: &Md5) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// The digest a plain-MD5 ETag states (quotes optional), if it is one.
pub fn parse_plain(etag: &str) -> Option<Md5> {
    let etag = etag.trim_matches('"');
    if etag.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(etag.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The ETag S3 gives a multipart object of these parts: the MD5 of the
/// concatenated part MD5s, a dash, the part count.
pub fn multipart_etag(parts: &[Md5]) -> String {
    let mut h = ::md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    let d: Md5 = h.finalize().into();
    format!("{}-{}", hex(&d), parts.len())
}

/// How an object is encrypted, as far as its ETag is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EtagContext<'a> {
    /// `x-amz-server-side-encryption` of the response.
    pub sse: Option<&'a str>,
    /// Whether the object uses a customer-provided key (SSE-C).
    pub sse_c: bool,
    /// A directory bucket (S3 Express One Zone): random ETags.
    pub express: bool,
    /// The endpoint's `verify` setting is `off`.
    pub verify_off: bool,
}

impl EtagContext<'_> {
    /// Whether this store's ETag for this object can be an MD5 at all.
    pub fn etag_may_be_md5(&self) -> bool {
        let kms = self.sse.is_some_and(|s| s.starts_with("aws:kms"));
        !(kms || self.sse_c || self.express || self.verify_off)
    }
}

/// The MD5 of an object's bytes that its ETag states, when it states one.
pub fn source_md5(etag: Option<&str>, ctx: EtagContext<'_>) -> Option<Md5> {
    if !ctx.etag_may_be_md5() {
        return None;
    }
    parse_plain(etag?)
}

/// What comparing a write's returned ETag with the expected one showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The store reported what was sent.
    Match,
    /// The store reported other bytes: `got` where `expected` was sent.
    Mismatch {
        /// The ETag the bytes sent must have.
        expected: String,
        /// The ETag the store returned.
        got: String,
    },
    /// Nothing to compare: no ETag, or one that cannot be an MD5 here.
    Unchecked,
}

/// Compares the ETag a write returned with `expected` (a plain MD5 in hex,
/// or a multipart ETag `hex-N`).
pub fn check_written(returned: Option<&str>, expected: &str, ctx: EtagContext<'_>) -> Written {
    let Some(got) = returned.map(|e| e.trim_matches('"')) else {
        return Written::Unchecked;
    };
    if !ctx.etag_may_be_md5() || got.len() < 32 || got.get(..32).and_then(parse_plain).is_none() {
        return Written::Unchecked;
    }
    // A store that does not build multipart ETags from part MD5s (some
    // S3-compatible stores return a plain MD5 for a completed upload) says
    // nothing comparable.
    if got.contains('-') != expected.contains('-') {
        return Written::Unchecked;
    }
    if got.eq_ignore_ascii_case(expected) {
        Written::Match
    } else {
        Written::Mismatch {
            expected: expected.to_owned(),
            got: got.to_owned(),
        }
    }
}

/// MD5 over parts that finish in any order, fed in part order: part `n`
/// waits until parts `1..n` are in. Callers must hold each part's buffer
/// permit in part order (taken one after another), so the lowest part not
/// yet hashed always holds its bytes and nothing can wait in a circle.
#[derive(Debug)]
pub struct OrderedMd5 {
    state: std::sync::Mutex<Option<::md5::Md5>>,
    next: tokio::sync::watch::Sender<i32>,
}

impl Default for OrderedMd5 {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new(Some(::md5::Md5::new())),
            next: tokio::sync::watch::Sender::new(1),
        }
    }
}

impl OrderedMd5 {
    /// Continues from the [`OrderedMd5::feed`] state after part `through`:
    /// the next part fed is `through + 1`. `None` if the state is not one.
    pub fn resume(state: &str, through: i32) -> Option<Self> {
        use ::md5::digest::common::hazmat::SerializableState;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(state)
            .ok()?;
        let serialized = raw.as_slice().try_into().ok()?;
        let h = ::md5::Md5::deserialize(serialized).ok()?;
        Some(Self {
            state: std::sync::Mutex::new(Some(h)),
            next: tokio::sync::watch::Sender::new(through + 1),
        })
    }

    /// Feeds part `number` once every part before it is fed. Hashing a
    /// large part runs off the async threads. Returns the state after this
    /// part (base64), which [`OrderedMd5::resume`] continues from.
    pub async fn feed(&self, number: i32, bytes: bytes::Bytes) -> Option<String> {
        use ::md5::digest::common::hazmat::SerializableState;
        let mut rx = self.next.subscribe();
        if rx.wait_for(|n| *n == number).await.is_err() {
            return None;
        }
        let taken = self.state.lock().ok().and_then(|mut s| s.take());
        let mut h = taken?;
        let h = if bytes.len() > 256 * 1024 {
            tokio::task::spawn_blocking(move || {
                h.update(&bytes);
                h
            })
            .await
            .ok()
        } else {
            h.update(&bytes);
            Some(h)
        };
        let saved = h
            .as_ref()
            .map(|h| base64::engine::general_purpose::STANDARD.encode(h.serialize().as_slice()));
        if let (Some(h), Ok(mut s)) = (h, self.state.lock()) {
            *s = Some(h);
        }
        self.next.send_modify(|n| *n += 1);
        saved
    }

    /// The digest of everything fed, once all `parts` are in.
    pub fn finish(&self, parts: i32) -> Option<Md5> {
        if *self.next.borrow() != parts + 1 {
            return None;
        }
        let h = self.state.lock().ok()?.take()?;
        Some(h.finalize().into())
    }
}

/// The CRC32C of `bytes` as S3 writes it (`x-amz-checksum-crc32c`: the
/// big-endian value in base64), off the async threads when it is large.
pub async fn crc32c_of(bytes: &bytes::Bytes) -> String {
    fn crc(b: &[u8]) -> String {
        let v = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b);
        let v = u32::try_from(v).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(v.to_be_bytes())
    }
    if bytes.len() > 256 * 1024 {
        let b = bytes.clone();
        if let Ok(c) = tokio::task::spawn_blocking(move || crc(&b)).await {
            return c;
        }
    }
    crc(bytes)
}

/// The MD5 of `bytes`, off the async threads when it is large.
pub async fn md5_of(bytes: &bytes::Bytes) -> Md5 {
    if bytes.len() > 256 * 1024 {
        let b = bytes.clone();
        if let Ok(d) = tokio::task::spawn_blocking(move || md5(&b)).await {
            return d;
        }
    }
    md5(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";

    #[test]
    fn digests_and_encodings() {
        let d = md5(b"abc");
        assert_eq!(hex(&d), ABC_MD5);
        assert_eq!(content_md5(&d), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(parse_plain(&format!("\"{ABC_MD5}\"")), Some(d));
        // S3's multipart ETag of two parts "abc" and "abc".
        let two = multipart_etag(&[d, d]);
        let mut cat = Vec::new();
        cat.extend_from_slice(&d);
        cat.extend_from_slice(&d);
        assert_eq!(two, format!("{}-2", hex(&md5(&cat))));
    }

    #[test]
    fn which_etags_state_an_md5() {
        let plain = Some(ABC_MD5);
        let none = EtagContext::default();
        #[rustfmt::skip]
        let table: &[(Option<&str>, EtagContext<'_>, bool)] = &[
            (plain, none, true),
            (Some("900150983cd24fb0d6963f7d28e17f72-3"), none, false),
            (Some("not-hex-not-hex-not-hex-not-hex!"), none, false),
            (Some("abc"), none, false),
            (None, none, false),
            (plain, EtagContext { sse: Some("AES256"), ..none }, true),
            (plain, EtagContext { sse: Some("aws:kms"), ..none }, false),
            (plain, EtagContext { sse: Some("aws:kms:dsse"), ..none }, false),
            (plain, EtagContext { sse_c: true, ..none }, false),
            (plain, EtagContext { express: true, ..none }, false),
            (plain, EtagContext { verify_off: true, ..none }, false),
        ];
        for (etag, ctx, want) in table {
            assert_eq!(source_md5(*etag, *ctx).is_some(), *want, "{etag:?} {ctx:?}");
        }
    }

    #[test]
    fn written_etags_are_compared_where_they_can_be_md5s() {
        let none = EtagContext::default();
        let other = "0123456789abcdef0123456789abcdef";
        #[rustfmt::skip]
        let table: &[(Option<&str>, &str, EtagContext<'_>, Written)] = &[
            (Some(ABC_MD5), ABC_MD5, none, Written::Match),
            (Some("\"900150983CD24FB0D6963F7D28E17F72\""), ABC_MD5, none, Written::Match),
            (Some(other), ABC_MD5, none, Written::Mismatch { expected: ABC_MD5.into(), got: other.into() }),
            (Some(&format!("{other}-2")), &format!("{ABC_MD5}-2"), none,
                Written::Mismatch { expected: format!("{ABC_MD5}-2"), got: format!("{other}-2") }),
            // A store that returns a plain MD5 for a completed upload.
            (Some(other), &format!("{ABC_MD5}-2"), none, Written::Unchecked),
            (None, ABC_MD5, none, Written::Unchecked),
            (Some("random-etag"), ABC_MD5, none, Written::Unchecked),
            (Some(other), ABC_MD5, EtagContext { sse: Some("aws:kms"), ..none }, Written::Unchecked),
            (Some(other), ABC_MD5, EtagContext { express: true, ..none }, Written::Unchecked),
            (Some(other), ABC_MD5, EtagContext { verify_off: true, ..none }, Written::Unchecked),
        ];
        for (returned, expected, ctx, want) in table {
            assert_eq!(
                &check_written(*returned, expected, *ctx),
                want,
                "{returned:?} {expected}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ordered_md5_feeds_parts_in_order_whatever_order_they_arrive() {
        let parts: Vec<bytes::Bytes> = (0..4u8)
            .map(|i| bytes::Bytes::from(vec![i; 300 * 1024 + usize::from(i)]))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let h = std::sync::Arc::new(OrderedMd5::default());
        let mut tasks = Vec::new();
        for (i, p) in parts.iter().enumerate().rev() {
            let (h, p) = (h.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                h.feed(i32::try_from(i).unwrap_or(0) + 1, p).await;
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(h.finish(3), None, "four parts were fed, not three");
        assert_eq!(h.finish(4), Some(md5(&whole)));
    }

    #[tokio::test]
    async fn crc32c_as_s3_writes_it() {
        // RFC 3720 B.4: 32 bytes of zeros have CRC32C 0x8a9136aa.
        assert_eq!(
            crc32c_of(&bytes::Bytes::from(vec![0u8; 32])).await,
            "ipE2qg=="
        );
        // S3's documented example: CRC32C of "Hello World" is "aR2qLw==".
        assert_eq!(
            crc32c_of(&bytes::Bytes::from_static(b"Hello World")).await,
            "aR2qLw=="
        );
    }

    #[tokio::test]
    async fn ordered_md5_resumes_from_a_saved_state() {
        let parts: Vec<bytes::Bytes> = (0u8..4)
            .map(|i| bytes::Bytes::from(vec![i; 70_000 + usize::from(i)]))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        let first = OrderedMd5::default();
        first.feed(1, parts[0].clone()).await;
        let saved = first.feed(2, parts[1].clone()).await.expect("a state");
        // A later delivery continues after part 2 with parts 3 and 4.
        let resumed = OrderedMd5::resume(&saved, 2).expect("a valid state");
        resumed.feed(3, parts[2].clone()).await;
        resumed.feed(4, parts[3].clone()).await;
        assert_eq!(resumed.finish(4), Some(md5(&whole)));
        assert!(OrderedMd5::resume("bm90IGEgc3RhdGU=", 2).is_none());
    }
}
