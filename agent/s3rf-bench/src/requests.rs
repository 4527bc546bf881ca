//! Counts the S3 requests in a client's byte stream, by kind, so the bench
//! can report requests per object for every tool from the same place (the
//! shaping proxy) without trusting any tool's own accounting.
//!
//! Pure: fed the client-to-server bytes of one connection in whatever chunks
//! they arrive, it finds each request head (HTTP/1.1, keep-alive), classifies
//! it and skips its body by `Content-Length` or chunked encoding.

/// What a request did, as far as copying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// ListObjects(V2), ListBuckets and other reads of a bucket, not an object.
    List,
    /// HEAD of an object or bucket.
    Head,
    /// GET of an object (or its tagging, ACL, …).
    Get,
    /// PUT of an object or part with a body.
    Put,
    /// CopyObject or UploadPartCopy (`x-amz-copy-source`).
    Copy,
    /// POST: CreateMultipartUpload, CompleteMultipartUpload, DeleteObjects.
    Post,
    /// DELETE.
    Delete,
    /// PUT of a bucket (CreateBucket) or anything else.
    Other,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 8] = [
        Kind::List,
        Kind::Head,
        Kind::Get,
        Kind::Put,
        Kind::Copy,
        Kind::Post,
        Kind::Delete,
        Kind::Other,
    ];

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::List => "LIST",
            Kind::Head => "HEAD",
            Kind::Get => "GET",
            Kind::Put => "PUT",
            Kind::Copy => "COPY",
            Kind::Post => "POST",
            Kind::Delete => "DELETE",
            Kind::Other => "other",
        }
    }

    /// Index into [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Largest request head the counter reads; a longer one stops counting on
/// that connection (no S3 client sends one).
const MAX_HEAD: usize = 64 << 10;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// Chunked body: reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Chunked body: skipping a chunk's data and its CRLF.
    ChunkData(u64),
    /// Chunked body: reading trailer lines until an empty one.
    Trailer(Vec<u8>),
    /// The stream could not be parsed; nothing more is counted.
    Lost,
}

/// The request counter of one connection.
#[derive(Debug)]
pub struct RequestParser {
    state: State,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self {
            state: State::Head(Vec::new()),
        }
    }
}

impl RequestParser {
    /// Whether the stream stopped making sense (counts are then a floor).
    pub fn lost(&self) -> bool {
        matches!(self.state, State::Lost)
    }

    /// Feeds the next bytes; calls `found` with each request head completed
    /// in them.
    pub fn feed(&mut self, mut data: &[u8], found: &mut impl FnMut(Kind)) {
        while !data.is_empty() {
            match &mut self.state {
                State::Lost => return,
                State::Head(buf) => {
                    // Resume the search a few bytes back: the terminator may
                    // straddle two chunks.
                    let from = buf.len().saturating_sub(3);
                    buf.extend_from_slice(data);
                    let Some(end) = find(&buf[from..], b"\r\n\r\n").map(|i| from + i + 4) else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Lost;
                        }
                        return;
                    };
                    let rest_at = data.len() - (buf.len() - end);
                    let head = std::mem::take(buf);
                    data = &data[rest_at..];
                    self.state = match parse_head(&head[..end]) {
                        Some((kind, body)) => {
                            found(kind);
                            match body {
                                Body::Length(0) => State::Head(Vec::new()),
                                Body::Length(n) => State::Body(n),
                                Body::Chunked => State::ChunkSize(Vec::new()),
                            }
                        }
                        None => State::Lost,
                    };
                }
                State::Body(n) => {
                    if skip(n, &mut data) {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkSize(line) => match line_end(line, &mut data) {
                    Some(l) => {
                        let hex = l.split(|&b| b == b';').next().unwrap_or_default();
                        let size = std::str::from_utf8(hex)
                            .ok()
                            .and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
                        self.state = match size {
                            Some(0) => State::Trailer(Vec::new()),
                            Some(n) => State::ChunkData(n + 2),
                            None => State::Lost,
                        };
                    }
                    None if line.len() > MAX_HEAD => self.state = State::Lost,
                    None => return,
                },
                State::ChunkData(n) => {
                    if skip(n, &mut data) {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Trailer(line) => match line_end(line, &mut data) {
                    Some(l) if l.is_empty() => self.state = State::Head(Vec::new()),
                    Some(_) => self.state = State::Trailer(Vec::new()),
                    None if line.len() > MAX_HEAD => self.state = State::Lost,
                    None => return,
                },
            }
        }
    }
}

enum Body {
    Length(u64),
    Chunked,
}

/// Skips up to `n` bytes of `data`; whether all `n` are now skipped.
fn skip(n: &mut u64, data: &mut &[u8]) -> bool {
    let take = (*n).min(data.len() as u64);
    *n -= take;
    *data = &data[take as usize..];
    *n == 0
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends `data` up to and including the next LF to `line`; returns the
/// line without its CR LF when complete, and advances `data` past it.
fn line_end(line: &mut Vec<u8>, data: &mut &[u8]) -> Option<Vec<u8>> {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            line.extend_from_slice(&data[..i]);
            *data = &data[i + 1..];
            let mut l = std::mem::take(line);
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            Some(l)
        }
        None => {
            line.extend_from_slice(data);
            *data = &[];
            None
        }
    }
}

fn parse_head(head: &[u8]) -> Option<(Kind, Body)> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let body = if header("transfer-encoding").is_some_and(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("chunked")
    }) {
        Body::Chunked
    } else {
        let n = match header("content-length") {
            Some(v) => std::str::from_utf8(v).ok()?.trim().parse().ok()?,
            None => 0,
        };
        Body::Length(n)
    };
    let path = req.path?.split('?').next().unwrap_or_default();
    // Path style: `/bucket` or `/bucket/key…`. A key-less path is about the
    // bucket (or the service).
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, k)| !k.is_empty());
    let kind = match req.method? {
        "GET" if !has_key => Kind::List,
        "GET" => Kind::Get,
        "HEAD" => Kind::Head,
        "PUT" if header("x-amz-copy-source").is_some() => Kind::Copy,
        "PUT" if has_key => Kind::Put,
        "POST" => Kind::Post,
        "DELETE" => Kind::Delete,
        _ => Kind::Other,
    };
    Some((kind, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> (Vec<Kind>, bool) {
        let mut p = RequestParser::default();
        let mut seen = Vec::new();
        for c in chunks {
            p.feed(c, &mut |k| seen.push(k));
        }
        (seen, p.lost())
    }

    #[test]
    fn keep_alive_requests_are_counted_by_kind_with_bodies_skipped() {
        let stream = b"GET /b?list-type=2&prefix=d00%2F HTTP/1.1\r\nhost: x\r\n\r\n\
PUT /b/k1 HTTP/1.1\r\ncontent-length: 5\r\n\r\nPUT /\
PUT /b/k2 HTTP/1.1\r\nx-amz-copy-source: a/k1\r\n\r\n\
HEAD /b/k2 HTTP/1.1\r\n\r\n\
GET /b/k2 HTTP/1.1\r\n\r\n\
POST /b/k3?uploads HTTP/1.1\r\nContent-Length: 0\r\n\r\n\
DELETE /b/k3 HTTP/1.1\r\n\r\n\
PUT /newbucket HTTP/1.1\r\n\r\n";
        let want = vec![
            Kind::List,
            Kind::Put,
            Kind::Copy,
            Kind::Head,
            Kind::Get,
            Kind::Post,
            Kind::Delete,
            Kind::Other,
        ];
        // In one piece, and split at every byte boundary.
        assert_eq!(count(&[stream]), (want.clone(), false));
        for at in 1..stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(count(&[a, b]), (want.clone(), false), "split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(count(&bytes), (want, false));
    }

    #[test]
    fn chunked_bodies_are_skipped_to_the_next_request() {
        let stream = b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
4\r\nGET \r\n3;ext=1\r\nabc\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n\
GET /b/k HTTP/1.1\r\n\r\n";
        for at in 1..stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(
                count(&[a, b]),
                (vec![Kind::Put, Kind::Get], false),
                "split at {at}"
            );
        }
    }

    #[test]
    fn garbage_stops_counting_instead_of_inventing_requests() {
        let (seen, lost) = count(&[
            b"GET /b/k HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 not http\r\n\r\n",
        ]);
        assert_eq!(seen, vec![Kind::Get]);
        assert!(lost);
        let (seen, lost) = count(&[b"PUT /b/k HTTP/1.1\r\ncontent-length: x\r\n\r\n"]);
        assert!(seen.is_empty() && lost);
    }
}
