//! The host's PostgreSQL link: on the machine's PostgreSQL (127.0.0.1:5432) the
//! notifications of a channel in order, attachments read back in their header's place,
//! what NOTIFY cannot carry refused by name, the cleanup; on a server of the test's own,
//! the publish bound while PostgreSQL is away, and LISTENs replayed when it returns.

mod common;

use std::time::Duration;

use common::links::{next_connection, next_message, sink};
use common::postgres::PgServer;
use tokio::sync::mpsc::UnboundedReceiver;
use wasio::testing::{LinkError, LinkEvent, MAX_PAYLOAD, PostgresLink};
use wasio::{Connector, DatasourceSpec};

const SHARED: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn link(url: &str, buffer: usize) -> (UnboundedReceiver<LinkEvent>, PostgresLink) {
    let (sink, events) = sink();
    let spec = DatasourceSpec {
        name: "t".into(),
        connector: Connector::Postgres,
        url: url.into(),
        publish_buffer: buffer,
    };
    let link = PostgresLink::connect(&spec, sink).await.expect("connects");
    (events, link)
}

/// A name no other test run uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{what}_{}_{nanos}", std::process::id())
}

async fn settled(link: &PostgresLink) {
    assert!(link.settled(Duration::from_secs(10)).await, "settled");
}

async fn sql() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(SHARED, tokio_postgres::NoTls)
        .await
        .expect("the machine's PostgreSQL");
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn notifications_arrive_in_order_with_attachments_read_in_place() {
    let (mut events, link) = link(SHARED, 1000).await;
    let channel = format!("wasio#{}", unique("order"));
    let table = unique("attachments");
    link.listen(channel.clone(), Some(table.clone())).unwrap();
    settled(&link).await;

    // Plain notifications, with an attachment in the middle: one order.
    for i in 0..50 {
        link.notify(channel.clone(), format!("{{\"n\":{i}}}"))
            .unwrap();
    }
    let binary: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    link.notify_attached(
        channel.clone(),
        r#"{"uid":"u1","type":3}"#,
        table.clone(),
        binary.clone(),
    )
    .unwrap();
    link.notify(channel.clone(), "{\"n\":50}".into()).unwrap();
    for i in 0..50 {
        let (ch, pattern, payload) = next_message(&mut events).await;
        assert_eq!((ch.as_str(), pattern), (channel.as_str(), None));
        assert_eq!(payload, format!("{{\"n\":{i}}}").into_bytes());
    }
    let (_, _, payload) = next_message(&mut events).await;
    assert_eq!(
        payload, binary,
        "the attachment's row arrives in its header's place"
    );
    let (_, _, payload) = next_message(&mut events).await;
    assert_eq!(payload, b"{\"n\":50}");

    // The header as Node.js nodes read it: the row id under `attachmentId`, a string.
    let db = sql().await;
    let rows = db
        .query(&format!("SELECT id, payload FROM {table}"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Vec<u8>>(1), binary);

    // A header naming no row is dropped and counted, and what follows still arrives.
    let malformed = |l: &PostgresLink| l.to_json()["malformed"].as_u64().unwrap();
    let before = malformed(&link);
    link.notify(
        channel.clone(),
        r#"{"uid":"u2","type":3,"attachmentId":"999999999"}"#.into(),
    )
    .unwrap();
    link.notify(channel.clone(), "{\"after\":true}".into())
        .unwrap();
    let (_, _, payload) = next_message(&mut events).await;
    assert_eq!(payload, b"{\"after\":true}");
    assert_eq!(malformed(&link), before + 1);

    // The cleanup deletes the rows older than it is told.
    link.clean(table.clone(), 1).unwrap();
    settled(&link).await;
    let left = db
        .query(&format!("SELECT id FROM {table}"), &[])
        .await
        .unwrap();
    assert!(left.is_empty(), "cleaned: {} rows left", left.len());

    // Without a table, a header is just a notification.
    let plain = format!("wasio#{}", unique("plain"));
    link.listen(plain.clone(), None).unwrap();
    settled(&link).await;
    let header = r#"{"uid":"u3","type":3,"attachmentId":"1"}"#;
    link.notify(plain.clone(), header.into()).unwrap();
    let (ch, _, payload) = next_message(&mut events).await;
    assert_eq!((ch, payload), (plain, header.as_bytes().to_vec()));
    db.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn what_notify_cannot_carry_is_refused_by_name() {
    let (_events, link) = link(SHARED, 10).await;
    let long = "x".repeat(MAX_PAYLOAD);
    match link.notify("wasio#long".into(), long) {
        Err(LinkError::Invalid(m)) => assert!(m.contains("attachment"), "{m}"),
        other => panic!("a notification of {MAX_PAYLOAD} bytes: {other:?}"),
    }
    for table in ["x; DROP TABLE y", "a.b.c", ""] {
        match link.notify_attached("c".into(), "{}", table.into(), vec![1]) {
            Err(LinkError::Invalid(m)) => assert!(m.contains("table name"), "{m}"),
            other => panic!("table {table:?}: {other:?}"),
        }
    }
    match link.notify_attached("c".into(), "[1]", "t".into(), vec![1]) {
        Err(LinkError::Invalid(m)) => assert!(m.contains("JSON object"), "{m}"),
        other => panic!("a header that is no object: {other:?}"),
    }
    let spec = DatasourceSpec {
        name: "tls".into(),
        connector: Connector::Postgres,
        url: format!("{SHARED}?sslmode=require"),
        publish_buffer: 10,
    };
    let (sink, _rx) = sink();
    let e = PostgresLink::connect(&spec, sink)
        .await
        .err()
        .expect("sslmode=require is refused");
    assert!(format!("{e:#}").contains("sslmode=require"), "{e:#}");
}

#[tokio::test]
async fn a_restart_is_bounded_while_away_and_listens_again() {
    let pg = PgServer::start();
    let (mut events, link) = link(&pg.url(), 5).await;
    let channel = "socket.io#/".to_string();
    link.listen(channel.clone(), Some("socket_io_attachments".into()))
        .unwrap();
    settled(&link).await;
    link.notify(channel.clone(), "{\"before\":1}".into())
        .unwrap();
    assert_eq!(next_message(&mut events).await.2, b"{\"before\":1}");

    pg.down();
    assert!(!next_connection(&mut events).await, "the loss is reported");
    assert_eq!(link.to_json()["connected"], false);
    // Held while away, up to the bound, then refused with an error that says why.
    let mut taken = 0;
    let refused = loop {
        match link.notify(channel.clone(), format!("{{\"away\":{taken}}}")) {
            Ok(()) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken <= 6, "the bound of 5 holds");
    };
    assert!(matches!(refused, LinkError::Full(_)), "{refused:?}");
    assert!((5..=6).contains(&taken), "{taken} taken");
    assert!(link.to_json()["publish_errors"].as_u64().unwrap() >= 1);

    pg.up();
    assert!(next_connection(&mut events).await, "back, LISTENs replayed");
    // What was held is sent once this node listens again, in order.
    for i in 0..taken {
        assert_eq!(
            next_message(&mut events).await.2,
            format!("{{\"away\":{i}}}").into_bytes()
        );
    }
    link.notify(channel.clone(), "{\"after\":1}".into())
        .unwrap();
    assert_eq!(next_message(&mut events).await.2, b"{\"after\":1}");
    let status = link.to_json();
    assert_eq!(status["connected"], true);
    assert!(status["reconnects"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(status["buffered"], 0);
}
