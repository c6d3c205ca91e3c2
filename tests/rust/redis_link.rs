//! The host's Redis link on a redis-server of its own (a free port; the machine's shared
//! Redis is never stopped): order, patterns, counts, the publish bound while Redis is
//! away, and subscriptions replayed when it returns.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::links::{free_port, next_connection, next_message, sink, wait_listening};
use tokio::sync::mpsc::UnboundedReceiver;
use wasio::testing::{LinkEvent, RedisPubSub, Topic};
use wasio::{Connector, DatasourceSpec};

struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }
    fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run installs it)");
        let mut server = RedisServer {
            port,
            child: Some(child),
        };
        server.wait_ready();
        server
    }
    fn wait_ready(&mut self) {
        wait_listening(self.port, "redis-server");
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn restart(&mut self) {
        self.stop();
        *self = RedisServer::start(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spec(url: String, publish_buffer: usize) -> DatasourceSpec {
    DatasourceSpec {
        name: "t".into(),
        connector: Connector::Redis,
        url,
        publish_buffer,
    }
}

async fn link(port: u16, buffer: usize) -> (UnboundedReceiver<LinkEvent>, RedisPubSub) {
    let (sink, events) = sink();
    let spec = spec(format!("redis://127.0.0.1:{port}"), buffer);
    let link = RedisPubSub::connect(&spec, sink).await.expect("connects");
    (events, link)
}

/// Waits until Redis counts `n` subscribers on `channel` (subscriptions are applied
/// by the link's writer, after the call returns).
async fn subscribed(link: &RedisPubSub, channel: &str, n: u64) {
    for _ in 0..200u64 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        link.count(
            vec![channel.into()],
            false,
            Box::new(move |c| {
                let _ = tx.send(c);
            }),
        )
        .unwrap();
        let counts = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        if counts.unwrap()[0] >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{channel} never had {n} subscribers");
}

#[tokio::test]
async fn order_patterns_and_counts() {
    let redis = RedisServer::start(free_port());
    let (mut events, link) = link(redis.port, 10_000).await;
    link.subscribe(Topic::Channel("c1".into())).unwrap();
    link.subscribe(Topic::Pattern("p#*".into())).unwrap();
    subscribed(&link, "c1", 1).await;
    for i in 0..2000u32 {
        link.publish("c1".into(), i.to_be_bytes().to_vec(), false)
            .unwrap();
    }
    link.publish("p#room#".into(), b"x".to_vec(), false)
        .unwrap();
    for i in 0..2000u32 {
        let (channel, pattern, payload) = next_message(&mut events).await;
        assert_eq!((channel.as_str(), pattern), ("c1", None));
        assert_eq!(payload, i.to_be_bytes(), "message {i} out of order");
    }
    let (channel, pattern, payload) = next_message(&mut events).await;
    assert_eq!(channel, "p#room#");
    assert_eq!(
        pattern.as_deref(),
        Some("p#*"),
        "the matching psubscribe pattern is named"
    );
    assert_eq!(payload, b"x");
    // A channel name given to unsubscribe stops the pattern of that name too.
    link.unsubscribe(Topic::Channel("p#*".into())).unwrap();
    link.unsubscribe(Topic::Channel("c1".into())).unwrap();
    link.publish("c1".into(), b"late".to_vec(), false).unwrap();
    link.subscribe(Topic::Channel("fence".into())).unwrap();
    link.publish("fence".into(), b"f".to_vec(), false).unwrap();
    let (channel, ..) = next_message(&mut events).await;
    assert_eq!(channel, "fence", "nothing arrives after unsubscribe");
    link.close().await;
}

#[tokio::test]
async fn publishes_wait_for_redis_up_to_the_bound_and_subscriptions_come_back() {
    let mut redis = RedisServer::start(free_port());
    let (mut events, link) = link(redis.port, 50).await;
    link.subscribe(Topic::Channel("c".into())).unwrap();
    subscribed(&link, "c", 1).await;

    redis.stop();
    assert!(
        !next_connection(&mut events).await,
        "the guest hears the link went down"
    );
    // The writer takes one batch before it waits, so fill well past the bound.
    let mut refused = None;
    for i in 0..200u32 {
        if let Err(e) = link.publish("c".into(), i.to_be_bytes().to_vec(), false) {
            refused = Some((i, e));
            break;
        }
    }
    let (first_refused, e) = refused.expect("publishes are refused once the buffer is full");
    let msg = e.to_string();
    assert_eq!(
        link.to_json()["buffered"].as_u64(),
        Some(first_refused as u64),
        "every accepted publish is reported as waiting"
    );
    assert!(msg.contains("50 operations already wait"), "{msg}");
    assert!(link.to_json()["publish_errors"].as_u64().unwrap() >= 1);

    redis.restart();
    assert!(
        next_connection(&mut events).await,
        "back up, subscriptions replayed"
    );
    assert_eq!(link.to_json()["reconnects"], 1);
    // What waited is delivered, in order, to the replayed subscription.
    for i in 0..first_refused {
        let (channel, _, payload) = next_message(&mut events).await;
        assert_eq!(channel, "c");
        assert_eq!(payload, i.to_be_bytes(), "buffered message {i}");
    }
    link.close().await;
}

#[tokio::test]
async fn urls_with_a_password_and_a_database_and_clear_refusals() {
    let redis = RedisServer::start_with(free_port(), &["--requirepass", "s3cret"]);
    let (sink, _events) = sink();
    let good = spec(format!("redis://:s3cret@127.0.0.1:{}/3", redis.port), 10);
    let link = RedisPubSub::connect(&good, sink.clone())
        .await
        .expect("a password and a database in the URL");
    assert_eq!(
        link.to_json()["url"],
        format!("redis://:***@127.0.0.1:{}/3", redis.port)
    );
    link.close().await;

    let wrong = spec(format!("redis://:nope@127.0.0.1:{}", redis.port), 10);
    let e = RedisPubSub::connect(&wrong, sink.clone())
        .await
        .err()
        .expect("a wrong password is refused");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("datasource `t`") && !msg.contains("nope"),
        "{msg}"
    );

    let nobody = spec(format!("redis://127.0.0.1:{}", free_port()), 10);
    let e = RedisPubSub::connect(&nobody, sink)
        .await
        .err()
        .expect("nothing listening is refused");
    assert!(format!("{e:#}").contains("datasource `t`"), "{e:#}");
}

/// The count of a Redis Cluster: two subscribers held on chosen nodes by `redis-cli`
/// and two wasio links; NUMSUB on one node would miss those on the others. Classic
/// publishes cross the cluster bus; a shard channel lives on its slot's node.
#[tokio::test]
async fn on_a_redis_cluster_counts_sum_every_primary_and_shards_route() {
    let cluster = common::redis_cluster::RedisCluster::start();
    let connect = async || {
        let (sink, events) = sink();
        let link = RedisPubSub::connect(&spec(cluster.url(), 100), sink)
            .await
            .expect("connects to the cluster");
        (events, link)
    };
    let (mut a_events, a) = connect().await;
    let (mut b_events, b) = connect().await;
    let mut held: Vec<Child> = cluster.ports[1..]
        .iter()
        .map(|p| cluster.subscriber_on(*p, "req#"))
        .collect();
    a.subscribe(Topic::Channel("req#".into())).unwrap();
    b.subscribe(Topic::Channel("req#".into())).unwrap();
    // Two links and two held subscribers, wherever each is connected.
    subscribed(&a, "req#", 4).await;

    b.publish("req#".into(), b"across".to_vec(), false).unwrap();
    assert_eq!(next_message(&mut a_events).await.2, b"across");

    a.subscribe(Topic::Shard("shard#{room}#".into())).unwrap();
    assert!(a.settled(Duration::from_secs(5)).await);
    b.publish("shard#{room}#".into(), b"sharded".to_vec(), true)
        .unwrap();
    let (channel, _, payload) = next_message(&mut a_events).await;
    assert_eq!(
        (channel.as_str(), payload.as_slice()),
        ("shard#{room}#", b"sharded".as_slice())
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    b.count(
        vec!["shard#{room}#".into()],
        true,
        Box::new(move |c| {
            let _ = tx.send(c);
        }),
    )
    .unwrap();
    assert_eq!(rx.await.unwrap().unwrap(), vec![1]);

    for c in &mut held {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = b_events.try_recv();
    b.close().await;
    a.close().await;
}
