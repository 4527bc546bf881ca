//! Unit tests of the proxy: which operation a request is, and the rules.

use super::*;
use hyper::Method;

#[test]
fn operations_are_recognised() {
    #[rustfmt::skip]
    let table = [
        (Method::GET, "/", "", false, Op::ListBuckets),
        (Method::HEAD, "/b", "", false, Op::HeadBucket),
        (Method::HEAD, "/b/k", "", false, Op::HeadObject),
        (Method::GET, "/b/k/x", "", false, Op::GetObject),
        (Method::GET, "/b/k", "tagging", false, Op::GetObjectTagging),
        (Method::GET, "/b", "list-type=2&prefix=a", false, Op::ListObjects),
        (Method::GET, "/b", "uploads&prefix=k", false, Op::ListMultipartUploads),
        (Method::GET, "/b/k", "uploadId=u", false, Op::ListParts),
        (Method::PUT, "/b/k", "", false, Op::PutObject),
        (Method::PUT, "/b/k", "", true, Op::CopyObject),
        (Method::PUT, "/b/k", "partNumber=1&uploadId=u", false, Op::UploadPart),
        (Method::PUT, "/b/k", "partNumber=1&uploadId=u", true, Op::UploadPartCopy),
        (Method::PUT, "/b", "", false, Op::CreateBucket),
        (Method::POST, "/b/k", "uploads", false, Op::CreateMultipartUpload),
        (Method::POST, "/b/k", "uploadId=u", false, Op::CompleteMultipartUpload),
        (Method::DELETE, "/b/k", "uploadId=u", false, Op::AbortMultipartUpload),
        (Method::DELETE, "/b/k", "", false, Op::DeleteObject),
    ];
    for (method, path, query, copy, want) in table {
        assert_eq!(
            classify(&method, path, query, copy),
            want,
            "{method} {path}?{query}"
        );
    }
}

#[test]
fn rules_fire_by_count() {
    let state = Mutex::new(State::default());
    state.lock().unwrap().rules.push((
        Rule::first(Op::PutObject, Fault::FlipRequestBody, 2).after(1),
        0,
    ));
    let fired: Vec<bool> = (0..5)
        .map(|_| pick(&state, Op::PutObject, false, "/b/k").is_some())
        .collect();
    assert_eq!(fired, [false, true, true, false, false]);
    assert!(pick(&state, Op::GetObject, false, "/b/k").is_none());
    let s = state.lock().unwrap();
    assert_eq!(s.seen.get(&Op::PutObject), Some(&5));
    assert_eq!(s.injected.get(&Op::PutObject), Some(&2));
}

#[test]
fn chaos_is_deterministic_and_near_its_rate() {
    let run = |seed| {
        let state = Mutex::new(State::default());
        state.lock().unwrap().chaos = Some(Chaos {
            per_mille: 150,
            rng: fastrand::Rng::with_seed(seed),
        });
        (0..2000)
            .map(|_| pick(&state, Op::GetObject, false, "/b/k").map(|f| f.kind()))
            .collect::<Vec<_>>()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    let faults = a.iter().flatten().count();
    assert!((200..400).contains(&faults), "{faults} faults in 2000");
    assert!(a.iter().flatten().any(|k| *k == "flip_response"));
}

#[test]
fn flips_change_exactly_one_bit() {
    let body = Bytes::from_static(b"abcdef");
    let flipped = flip_middle(body.clone());
    let diff: u32 = body
        .iter()
        .zip(flipped.iter())
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(diff, 1);
}
