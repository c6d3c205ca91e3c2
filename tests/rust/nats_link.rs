//! The host's NATS link on a nats-server of its own (a free port; the machine's shared
//! NATS is never stopped): channels and glob patterns as on Redis, subscriber counts by
//! census, what NATS cannot do refused by name, the publish bound while NATS is away,
//! and subscriptions replayed when it returns.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::links::{free_port, next_connection, next_message, sink, wait_listening};
use tokio::sync::mpsc::UnboundedReceiver;
use wasio::testing::{LinkError, LinkEvent, NatsPubSub, Topic};
use wasio::{Connector, DatasourceSpec};

struct NatsServer {
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    fn start(port: u16) -> NatsServer {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian's package, on every machine)");
        wait_listening(port, "nats-server");
        NatsServer {
            port,
            child: Some(child),
        }
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn link(port: u16, buffer: usize) -> (UnboundedReceiver<LinkEvent>, NatsPubSub) {
    let (sink, events) = sink();
    let spec = DatasourceSpec {
        name: "t".into(),
        connector: Connector::Nats,
        url: format!("nats://127.0.0.1:{port}"),
        publish_buffer: buffer,
    };
    let link = NatsPubSub::connect(&spec, sink).await.expect("connects");
    (events, link)
}

async fn counts(link: &NatsPubSub, channels: &[&str]) -> Vec<u64> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let channels = channels.iter().map(|c| c.to_string()).collect();
    link.count(
        channels,
        false,
        Box::new(move |c| {
            let _ = tx.send(c);
        }),
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap()
        .expect("the census answers")
}

async fn settled(link: &NatsPubSub) {
    assert!(link.settled(Duration::from_secs(5)).await, "settled");
}

#[tokio::test]
async fn channels_patterns_and_counts() {
    let nats = NatsServer::start(free_port());
    let (mut a_events, a) = link(nats.port, 100).await;
    let (mut b_events, b) = link(nats.port, 100).await;
    a.subscribe(Topic::Channel("app#/#".into())).unwrap();
    b.subscribe(Topic::Pattern("app#*".into())).unwrap();
    b.subscribe(Topic::Pattern("room.*.x".into())).unwrap();
    settled(&a).await;
    settled(&b).await;

    a.publish("app#/#".into(), b"one".to_vec(), false).unwrap();
    assert_eq!(
        next_message(&mut a_events).await,
        ("app#/#".into(), None, b"one".to_vec())
    );

    assert_eq!(
        next_message(&mut b_events).await,
        ("app#/#".into(), Some("app#*".into()), b"one".to_vec())
    );
    // `room.*.x` is a glob, as on Redis: `room.1.y` is not one of its channels, and
    // what it matches arrives in order.
    for ch in ["room.1.y", "room.1.x", "room.a.b.x"] {
        a.publish(ch.into(), ch.as_bytes().to_vec(), false).unwrap();
    }
    for want in ["room.1.x", "room.a.b.x"] {
        let (ch, pattern, _) = next_message(&mut b_events).await;
        assert_eq!((ch.as_str(), pattern.as_deref()), (want, Some("room.*.x")));
    }

    // Like PUBSUB NUMSUB: channel subscribers only, patterns not counted.
    assert_eq!(counts(&a, &["app#/#", "nobody#"]).await, vec![1, 0]);
    b.subscribe(Topic::Channel("app#/#".into())).unwrap();
    settled(&b).await;
    assert_eq!(counts(&a, &["app#/#", "nobody#"]).await, vec![2, 0]);
    b.close().await;
    assert_eq!(counts(&a, &["app#/#"]).await, vec![1]);

    let sharded = a.publish("app#/#".into(), vec![], true).unwrap_err();
    assert!(
        matches!(&sharded, LinkError::Invalid(m) if m.contains("no sharded channels")),
        "{sharded:?}"
    );
    let bad = a.subscribe(Topic::Channel("a b".into())).unwrap_err();
    assert!(
        matches!(&bad, LinkError::Invalid(m) if m.contains("no NATS subject")),
        "{bad:?}"
    );
    let wildcard = a.publish("app.*".into(), vec![], false).unwrap_err();
    assert!(matches!(wildcard, LinkError::Invalid(_)), "{wildcard:?}");
    a.close().await;
}

#[tokio::test]
async fn bounded_while_away_and_resubscribed_on_return() {
    let port = free_port();
    let mut nats = NatsServer::start(port);
    let (mut events, a) = link(port, 5).await;
    a.subscribe(Topic::Channel("back".into())).unwrap();
    settled(&a).await;

    nats.stop();
    assert!(
        !next_connection(&mut events).await,
        "the link reports the loss"
    );
    // The client's own buffer, then the link's bound of 5: publishes are refused, not
    // held without end.
    let mut refused = None;
    for i in 0..10_000 {
        if let Err(e) = a.publish("back".into(), vec![0; 64], false) {
            refused = Some((i, e));
            break;
        }
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (after, err) = refused.expect("a publish refused while NATS is away");
    assert!(
        matches!(&err, LinkError::Full(m) if m.contains("5 operations")),
        "{err:?}"
    );
    assert!(after >= 5, "refused only after the buffer filled ({after})");

    let _nats = NatsServer::start(port);
    assert!(
        next_connection(&mut events).await,
        "the link reports it is back"
    );
    let (_other_events, b) = link(port, 100).await;
    // The replayed subscription receives what another node sends now.
    let mut got = false;
    for _ in 0..50 {
        b.publish("back".into(), b"again".to_vec(), false).unwrap();
        settled(&b).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if let LinkEvent::Message { payload, .. } = e
                && payload == b"again"
            {
                got = true;
            }
        }
        if got {
            break;
        }
    }
    assert!(got, "the subscription was replayed after the restart");
    b.close().await;
    a.close().await;
}
