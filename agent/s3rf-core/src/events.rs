//! S3 event notifications, as read from SQS: parsing and mapping to jobs.
//! Pure; the bridge (`bridge.rs`) does the IO.
//!
//! Accepted shapes: S3's own `{"Records":[…]}` (several records per message),
//! the same wrapped by SNS (`{"Type":"Notification","Message":"…"}`), and
//! EventBridge (`{"detail-type":"Object Created",…}`). `s3:TestEvent` is
//! recognised so that it can be acknowledged and skipped.

use std::cmp::Ordering;

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use crate::settings::QueueConfig;

/// What an event does to its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `ObjectCreated:*` / EventBridge "Object Created".
    Created,
    /// `ObjectRemoved:Delete`, `ObjectRemoved:DeleteMarkerCreated`, "Object Deleted".
    Removed,
    /// Anything else (restore, replication, lifecycle transition, ...).
    Other,
}

/// One object event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// The event's name as sent, e.g. `ObjectCreated:Put`.
    pub name: String,
    /// What it does.
    pub kind: EventKind,
    /// Bucket.
    pub bucket: String,
    /// Key, decoded.
    pub key: String,
    /// Size, for creations.
    pub size: Option<u64>,
    /// ETag, for creations.
    pub etag: Option<String>,
    /// Version id, if versioned.
    pub version_id: Option<String>,
    /// Per-key ordering token, when the store sends one.
    pub sequencer: Option<String>,
}

/// What one SQS message body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Object events (possibly none relevant).
    Events(Vec<ObjectEvent>),
    /// `s3:TestEvent`, sent when a notification is configured.
    TestEvent,
    /// Not an S3 event at all.
    NotAnEvent(String),
}

/// Decodes an S3 notification key: `+` is a space, then `%XX`.
pub fn decode_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Compares two sequencers of the same key: left-pad with zeros, then compare
/// as strings (hex, case-insensitive).
pub fn compare_sequencers(a: &str, b: &str) -> Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0>width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

fn kind_of(name: &str) -> EventKind {
    if name.starts_with("ObjectCreated:") || name == "Object Created" {
        EventKind::Created
    } else if name == "ObjectRemoved:Delete"
        || name == "ObjectRemoved:DeleteMarkerCreated"
        || name == "Object Deleted"
    {
        EventKind::Removed
    } else {
        EventKind::Other
    }
}

#[derive(Deserialize)]
struct S3Envelope {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "eTag")]
    etag: Option<String>,
    #[serde(default, rename = "versionId")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

#[derive(Deserialize)]
struct EventBridge {
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: EbDetail,
}

#[derive(Deserialize)]
struct EbDetail {
    bucket: S3Bucket,
    object: EbObject,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, rename = "deletion-type")]
    deletion_type: Option<String>,
}

#[derive(Deserialize)]
struct EbObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// Parses one SQS message body.
pub fn parse_body(body: &str) -> Body {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Body::NotAnEvent("body is not JSON".to_owned());
    };
    // SNS without raw delivery: the notification is a JSON string inside.
    if value.get("Type").and_then(|t| t.as_str()) == Some("Notification")
        && let Some(inner) = value.get("Message").and_then(|m| m.as_str())
    {
        return parse_body(inner);
    }
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Body::TestEvent;
    }
    if value.get("Records").is_some() {
        return match serde_json::from_value::<S3Envelope>(value) {
            Ok(env) => Body::Events(
                env.records
                    .into_iter()
                    .map(|r| ObjectEvent {
                        kind: kind_of(&r.event_name),
                        name: r.event_name,
                        bucket: r.s3.bucket.name,
                        key: decode_key(&r.s3.object.key),
                        size: r.s3.object.size,
                        etag: r.s3.object.etag,
                        version_id: r.s3.object.version_id,
                        sequencer: r.s3.object.sequencer.filter(|s| !s.is_empty()),
                    })
                    .collect(),
            ),
            Err(e) => Body::NotAnEvent(format!("Records are not S3 event records: {e}")),
        };
    }
    if value.get("detail-type").is_some() {
        return match serde_json::from_value::<EventBridge>(value) {
            Ok(eb) => {
                let name = match (&eb.detail.reason, &eb.detail.deletion_type) {
                    (Some(r), _) if eb.detail_type == "Object Created" => {
                        format!("Object Created ({r})")
                    }
                    (_, Some(d)) if eb.detail_type == "Object Deleted" => {
                        format!("Object Deleted ({d})")
                    }
                    _ => eb.detail_type.clone(),
                };
                Body::Events(vec![ObjectEvent {
                    name,
                    kind: kind_of(&eb.detail_type),
                    bucket: eb.detail.bucket.name,
                    // EventBridge keys are not URL-encoded.
                    key: eb.detail.object.key,
                    size: eb.detail.object.size,
                    etag: eb.detail.object.etag,
                    version_id: eb.detail.object.version_id,
                    sequencer: eb.detail.object.sequencer.filter(|s| !s.is_empty()),
                }])
            }
            Err(e) => Body::NotAnEvent(format!("not an EventBridge S3 event: {e}")),
        };
    }
    Body::NotAnEvent("JSON without Records, Event or detail-type".to_owned())
}

/// A job made from an event, with its dedup id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Publish on `<prefix>.copy`.
    Copy(s3rf_wire::CopyJob),
    /// Publish on `<prefix>.delete`.
    Delete(s3rf_wire::DeleteJob),
    /// Nothing to do, and why.
    Skip(&'static str),
}

/// Maps one event through a queue's route. `fallback` makes the dedup id
/// unique when the store sends no sequencer (SQS message id and record index).
pub fn map_event(ev: &ObjectEvent, route: &QueueConfig, fallback: &str) -> (Mapped, String) {
    let token = ev.sequencer.as_deref().unwrap_or(fallback);
    let kind = match ev.kind {
        EventKind::Created => "c",
        EventKind::Removed => "d",
        EventKind::Other => "o",
    };
    let msg_id = format!(
        "ev:{}",
        crate::migration::entity_hash(&[&route.src, &ev.bucket, &ev.key, kind, token])
    );
    if let Some(p) = &route.prefix
        && !ev.key.starts_with(p.as_str())
    {
        return (Mapped::Skip("outside the prefix"), msg_id);
    }
    let dst_bucket = route
        .bucket_map
        .get(&ev.bucket)
        .cloned()
        .unwrap_or_else(|| ev.bucket.clone());
    let src = s3rf_wire::SourceObject {
        endpoint: route.src.clone(),
        bucket: ev.bucket.clone(),
        key: ev.key.clone(),
        version_id: None,
    };
    let mapped = match ev.kind {
        EventKind::Created => Mapped::Copy(s3rf_wire::CopyJob {
            src,
            dst: s3rf_wire::DestinationLocation {
                endpoint: route.dst.clone(),
                bucket: dst_bucket,
                key: None,
            },
            migration: None,
            dry_run: false,
            sequencer: ev.sequencer.clone(),
            skip_if_source_missing: true,
            listed_size: ev.size,
            listed_etag: None,
            dst_bucket_new: false,
            attempted_since_ms: None,
        }),
        EventKind::Removed if route.propagate_deletes => Mapped::Delete(s3rf_wire::DeleteJob {
            dst: s3rf_wire::DestinationObject {
                endpoint: route.dst.clone(),
                bucket: dst_bucket,
                key: ev.key.clone(),
            },
            src: Some(src),
            sequencer: ev.sequencer.clone(),
            migration: None,
            if_source_absent: true,
            dry_run: false,
        }),
        EventKind::Removed => Mapped::Skip("deletes do not propagate on this queue"),
        EventKind::Other => Mapped::Skip("not a create or delete event"),
    };
    (mapped, msg_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_decoding() {
        #[rustfmt::skip]
        let table = [
            ("plain/key.txt", "plain/key.txt"),
            ("with+space", "with space"),
            ("plus%2Bsign", "plus+sign"),
            ("pct%2520", "pct%20"),
            ("dir%2Fsub%2Ffile", "dir/sub/file"),
            ("%C3%BCn%C3%AFc%C3%B8de+%E2%9C%93", "ünïcøde ✓"),
        ];
        for (raw, want) in table {
            assert_eq!(decode_key(raw), want, "{raw}");
        }
    }

    #[test]
    fn sequencer_order() {
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
        assert_eq!(compare_sequencers("F", "0E"), Ordering::Greater);
        assert_eq!(compare_sequencers("00a", "A"), Ordering::Equal);
        assert_eq!(compare_sequencers("100", "FF"), Ordering::Greater);
    }

    const PUT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
      "s3":{"bucket":{"name":"photos"},"object":{"key":"a+b%2Bc.jpg","size":12,"eTag":"abc","sequencer":"0A1"}}},
      {"eventName":"ObjectRemoved:DeleteMarkerCreated","s3":{"bucket":{"name":"photos"},"object":{"key":"old","sequencer":"0A2"}}},
      {"eventName":"ObjectRestore:Completed","s3":{"bucket":{"name":"photos"},"object":{"key":"x"}}}]}"#;

    #[test]
    fn s3_records() {
        let Body::Events(ev) = parse_body(PUT) else {
            panic!("not events")
        };
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].kind, EventKind::Created);
        assert_eq!(ev[0].key, "a b+c.jpg");
        assert_eq!(ev[0].size, Some(12));
        assert_eq!(ev[0].sequencer.as_deref(), Some("0A1"));
        assert_eq!(ev[1].kind, EventKind::Removed);
        assert_eq!(ev[1].size, None);
        assert_eq!(ev[2].kind, EventKind::Other);
    }

    #[test]
    fn sns_wrapped_and_test_event() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "1", "Message": PUT})
            .to_string();
        assert!(matches!(parse_body(&sns), Body::Events(e) if e.len() == 3));
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T00:00:00Z","Bucket":"photos"}"#;
        assert_eq!(parse_body(test), Body::TestEvent);
        let sns_test = serde_json::json!({"Type": "Notification", "Message": test}).to_string();
        assert_eq!(parse_body(&sns_test), Body::TestEvent);
    }

    #[test]
    fn eventbridge() {
        let created = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3",
          "detail":{"bucket":{"name":"photos"},"object":{"key":"a b+c.jpg","size":5,"etag":"e","sequencer":"0B"},"reason":"PutObject"}}"#;
        let Body::Events(ev) = parse_body(created) else {
            panic!()
        };
        assert_eq!(ev[0].kind, EventKind::Created);
        assert_eq!(ev[0].key, "a b+c.jpg", "EventBridge keys are not decoded");
        let deleted = r#"{"detail-type":"Object Deleted","source":"aws.s3",
          "detail":{"bucket":{"name":"photos"},"object":{"key":"k","sequencer":"0C"},"deletion-type":"Delete Marker Created"}}"#;
        let Body::Events(ev) = parse_body(deleted) else {
            panic!()
        };
        assert_eq!(ev[0].kind, EventKind::Removed);
    }

    fn route() -> QueueConfig {
        QueueConfig {
            queue_url: "http://q".into(),
            sqs_endpoint: "aws".into(),
            src: "aws".into(),
            dst: "express".into(),
            bucket_map: [("photos".to_owned(), "photos--euw1-az1--x-s3".to_owned())].into(),
            prefix: Some("models/".into()),
            propagate_deletes: true,
        }
    }

    fn event(kind: EventKind, key: &str, seq: Option<&str>) -> ObjectEvent {
        ObjectEvent {
            name: "x".into(),
            kind,
            bucket: "photos".into(),
            key: key.into(),
            size: None,
            etag: None,
            version_id: None,
            sequencer: seq.map(str::to_owned),
        }
    }

    #[test]
    fn mapping() {
        let r = route();
        let (m, id) = map_event(
            &event(EventKind::Created, "models/a b", Some("0A")),
            &r,
            "msg-0",
        );
        let Mapped::Copy(c) = m else { panic!("{m:?}") };
        assert_eq!(c.dst.bucket, "photos--euw1-az1--x-s3");
        assert_eq!(c.sequencer.as_deref(), Some("0A"));
        assert!(c.skip_if_source_missing);
        let (again, id2) = map_event(
            &event(EventKind::Created, "models/a b", Some("0A")),
            &r,
            "msg-9",
        );
        assert_eq!(id, id2, "a redelivered event has the same dedup id");
        assert_eq!(again, Mapped::Copy(c));
        let (_, newer) = map_event(
            &event(EventKind::Created, "models/a b", Some("0B")),
            &r,
            "msg-0",
        );
        assert_ne!(id, newer);

        let (m, _) = map_event(
            &event(EventKind::Removed, "models/a b", Some("0C")),
            &r,
            "m",
        );
        let Mapped::Delete(d) = m else {
            panic!("{m:?}")
        };
        assert!(d.if_source_absent && d.src.is_some());

        let (m, _) = map_event(&event(EventKind::Created, "other/x", None), &r, "m");
        assert_eq!(m, Mapped::Skip("outside the prefix"));
        let mut keep = r.clone();
        keep.propagate_deletes = false;
        let (m, _) = map_event(&event(EventKind::Removed, "models/x", None), &keep, "m");
        assert!(matches!(m, Mapped::Skip(_)));
        let (m, _) = map_event(&event(EventKind::Other, "models/x", None), &r, "m");
        assert!(matches!(m, Mapped::Skip(_)));
        let (_, a) = map_event(&event(EventKind::Created, "models/x", None), &r, "m1-0");
        let (_, b) = map_event(&event(EventKind::Created, "models/x", None), &r, "m2-0");
        assert_ne!(
            a, b,
            "without a sequencer the SQS message id keeps events apart"
        );
    }

    #[test]
    fn garbage() {
        for body in [
            "",
            "hello",
            "{}",
            r#"{"Records":"nope"}"#,
            r#"{"detail-type":"Object Created"}"#,
        ] {
            assert!(matches!(parse_body(body), Body::NotAnEvent(_)), "{body:?}");
        }
    }
}

/// Property tests: whatever an SQS message holds, parsing says what it is
/// without panicking, and decoded keys are what S3 encoded.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_body_parses_or_is_named_not_an_event(body in "\\PC{0,300}") {
            let _ = parse_body(&body);
        }

        #[test]
        fn record_shaped_bodies_never_panic(
            name in prop::sample::select(vec![
                "ObjectCreated:Put", "ObjectRemoved:Delete", "ObjectCreated:", "", "s3:TestEvent",
            ]),
            key in "\\PC{0,40}",
            bucket in "[a-z0-9.-]{0,12}",
            size in any::<Option<i64>>(),
        ) {
            let body = serde_json::json!({"Records": [{
                "eventName": name,
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}},
            }]});
            let _ = parse_body(&body.to_string());
        }

        #[test]
        fn keys_survive_s3_form_encoding(key in "\\PC{0,60}") {
            let encoded: String = percent_encoding::utf8_percent_encode(
                &key,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            prop_assert_eq!(decode_key(&encoded), key);
        }
    }
}
