//! `wasio:adapter/pubsub`, on the node's Redis (or in-memory bus) link. The loader refuses a guest
//! importing it unless the config grants a pub/sub datasource.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{Event, HostState};
use crate::datasource::{PubSubLink, Topic};
use crate::runtime::bindings::wasio::adapter::pubsub::{Host, Mode};
use crate::runtime::bindings::wasio::adapter::types::Error;

impl HostState {
    fn link(&self) -> Result<Arc<PubSubLink>, Error> {
        self.links.pubsub.clone().ok_or_else(|| {
            Error::Denied("no pub/sub datasource is attached to this adapter".into())
        })
    }
}

impl HostState {
    /// (Un)subscribes `topic` and remembers it; a muted adapter leaves the link alone.
    fn follow(&mut self, topic: Topic, on: bool) -> Result<(), Error> {
        if self.muted() {
            return Ok(());
        }
        let link = self.link()?;
        if on {
            self.topics.insert(topic.clone());
            link.subscribe(topic)
        } else {
            self.topics.remove(&topic);
            link.unsubscribe(topic)
        }
        .map_err(Error::from)
    }
}

fn topic(channel: String, mode: Mode) -> Topic {
    match mode {
        Mode::Classic => Topic::Channel(channel),
        Mode::Sharded => Topic::Shard(channel),
    }
}

impl Host for HostState {
    fn publish(
        &mut self,
        channel: String,
        payload: Vec<u8>,
        mode: Mode,
    ) -> wasmtime::Result<Result<(), Error>> {
        if self.muted() {
            return Ok(Ok(()));
        }
        let sent = self.link().and_then(|l| {
            l.publish(channel, payload, mode == Mode::Sharded)
                .map_err(Error::from)
        });
        if sent.is_ok() {
            self.traffic.messages_out.fetch_add(1, Relaxed);
        }
        Ok(sent)
    }

    fn subscribe(&mut self, channel: String, mode: Mode) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.follow(topic(channel, mode), true))
    }

    fn psubscribe(&mut self, pattern: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.follow(Topic::Pattern(pattern), true))
    }

    fn unsubscribe(&mut self, channel: String, mode: Mode) -> wasmtime::Result<Result<(), Error>> {
        // A pattern given to psubscribe is stopped by its name, as a channel.
        let t = topic(channel, mode);
        if let Topic::Channel(name) = &t {
            self.topics.remove(&Topic::Pattern(name.clone()));
        }
        Ok(self.follow(t, false))
    }

    fn count_subscribers(
        &mut self,
        channels: Vec<String>,
        mode: Mode,
        ticket: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        let node = Arc::downgrade(&self.node);
        let generation = self.generation;
        Ok(self.link().and_then(|l| {
            l.count(
                channels,
                mode == Mode::Sharded,
                Box::new(move |counts| {
                    if let Some(node) = node.upgrade() {
                        node.push(Event::Counts {
                            generation,
                            ticket,
                            counts,
                        });
                    }
                }),
            )
            .map_err(Error::from)
        }))
    }
}
