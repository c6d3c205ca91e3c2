//! An in-process publish/subscribe bus with Redis's semantics (channels, glob patterns,
//! sharded channels, subscriber counts), for `wasio adapter check` and for nodes that
//! share one process. `memory://NAME` names the bus; every link to the same name in this
//! process reaches the same subscribers. Nothing leaves the process.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use super::{CountsReply, LinkError, LinkEvent, LinkMetrics, Sink, Topic, glob};
use crate::config::DatasourceSpec;

/// One named bus: who listens to what.
#[derive(Default)]
struct Bus {
    subscribers: Mutex<HashMap<u64, Subscriber>>,
}

struct Subscriber {
    /// The link id its node's events carry.
    link: u64,
    sink: Sink,
    topics: BTreeSet<Topic>,
}

/// Buses by name; a bus lives while a link to it does.
static BUSES: Mutex<Vec<(String, Weak<Bus>)>> = Mutex::new(Vec::new());

fn bus(name: &str) -> Arc<Bus> {
    let mut buses = BUSES.lock().unwrap();
    buses.retain(|(_, b)| b.strong_count() > 0);
    if let Some(bus) = buses
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, b)| b.upgrade())
    {
        return bus;
    }
    let bus = Arc::new(Bus::default());
    buses.push((name.to_string(), Arc::downgrade(&bus)));
    bus
}

/// One node's link to a bus.
pub struct MemoryPubSub {
    spec: DatasourceSpec,
    id: u64,
    bus: Arc<Bus>,
    metrics: LinkMetrics,
}

impl MemoryPubSub {
    /// Joins the bus named by `spec.url` (`memory://NAME`); events go into `sink`.
    pub fn connect(spec: &DatasourceSpec, sink: Sink) -> MemoryPubSub {
        let id = super::next_link_id();
        let bus = bus(spec.url.trim_start_matches("memory://"));
        bus.subscribers.lock().unwrap().insert(
            id,
            Subscriber {
                link: id,
                sink,
                topics: BTreeSet::new(),
            },
        );
        let metrics = LinkMetrics::default();
        metrics.connected.store(true, Ordering::Relaxed);
        MemoryPubSub {
            spec: spec.clone(),
            id,
            bus,
            metrics,
        }
    }

    /// The id this link's events carry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The datasource this link was made for.
    pub fn spec(&self) -> &DatasourceSpec {
        &self.spec
    }

    /// Delivers `payload` now to every matching subscription (one message per matching
    /// channel or pattern, as Redis does), in publish order.
    pub fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
        sharded: bool,
    ) -> Result<(), LinkError> {
        if !self.connected() {
            return Err(cut());
        }
        let subscribers = self.bus.subscribers.lock().unwrap();
        for sub in subscribers.values() {
            for topic in &sub.topics {
                let pattern = match topic {
                    Topic::Channel(c) if !sharded && *c == channel => None,
                    Topic::Shard(c) if sharded && *c == channel => None,
                    Topic::Pattern(p)
                        if !sharded && glob::matches(p.as_bytes(), channel.as_bytes()) =>
                    {
                        Some(p.clone())
                    }
                    _ => continue,
                };
                (sub.sink)(LinkEvent::Message {
                    link: sub.link,
                    channel: channel.clone(),
                    pattern,
                    payload: payload.clone(),
                });
            }
        }
        Ok(())
    }

    /// Starts receiving `topic`.
    pub fn subscribe(&self, topic: Topic) -> Result<(), LinkError> {
        self.with_topics(|t| {
            t.insert(topic);
        })
    }

    /// Stops receiving `topic`.
    pub fn unsubscribe(&self, topic: Topic) -> Result<(), LinkError> {
        self.with_topics(|t| {
            // A pattern is stopped by its name, given as a channel.
            if let Topic::Channel(name) = &topic {
                t.remove(&Topic::Pattern(name.clone()));
            }
            t.remove(&topic);
        })
    }

    /// Subscribers per channel (patterns not counted, as PUBSUB NUMSUB), answered at once.
    pub fn count(
        &self,
        channels: Vec<String>,
        sharded: bool,
        reply: CountsReply,
    ) -> Result<(), LinkError> {
        let subscribers = self.bus.subscribers.lock().unwrap();
        let counts = channels
            .iter()
            .map(|c| {
                let topic = if sharded {
                    Topic::Shard(c.clone())
                } else {
                    Topic::Channel(c.clone())
                };
                subscribers
                    .values()
                    .filter(|s| s.topics.contains(&topic))
                    .count() as u64
            })
            .collect();
        drop(subscribers);
        reply(Ok(counts));
        Ok(())
    }

    /// Every subscription on the bus, each node's included (for the conformance kit's
    /// malformed-message row).
    pub fn bus_topics(&self) -> BTreeSet<Topic> {
        let subscribers = self.bus.subscribers.lock().unwrap();
        subscribers
            .values()
            .flat_map(|s| s.topics.iter().cloned())
            .collect()
    }

    /// Takes this link off the bus at once, as a node that crashed: its subscriptions
    /// vanish and its publishes fail.
    pub fn cut(&self) {
        self.bus.subscribers.lock().unwrap().remove(&self.id);
        self.metrics.connected.store(false, Ordering::Relaxed);
    }

    fn connected(&self) -> bool {
        self.metrics.connected.load(Ordering::Relaxed)
    }

    fn with_topics(&self, f: impl FnOnce(&mut BTreeSet<Topic>)) -> Result<(), LinkError> {
        match self.bus.subscribers.lock().unwrap().get_mut(&self.id) {
            Some(sub) => {
                f(&mut sub.topics);
                Ok(())
            }
            None => Err(cut()),
        }
    }

    /// State and counters for `/healthz`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.metrics.to_json(0);
        v["name"] = self.spec.name.clone().into();
        v["connector"] = "memory".into();
        v["url"] = self.spec.url.clone().into();
        v
    }
}

impl Drop for MemoryPubSub {
    fn drop(&mut self) {
        self.cut();
    }
}

fn cut() -> LinkError {
    LinkError::Closed("the in-memory bus link is cut".into())
}
