//! S3 faults injected by the testkit's proxy: lost responses, errors and
//! resets around multipart uploads. Each case ends byte-exact, with no
//! dead letter and no upload left open.

use s3rf_testkit::pattern_bytes;
use s3rf_testkit::proxy::{Fault, FaultProxy, Op, Rule};

use crate::harness::*;

/// `[endpoints.<name>]` reaching a server through `proxy`.
pub fn proxied_endpoint(name: &str, proxy: &FaultProxy, key_env: &str) -> String {
    format!(
        r#"
[endpoints.{name}]
url = "{url}"
path_style = true
access_key_id_env = "{key_env}_KEY"
secret_access_key_env = "{key_env}_SECRET"
request_timeout_secs = 20
"#,
        url = proxy.url()
    )
}

/// The server completes the upload but its response is lost; the SDK's
/// retry is refused for an upload that no longer exists (s3s-fs answers
/// 403). The copy is confirmed by a HEAD instead of dead-lettering a
/// complete, correct object (issue #19, F6).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_complete_response_is_confirmed_not_dead_lettered() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let src = make_bucket(&fs, "lostc-src").await;
    let dst = make_bucket(&fs, "lostc-dst").await;
    put(&fs, &src, "big", pattern_bytes(12 * MIB, 101)).await;
    let proxy = FaultProxy::start(&env.fs.url()).expect("proxy");
    proxy.add(Rule::first(
        Op::CompleteMultipartUpload,
        Fault::LoseResponse,
        1,
    ));
    let opts = AgentOpts {
        extra_toml: proxied_endpoint("fsx", &proxy, "T_FS"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    env.publish_copy(("fs", &src, "big"), ("fsx", &dst, None))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(proxy.injected(Op::CompleteMultipartUpload), 1);
    assert!(
        proxy.seen(Op::CompleteMultipartUpload) >= 2,
        "the SDK retried the completion"
    );
    assert!(get(&fs, &dst, "big").await == pattern_bytes(12 * MIB, 101));
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
    assert_eq!(
        agent.count_messages("completion confirmed by HEAD after a failed response"),
        1,
        "{}",
        agent.log()
    );
}

/// The server creates the upload but its response is lost, so the SDK's
/// retry creates a second one. The copy completes with the second, and the
/// first is aborted instead of staying open for ever (issue #19, F5; moto
/// lists uploads).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_response_leaves_no_upload_open() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "lostcr-src").await;
    let dst = make_bucket(&moto, "lostcr-dst").await;
    put(&fs, &src, "big", pattern_bytes(11 * MIB, 102)).await;
    let proxy = FaultProxy::start(&env.moto.url()).expect("proxy");
    proxy.add(Rule::first(
        Op::CreateMultipartUpload,
        Fault::LoseResponse,
        1,
    ));
    let opts = AgentOpts {
        extra_toml: proxied_endpoint("motox", &proxy, "T_MOTO"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    env.publish_copy(("fs", &src, "big"), ("motox", &dst, None))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(proxy.injected(Op::CreateMultipartUpload), 1);
    assert_eq!(proxy.seen(Op::CreateMultipartUpload), 2, "the SDK retried");
    assert!(get(&moto, &dst, "big").await == pattern_bytes(11 * MIB, 102));
    assert_eq!(open_uploads(&moto, &dst).await, Vec::<String>::new());
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
}
