//! The links one adapter uses, and the one `PubSubLink` over the pub/sub backends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::memory::MemoryPubSub;
use super::mongo::MongoDocStore;
use super::nats::NatsPubSub;
use super::postgres::PostgresLink;
use super::redis::RedisPubSub;
use super::{CountsReply, LinkError, Sink, Topic};
use crate::config::{Connector, DatasourceSpec};

/// The datasource links one adapter uses (what its `pubsub` / `docstore` / `notify` act on).
#[derive(Clone, Default)]
pub(crate) struct Links {
    pub pubsub: Option<Arc<PubSubLink>>,
    pub docstore: Option<Arc<MongoDocStore>>,
    pub notify: Option<Arc<PostgresLink>>,
}

impl Links {
    /// The links an adapter on `spec` uses: `current`'s when it is the same datasource
    /// (a swap keeps the connection and its subscriptions), else a new connection whose
    /// events go to `sink`.
    pub(crate) async fn connect(
        spec: Option<&DatasourceSpec>,
        current: &Links,
        sink: Sink,
    ) -> anyhow::Result<Links> {
        let Some(spec) = spec else {
            return Ok(Links::default());
        };
        let same = |s: &DatasourceSpec| s.name == spec.name && s.url == spec.url;
        let pubsub = |link: PubSubLink| Links {
            pubsub: Some(Arc::new(link)),
            ..Links::default()
        };
        Ok(match spec.connector {
            Connector::Redis | Connector::Nats | Connector::Memory => match &current.pubsub {
                Some(l) if same(l.spec()) => Links {
                    pubsub: Some(l.clone()),
                    ..Links::default()
                },
                _ if spec.connector == Connector::Redis => {
                    pubsub(PubSubLink::Redis(RedisPubSub::connect(spec, sink).await?))
                }
                _ if spec.connector == Connector::Nats => {
                    pubsub(PubSubLink::Nats(NatsPubSub::connect(spec, sink).await?))
                }
                _ => pubsub(PubSubLink::Memory(MemoryPubSub::connect(spec, sink))),
            },
            Connector::Mongodb => Links {
                docstore: Some(match &current.docstore {
                    Some(l) if same(l.spec()) => l.clone(),
                    _ => Arc::new(MongoDocStore::connect(spec, sink).await?),
                }),
                ..Links::default()
            },
            Connector::Postgres => Links {
                notify: Some(match &current.notify {
                    Some(l) if same(l.spec()) => l.clone(),
                    _ => Arc::new(PostgresLink::connect(spec, sink).await?),
                }),
                ..Links::default()
            },
        })
    }

    /// Whether an event of link `id` is for this adapter.
    pub(crate) fn has(&self, id: u64) -> bool {
        self.ids().contains(&id)
    }

    /// These links, less those `other` also uses (what closing would not disturb).
    pub(crate) fn not_in(&self, other: &Links) -> Links {
        Links {
            pubsub: self.pubsub.clone().filter(|l| !other.has(l.id())),
            docstore: self.docstore.clone().filter(|l| !other.has(l.id())),
            notify: self.notify.clone().filter(|l| !other.has(l.id())),
        }
    }

    /// Ids of the links.
    pub(crate) fn ids(&self) -> Vec<u64> {
        let p = self.pubsub.as_ref().map(|l| l.id());
        let d = self.docstore.as_ref().map(|l| l.id());
        let n = self.notify.as_ref().map(|l| l.id());
        p.into_iter().chain(d).chain(n).collect()
    }

    /// The datasource's name, if there is one.
    pub(crate) fn name(&self) -> Option<String> {
        let p = self.pubsub.as_ref().map(|l| l.spec().name.clone());
        p.or_else(|| self.docstore.as_ref().map(|l| l.spec().name.clone()))
            .or_else(|| self.notify.as_ref().map(|l| l.spec().name.clone()))
    }

    /// The link's state and counters, for `/healthz`.
    pub(crate) fn status(&self) -> Option<serde_json::Value> {
        let p = self.pubsub.as_ref().map(|l| l.to_json());
        p.or_else(|| self.docstore.as_ref().map(|l| l.to_json()))
            .or_else(|| self.notify.as_ref().map(|l| l.to_json()))
    }

    /// At the node's end: sends what is queued (waiting `wait` at most per link), then
    /// drops the connections, whoever else still holds the links, so that other nodes
    /// stop counting this one at once.
    pub(crate) async fn finish(&self, wait: Duration) {
        if let Some(link) = &self.pubsub {
            if !link.settled(wait).await {
                tracing::warn!("datasource: queued publishes not all sent before closing");
            }
            link.sever().await;
        }
        if let Some(link) = &self.docstore {
            if !link.settled(wait).await {
                tracing::warn!("datasource: queued inserts not all sent before closing");
            }
            link.sever();
        }
        if let Some(link) = &self.notify {
            if !link.settled(wait).await {
                tracing::warn!("datasource: queued notifications not all sent before closing");
            }
            link.sever();
        }
    }

    /// Closes each link nobody else holds (what is queued is sent first).
    pub(crate) async fn close(self) {
        if let Some(link) = self.pubsub {
            match Arc::try_unwrap(link) {
                Ok(link) => link.close().await,
                Err(_) => tracing::debug!("datasource still in use; closed when dropped"),
            }
        }
        if let Some(link) = self.docstore {
            match Arc::try_unwrap(link) {
                Ok(link) => link.close().await,
                Err(_) => tracing::debug!("datasource still in use; closed when dropped"),
            }
        }
        if let Some(link) = self.notify {
            match Arc::try_unwrap(link) {
                Ok(link) => link.close().await,
                Err(_) => tracing::debug!("datasource still in use; closed when dropped"),
            }
        }
    }
}

/// A publish/subscribe link: Redis, NATS, or the in-process bus (`memory://`).
pub(crate) enum PubSubLink {
    Redis(RedisPubSub),
    Nats(NatsPubSub),
    Memory(MemoryPubSub),
}

impl PubSubLink {
    /// The id this link's events carry.
    pub(crate) fn id(&self) -> u64 {
        match self {
            PubSubLink::Redis(l) => l.id(),
            PubSubLink::Nats(l) => l.id(),
            PubSubLink::Memory(l) => l.id(),
        }
    }

    /// The datasource this link was made for.
    pub(crate) fn spec(&self) -> &DatasourceSpec {
        match self {
            PubSubLink::Redis(l) => l.spec(),
            PubSubLink::Nats(l) => l.spec(),
            PubSubLink::Memory(l) => l.spec(),
        }
    }

    /// Publishes `payload` on `channel` (queued for Redis); fails when it cannot be.
    pub(crate) fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
        sharded: bool,
    ) -> Result<(), LinkError> {
        match self {
            PubSubLink::Redis(l) => l.publish(channel, payload, sharded),
            PubSubLink::Nats(l) => l.publish(channel, payload, sharded),
            PubSubLink::Memory(l) => l.publish(channel, payload, sharded),
        }
    }

    /// Starts receiving `topic`.
    pub(crate) fn subscribe(&self, topic: Topic) -> Result<(), LinkError> {
        match self {
            PubSubLink::Redis(l) => l.subscribe(topic),
            PubSubLink::Nats(l) => l.subscribe(topic),
            PubSubLink::Memory(l) => l.subscribe(topic),
        }
    }

    /// Stops receiving `topic`.
    pub(crate) fn unsubscribe(&self, topic: Topic) -> Result<(), LinkError> {
        match self {
            PubSubLink::Redis(l) => l.unsubscribe(topic),
            PubSubLink::Nats(l) => l.unsubscribe(topic),
            PubSubLink::Memory(l) => l.unsubscribe(topic),
        }
    }

    /// Asks how many subscribers each channel has; `reply` gets the answer.
    pub(crate) fn count(
        &self,
        channels: Vec<String>,
        sharded: bool,
        reply: CountsReply,
    ) -> Result<(), LinkError> {
        match self {
            PubSubLink::Redis(l) => l.count(channels, sharded, reply),
            PubSubLink::Nats(l) => l.count(channels, sharded, reply),
            PubSubLink::Memory(l) => l.count(channels, sharded, reply),
        }
    }

    /// Subscriptions to inject into: every node's on the in-memory bus, this link's own
    /// on Redis and NATS.
    pub(crate) fn topics(&self) -> BTreeSet<Topic> {
        match self {
            PubSubLink::Redis(l) => l.topics(),
            PubSubLink::Nats(l) => l.topics(),
            PubSubLink::Memory(l) => l.bus_topics(),
        }
    }

    /// Waits until what was queued before is done, `wait` at most; false when it was not.
    pub(crate) async fn settled(&self, wait: Duration) -> bool {
        match self {
            PubSubLink::Redis(l) => l.settled(wait).await,
            PubSubLink::Nats(l) => l.settled(wait).await,
            PubSubLink::Memory(_) => true,
        }
    }

    /// State and counters for `/healthz`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            PubSubLink::Redis(l) => l.to_json(),
            PubSubLink::Nats(l) => l.to_json(),
            PubSubLink::Memory(l) => l.to_json(),
        }
    }

    /// Cuts the link at once, as a node that crashed would: its subscriptions vanish
    /// from the backend and nothing more is sent (for the conformance kit).
    pub(crate) async fn sever(&self) {
        match self {
            PubSubLink::Redis(l) => l.sever().await,
            PubSubLink::Nats(l) => l.sever().await,
            PubSubLink::Memory(l) => l.cut(),
        }
    }

    /// Closes the link once what is queued has been sent.
    pub(crate) async fn close(self) {
        match self {
            PubSubLink::Redis(l) => l.close().await,
            PubSubLink::Nats(l) => l.close().await,
            PubSubLink::Memory(l) => l.cut(),
        }
    }
}
