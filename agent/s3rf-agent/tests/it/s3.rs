//! S3 and ledger helpers of the integration tests: buckets, objects,
//! uploads left open, and waiting for a migration to complete.

use aws_sdk_s3::primitives::ByteStream;
use s3rf_testkit::unique_bucket;
use std::time::{Duration, Instant};

use crate::harness::{Agent, TestEnv};

// ----- S3 helpers ----------------------------------------------------------

pub async fn make_bucket(s3: &aws_sdk_s3::Client, tag: &str) -> String {
    let b = unique_bucket(tag);
    s3.create_bucket()
        .bucket(&b)
        .send()
        .await
        .expect("create bucket");
    b
}

pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
}

pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

pub async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// Uploads still in progress in `bucket` (moto only: s3s-fs cannot list them).
pub async fn open_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    s3.list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list uploads")
        .uploads()
        .iter()
        .map(|u| format!("{}:{}", u.key().unwrap_or(""), u.upload_id().unwrap_or("")))
        .collect()
}

// ----- migrations --------------------------------------------------------------

pub async fn ledger(env: &TestEnv) -> s3rf_agent::ledger::Ledger {
    s3rf_agent::ledger::Ledger::open(
        &env.js,
        &s3rf_agent::names::Names::new("s3rf"),
        env.replicas,
    )
    .await
    .expect("ledger")
}

/// Waits until migration `id` is complete and returns its tally.
pub async fn wait_complete(env: &TestEnv, id: &str) -> s3rf_agent::migration::Tally {
    wait_complete_or_explain(env, id, &[]).await
}

/// [`wait_complete`], failing with the dead-letter count and `agents`' logs
/// when the migration does not complete. JetStream errors while it waits
/// (a cluster electing a leader) are waited out like the agents do.
pub async fn wait_complete_or_explain(
    env: &TestEnv,
    id: &str,
    agents: &[&Agent],
) -> s3rf_agent::migration::Tally {
    let names = s3rf_agent::names::Names::new("s3rf");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut ledger = None;
    let mut last = String::from("no answer from JetStream yet");
    loop {
        if ledger.is_none() {
            match s3rf_agent::ledger::Ledger::open(&env.js, &names, env.replicas).await {
                Ok(l) => ledger = Some(l),
                Err(e) => last = format!("opening the ledger: {e}"),
            }
        }
        if let Some(l) = &ledger {
            match l.fold(id).await {
                Ok(t) if t.complete() => return t,
                Ok(t) => last = format!("{t:#?}"),
                Err(e) => last = format!("folding: {e}"),
            }
        }
        if Instant::now() > deadline {
            let dead = env.dead_letter_count().await;
            let logs: Vec<String> = agents.iter().map(|a| a.log()).collect();
            panic!(
                "migration {id} not complete after 180s ({dead} dead letters): {last}\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every key of a bucket with its bytes.
pub async fn bucket_contents(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
        for o in page.contents() {
            let k = o.key().unwrap().to_owned();
            let body = get(s3, bucket, &k).await;
            out.insert(k, body);
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

/// How many objects `bucket` holds.
pub async fn count_objects(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let mut n = 0;
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        n += page.map(|p| p.contents().len()).unwrap_or(0);
    }
    n
}
