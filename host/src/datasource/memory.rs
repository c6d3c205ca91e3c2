//! An in-process publish/subscribe bus with Redis's semantics (channels, glob patterns,
//! sharded channels, subscriber counts), for `wasio adapter check` and for nodes that
//! share one process. `memory://NAME` names the bus; every link to the same name in this
//! process reaches the same subscribers. Nothing leaves the process.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::redis::{CountsReply, Topic};
use super::{DatasourceSpec, LinkMetrics, glob};
use crate::capabilities::{Event, Shared};

/// One named bus: who listens to what.
#[derive(Default)]
struct Bus {
    subscribers: Mutex<HashMap<u64, Subscriber>>,
}

struct Subscriber {
    /// The link id its node's events carry.
    link: u64,
    shared: Weak<Shared>,
    topics: BTreeSet<Topic>,
}

/// Buses by name; a bus lives while a link to it does.
static BUSES: Mutex<Vec<(String, Weak<Bus>)>> = Mutex::new(Vec::new());
/// Keys of links on any bus (link ids are only unique per node).
static KEYS: AtomicU64 = AtomicU64::new(0);

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
    key: u64,
    bus: Arc<Bus>,
    metrics: LinkMetrics,
}

impl MemoryPubSub {
    /// Joins the bus named by `spec.url` (`memory://NAME`); events go into `shared`'s queue.
    pub fn connect(spec: &DatasourceSpec, shared: Weak<Shared>) -> MemoryPubSub {
        let id = shared.upgrade().map_or(0, |s| s.next_link_id());
        let key = KEYS.fetch_add(1, Ordering::Relaxed);
        let bus = bus(spec.url.trim_start_matches("memory://"));
        bus.subscribers.lock().unwrap().insert(
            key,
            Subscriber {
                link: id,
                shared,
                topics: BTreeSet::new(),
            },
        );
        let metrics = LinkMetrics::default();
        metrics.connected.store(true, Ordering::Relaxed);
        MemoryPubSub {
            spec: spec.clone(),
            id,
            key,
            bus,
            metrics,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn spec(&self) -> &DatasourceSpec {
        &self.spec
    }

    /// Delivers `payload` now to every matching subscription (one message per matching
    /// channel or pattern, as Redis does), in publish order.
    pub fn publish(&self, channel: String, payload: Vec<u8>, sharded: bool) -> Result<(), String> {
        if !self.connected() {
            return Err("the in-memory bus link is cut".into());
        }
        let subscribers = self.bus.subscribers.lock().unwrap();
        for sub in subscribers.values() {
            let Some(shared) = sub.shared.upgrade() else {
                continue;
            };
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
                shared.push(Event::Message {
                    link: sub.link,
                    channel: channel.clone(),
                    pattern,
                    payload: payload.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn subscribe(&self, topic: Topic) -> Result<(), String> {
        self.with_topics(|t| {
            t.insert(topic);
        })
    }

    pub fn unsubscribe(&self, topic: Topic) -> Result<(), String> {
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
    ) -> Result<(), String> {
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
        self.bus.subscribers.lock().unwrap().remove(&self.key);
        self.metrics.connected.store(false, Ordering::Relaxed);
    }

    fn connected(&self) -> bool {
        self.metrics.connected.load(Ordering::Relaxed)
    }

    fn with_topics(&self, f: impl FnOnce(&mut BTreeSet<Topic>)) -> Result<(), String> {
        match self.bus.subscribers.lock().unwrap().get_mut(&self.key) {
            Some(sub) => {
                f(&mut sub.topics);
                Ok(())
            }
            None => Err("the in-memory bus link is cut".into()),
        }
    }

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
