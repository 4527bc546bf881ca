//! Read-ahead: a GET's body handed to a PUT through a window of bounded size.
//!
//! The reader pulls the source's body as fast as the window allows, and the
//! PUT sends what the window holds as soon as it is there. The PUT starts
//! with the first bytes instead of after the last (a whole-object buffer),
//! and the GET does not wait on every write of the PUT (a bare stream). The
//! window's bytes are part of `copy.buffer_memory`: the caller holds their
//! permit for as long as the copy runs.
//!
//! The reader hashes what passes (MD5) and holds the last chunk back until
//! the digest is known: bytes that do not match the source's MD5 end the
//! PUT's body with an error instead of completing it.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{Semaphore, mpsc};

use md5::Digest as _;

use super::error::{ExecError, Target};
use super::integrity::{self, Md5};

/// Window credit is counted in KiB.
const UNIT: u64 = 1024;

/// Closes the window when the PUT drops its body, so a reader waiting for
/// room stops instead of waiting forever.
struct Outlet {
    rx: mpsc::Receiver<Result<(Bytes, u32), String>>,
    credit: Arc<Semaphore>,
}

impl Drop for Outlet {
    fn drop(&mut self) {
        self.credit.close();
    }
}

/// Credit units for `len` bytes, at most the whole window.
fn units(len: usize, total: u32) -> u32 {
    u32::try_from((len as u64).div_ceil(UNIT))
        .unwrap_or(u32::MAX)
        .clamp(1, total)
}

/// The PUT body and the reader that feeds it through a window of
/// `window_bytes`. Run the reader alongside the PUT; its error (a short
/// read, a broken GET, bytes that are not `expect_md5`) explains a failed
/// PUT better than the PUT's own. It returns the MD5 of what passed when
/// `hash` or `expect_md5` asks for one.
pub(super) fn pipe(
    source: ByteStream,
    expected: u64,
    window_bytes: u64,
    target: Target,
    expect_md5: Option<Md5>,
    hash: bool,
) -> (
    ByteStream,
    impl Future<Output = Result<Option<Md5>, ExecError>>,
) {
    let total = u32::try_from(window_bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
    let credit = Arc::new(Semaphore::new(total as usize));
    // Bytes bound the window; the channel's own bound only has to be above
    // the number of chunks the window can hold.
    let (tx, rx) = mpsc::channel(total as usize + 1);
    let outlet = Outlet {
        rx,
        credit: credit.clone(),
    };
    let frames = futures::stream::unfold(outlet, |mut outlet| async move {
        let item = outlet.rx.recv().await?;
        let frame = match item {
            Ok((chunk, n)) => {
                outlet.credit.add_permits(n as usize);
                Ok(Frame::data(chunk))
            }
            Err(reason) => Err(Box::<dyn std::error::Error + Send + Sync>::from(reason)),
        };
        Some((frame, outlet))
    });
    let body = ByteStream::new(SdkBody::from_body_1_x(http_body_util::StreamBody::new(
        frames,
    )));
    let reader = async move {
        let mut source = source;
        let mut got = 0u64;
        let mut hasher = (hash || expect_md5.is_some()).then(md5::Md5::new);
        let mut held = None;
        let result = loop {
            let chunk = match source.try_next().await {
                Ok(Some(c)) => c,
                Ok(None) if got == expected => {
                    let digest: Option<Md5> = hasher.take().map(|h| h.finalize().into());
                    break match (expect_md5, digest) {
                        (Some(want), Some(digest)) if want != digest => Err(ExecError::Corrupt {
                            stage: "read from the source",
                            target: target.clone(),
                            expected: integrity::hex(&want),
                            got: integrity::hex(&digest),
                        }),
                        _ => Ok(digest),
                    };
                }
                Ok(None) => {
                    break Err(ExecError::ShortRead {
                        target: target.clone(),
                        expected,
                        got,
                    });
                }
                Err(e) => {
                    break Err(ExecError::Transport {
                        op: "GetObject",
                        target: target.clone(),
                        detail: format!("reading the body failed: {e}"),
                    });
                }
            };
            got += chunk.len() as u64;
            if got > expected {
                break Err(ExecError::ShortRead {
                    target: target.clone(),
                    expected,
                    got,
                });
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            let n = units(chunk.len(), total);
            // Waits while the window is full; fails once the PUT is gone.
            let Ok(room) = credit.acquire_many(n).await else {
                return Err(put_gone(&target));
            };
            room.forget();
            if got == expected {
                // The last chunk waits for the digest: sent after the
                // check, or replaced by the error.
                held = Some((chunk, n));
                continue;
            }
            if tx.send(Ok((chunk, n))).await.is_err() {
                return Err(put_gone(&target));
            }
        };
        if let (Ok(_), Some(last)) = (&result, held)
            && tx.send(Ok(last)).await.is_err()
        {
            return Err(put_gone(&target));
        }
        if let Err(e) = &result {
            // The PUT must not complete with what it has: end its body with
            // an error.
            let _ = tx.send(Err(e.to_string())).await;
        }
        result
    };
    (body, reader)
}

/// The PUT dropped its body: it failed, and its own error says why.
fn put_gone(target: &Target) -> ExecError {
    ExecError::Transport {
        op: "PutObject",
        target: target.clone(),
        detail: "the PUT stopped reading its body".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            endpoint: "a".to_owned(),
            bucket: "b".to_owned(),
            key: Some("k".to_owned()),
        }
    }

    fn source(chunks: &[&'static [u8]]) -> ByteStream {
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        ByteStream::new(SdkBody::from_body_1_x(http_body_util::StreamBody::new(
            futures::stream::iter(chunks),
        )))
    }

    #[tokio::test]
    async fn bytes_pass_through_a_window_smaller_than_the_object() {
        let chunk: &'static [u8] = &[7u8; 3000];
        let want = integrity::md5(&[7u8; 15_000]);
        let (body, reader) = pipe(
            source(&[chunk; 5]),
            15_000,
            2048,
            target(),
            Some(want),
            true,
        );
        let (read, collected) = tokio::join!(reader, body.collect());
        assert_eq!(read.ok(), Some(Some(want)));
        let bytes = collected.expect("body").into_bytes();
        assert_eq!(bytes.len(), 15_000);
        assert!(bytes.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn bytes_that_are_not_the_sources_md5_fail_the_body() {
        let chunk: &'static [u8] = &[7u8; 3000];
        let want = integrity::md5(&[8u8; 6000]);
        let (body, reader) = pipe(source(&[chunk; 2]), 6000, 4096, target(), Some(want), false);
        let (read, collected) = tokio::join!(reader, body.collect());
        assert!(collected.is_err(), "the PUT must not see a complete body");
        let e = read.expect_err("corrupt read");
        assert!(e.to_string().contains("did not match"), "{e}");
    }

    #[tokio::test]
    async fn a_short_source_fails_the_body_and_says_why() {
        let (body, reader) = pipe(source(&[b"abc"]), 10, 4096, target(), None, false);
        let (read, collected) = tokio::join!(reader, body.collect());
        assert!(collected.is_err(), "the PUT must not see a complete body");
        let e = read.expect_err("short read");
        assert!(
            e.to_string().contains("got 3 bytes where 10 were expected"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_longer_source_fails_too() {
        let (body, reader) = pipe(source(&[b"abcdef"]), 4, 4096, target(), None, false);
        let (read, collected) = tokio::join!(reader, body.collect());
        assert!(collected.is_err());
        assert!(matches!(read, Err(ExecError::ShortRead { got: 6, .. })));
    }

    #[tokio::test]
    async fn a_dropped_put_stops_the_reader() {
        let chunk: &'static [u8] = &[1u8; 4096];
        let (body, reader) = pipe(source(&[chunk; 8]), 8 * 4096, 4096, target(), None, false);
        drop(body);
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
        assert!(
            matches!(read, Ok(Err(ExecError::Transport { .. }))),
            "{read:?}"
        );
    }
}
