//! Encodings S3 wants in headers that the SDK does not apply for us.
//!
//! aws-sdk-rust sends `x-amz-copy-source` and `x-amz-tagging` verbatim, so keys
//! with spaces, `+`, `%` or unicode must be percent-encoded here.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 3986 unreserved characters stay; everything else is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Like [`COMPONENT`], but `/` separates path segments and stays.
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// The `x-amz-copy-source` value for `bucket/key[?versionId=v]`.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut s = format!(
        "{}/{}",
        utf8_percent_encode(bucket, COMPONENT),
        utf8_percent_encode(key, PATH)
    );
    if let Some(v) = version_id {
        s.push_str("?versionId=");
        s.extend(utf8_percent_encode(v, COMPONENT));
    }
    s
}

/// The `x-amz-tagging` value: a URL query string of `key=value` pairs.
pub fn tagging<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    tags.into_iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, COMPONENT),
                utf8_percent_encode(v, COMPONENT)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encoding() {
        #[rustfmt::skip]
        let table = [
            ("b", "plain/key.txt", None, "b/plain/key.txt"),
            ("b", "with space+plus%pct", None, "b/with%20space%2Bplus%25pct"),
            ("b", "ünï/çødé ✓", None, "b/%C3%BCn%C3%AF/%C3%A7%C3%B8d%C3%A9%20%E2%9C%93"),
            ("b", "q?x=1&y#z", Some("v/1+"), "b/q%3Fx%3D1%26y%23z?versionId=v%2F1%2B"),
        ];
        for (bucket, key, version, want) in table {
            assert_eq!(copy_source(bucket, key, version), want, "{key}");
        }
    }

    #[test]
    fn tagging_encoding() {
        assert_eq!(
            tagging([("team", "a b"), ("k&=", "ü")]),
            "team=a%20b&k%26%3D=%C3%BC"
        );
        assert_eq!(tagging([]), "");
    }
}
