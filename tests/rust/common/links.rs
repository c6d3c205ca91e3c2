//! What the datasource link tests share: a free port, a sink the test reads, and
//! bounded waits on what arrives.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use wasio::testing::{LinkEvent, Sink};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the link's events go, and where the test reads them.
pub fn sink() -> (Sink, UnboundedReceiver<LinkEvent>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Arc::new(move |e| tx.send(e).is_ok()), rx)
}

/// The next event that is not a `Connection` change, bounded.
pub async fn next_message(
    events: &mut UnboundedReceiver<LinkEvent>,
) -> (String, Option<String>, Vec<u8>) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("queue open");
        if let LinkEvent::Message {
            channel,
            pattern,
            payload,
            ..
        } = e
        {
            return (channel, pattern, payload);
        }
    }
}

/// The next `Connection` change: whether the link is up.
pub async fn next_connection(events: &mut UnboundedReceiver<LinkEvent>) -> bool {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("a connection event within 15 s")
            .expect("queue open");
        if let LinkEvent::Connection { up, .. } = e {
            return up;
        }
    }
}

/// Waits until a server process listens on `port`.
pub fn wait_listening(port: u16, what: &str) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} on {port} did not start");
}
