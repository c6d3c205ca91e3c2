//! The MongoDB link behind `wasio:adapter/docstore` (on the official `mongodb` driver):
//! one client (its own connection pool) per datasource, whatever the number of
//! namespaces.
//!
//! - Inserts go through one bounded queue, written in order by one writer as ordered
//!   `insertMany` batches. Each document gets its `_id` here, before it is queued, so a
//!   batch retried after an ambiguous failure skips what already landed (duplicate key)
//!   instead of inserting it twice. While MongoDB is away the queue holds them (up to
//!   `publish_buffer`, then the guest's `insert` fails with `unavailable`).
//! - A watched collection is read by one task: a change stream (resumed from its last
//!   resume token after an error) or a tailable await-data cursor on a capped collection
//!   (reopened after the last document seen). Documents reach the guest through the
//!   node's event queue in collection order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ClientOptions, CursorType, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{LinkError, LinkEvent, LinkMetrics, Sink};
use crate::config::DatasourceSpec;

/// Documents written by one `insertMany`.
const BATCH: usize = 256;
/// How long the first connection may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a reachable server before it fails (and is retried
/// by us): short, so that an outage is noticed and reported quickly.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before a broken feed is reopened (as the Node.js adapter does).
const REOPEN_DELAY: Duration = Duration::from_secs(1);
/// The database when the URL names none.
const DEFAULT_DATABASE: &str = "wasio";
/// MongoDB's error codes we act on.
const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_EXISTS: i32 = 48;

/// How a watched collection is read (the contract's `feed`).
#[derive(Clone, Debug, PartialEq)]
pub enum Feed {
    /// A change stream of inserts matching this `$match` filter (needs a replica set).
    ChangeStream(Document),
    /// A capped collection, tailed.
    Tail,
}

/// How a watched collection is set up (the contract's `setup`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setup {
    /// Created capped, of this many bytes, when missing.
    Capped(u64),
    /// A TTL index on `createdAt`, in seconds.
    Ttl(u32),
}

struct Insert {
    collection: String,
    document: RawDocumentBuf,
}

/// One MongoDB datasource, shared by every namespace of the node.
pub struct MongoDocStore {
    spec: DatasourceSpec,
    /// Tags this link's events, so they reach the adapters that use it.
    id: u64,
    db: Database,
    inserts: mpsc::Sender<Insert>,
    /// Documents accepted and not yet inserted (queued, or in the writer's batch): the
    /// bound is checked on it, so it is exact whatever the writer has taken.
    waiting: Arc<AtomicUsize>,
    metrics: Arc<LinkMetrics>,
    writer: tokio::task::JoinHandle<()>,
    feeds: Mutex<JoinSet<()>>,
    watched: Mutex<HashMap<String, (Feed, Setup)>>,
    /// Watched collections, and whether they are set up and read (inserts wait for it).
    open: watch::Sender<HashMap<String, bool>>,
    sink: Sink,
}

impl MongoDocStore {
    /// Connects (failing after a few seconds, naming the datasource) and starts the writer.
    pub async fn connect(spec: &DatasourceSpec, sink: Sink) -> anyhow::Result<Self> {
        let label = spec.label();
        let mut opts = ClientOptions::parse(&spec.url)
            .await
            .with_context(|| format!("{label}: bad URL"))?;
        opts.app_name.get_or_insert_with(|| "wasio".to_string());
        opts.server_selection_timeout
            .get_or_insert(SELECTION_TIMEOUT);
        opts.connect_timeout.get_or_insert(SELECTION_TIMEOUT);
        let database = opts
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let client = Client::with_options(opts).with_context(|| label.clone())?;
        let db = client.database(&database);
        tokio::time::timeout(CONNECT_TIMEOUT, db.run_command(doc! {"ping": 1}))
            .await
            .map_err(|_| anyhow::anyhow!("{label}: no connection after {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("{label}: cannot connect"))?;

        let id = super::next_link_id();
        let metrics = Arc::new(LinkMetrics::default());
        metrics.connected.store(true, Relaxed);
        let (inserts, rx) = mpsc::channel(spec.publish_buffer.max(1));
        let (open, open_rx) = watch::channel(HashMap::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn(write(
            db.clone(),
            rx,
            open_rx,
            Counters {
                link: metrics.clone(),
                waiting: waiting.clone(),
            },
            label,
        ));
        Ok(MongoDocStore {
            spec: spec.clone(),
            id,
            db,
            inserts,
            waiting,
            metrics,
            writer,
            feeds: Mutex::new(JoinSet::new()),
            watched: Mutex::new(HashMap::new()),
            open,
            sink,
        })
    }

    /// The id this link's events carry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The datasource this link was made for.
    pub fn spec(&self) -> &DatasourceSpec {
        &self.spec
    }

    /// Makes `collection` ready (capped, or a TTL index on `createdAt`) and starts
    /// feeding its new documents to the guest. Watching it again with the same feed
    /// is a no-op (a new guest instance keeps the running feed).
    pub fn watch(&self, collection: String, feed: Feed, setup: Setup) -> Result<(), LinkError> {
        if feed == Feed::Tail && matches!(setup, Setup::Ttl(_)) {
            return Err(LinkError::Invalid(format!(
                "collection {collection}: a tailed collection must be capped, and a capped collection cannot have a TTL index"
            )));
        }
        let mut watched = self.watched.lock().unwrap();
        let key = (feed.clone(), setup);
        if let Some(running) = watched.get(&collection) {
            return if *running == key {
                Ok(())
            } else {
                Err(LinkError::Invalid(format!(
                    "collection {collection} is already watched with another feed ({running:?})"
                )))
            };
        }
        watched.insert(collection.clone(), key);
        self.open.send_modify(|m| {
            m.insert(collection.clone(), false);
        });
        let reader = Reader {
            link: self.id,
            open: self.open.clone(),
            coll: self.db.collection::<RawDocumentBuf>(&collection),
            db: self.db.clone(),
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
            label: format!("{} collection {collection}", self.spec.label()),
        };
        self.feeds
            .lock()
            .unwrap()
            .spawn(reader.run(collection, feed, setup));
        Ok(())
    }

    /// Queues `document` for `collection`; fails when it is not BSON or the buffer is full.
    pub fn insert(&self, collection: String, document: &[u8]) -> Result<(), LinkError> {
        let document = with_id(document).map_err(LinkError::Invalid)?;
        let refuse = |error: LinkError| {
            self.waiting.fetch_sub(1, Relaxed);
            LinkMetrics::bump(&self.metrics.publish_errors);
            error
        };
        if self.waiting.fetch_add(1, Relaxed) >= self.spec.publish_buffer.max(1) {
            return Err(refuse(LinkError::Full(format!(
                "MongoDB at {} is not keeping up or unreachable: {} documents already wait to be inserted",
                self.spec.redacted_url(),
                self.spec.publish_buffer
            ))));
        }
        // The queue holds as many as the bound: only a closed link refuses here.
        self.inserts
            .try_send(Insert {
                collection,
                document,
            })
            .map_err(|_| refuse(LinkError::Closed("the MongoDB link is closed".to_string())))
    }

    /// The collections watched now.
    pub fn collections(&self) -> Vec<String> {
        self.watched.lock().unwrap().keys().cloned().collect()
    }

    /// Stops the feeds and the writer at once, queue and all, as a node that crashed
    /// (for the conformance kit).
    pub fn sever(&self) {
        self.feeds.lock().unwrap().abort_all();
        self.writer.abort();
    }

    /// Inserts queued or being sent.
    fn buffered(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// Whether what was queued before the call got inserted within `wait`.
    pub async fn settled(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while self.buffered() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// State and counters for `/healthz`.
    pub fn to_json(&self) -> serde_json::Value {
        let buffered = self.buffered();
        let mut v = self.metrics.to_json(buffered);
        v["name"] = self.spec.name.clone().into();
        v["connector"] = "mongodb".into();
        v["url"] = self.spec.redacted_url().into();
        v
    }

    /// Stops the feeds and closes the client once what is queued is inserted (2 s at most).
    pub async fn close(self) {
        let MongoDocStore {
            inserts,
            writer,
            feeds,
            ..
        } = self;
        feeds.lock().unwrap().abort_all();
        // The writer drains the queue and ends once the last sender is gone.
        drop(inserts);
        let abort = writer.abort_handle();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        abort.abort();
    }
}

/// The guest's document with an `_id` of ours first (kept if it has one).
fn with_id(bytes: &[u8]) -> Result<RawDocumentBuf, String> {
    let raw = RawDocumentBuf::from_bytes(bytes.to_vec()).map_err(|e| format!("not BSON: {e}"))?;
    if raw
        .get("_id")
        .map_err(|e| format!("not BSON: {e}"))?
        .is_some()
    {
        return Ok(raw);
    }
    let mut out = RawDocumentBuf::new();
    out.append("_id", ObjectId::new());
    for elem in raw.iter() {
        let (key, value) = elem.map_err(|e| format!("not BSON: {e}"))?;
        out.append(key, value.to_raw_bson());
    }
    Ok(out)
}

/// What the writer counts.
struct Counters {
    link: Arc<LinkMetrics>,
    /// See [`MongoDocStore::waiting`]; lowered as documents land or are dropped.
    waiting: Arc<AtomicUsize>,
}

/// The writer: inserts queued documents in order, in batches, until they landed.
async fn write(
    db: Database,
    mut rx: mpsc::Receiver<Insert>,
    mut open: watch::Receiver<HashMap<String, bool>>,
    counters: Counters,
    label: String,
) {
    let Counters {
        link: metrics,
        waiting,
    } = counters;
    let mut batch: VecDeque<RawDocumentBuf> = VecDeque::new();
    let mut next: Option<Insert> = None;
    loop {
        let first = match next.take() {
            Some(i) => i,
            None => match rx.recv().await {
                Some(i) => i,
                None => return,
            },
        };
        let collection = first.collection;
        batch.push_back(first.document);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(i) if i.collection == collection => batch.push_back(i.document),
                Ok(i) => {
                    next = Some(i);
                    break;
                }
                Err(_) => break,
            }
        }
        let coll = db.collection::<RawDocumentBuf>(&collection);
        let mut delay = Duration::from_millis(50);
        while !batch.is_empty() {
            // A watched collection is set up (capped, indexed) and read before anything is
            // inserted in it, retries included: after an outage the server may come back
            // without it, and an insert would create it plain; what this node inserts
            // while its own feed is closed may be missed by that feed. (It also keeps a
            // concurrent create and insert away from servers that deadlock on them.)
            let _ = open
                .wait_for(|m| m.get(&collection).copied().unwrap_or(true))
                .await;
            let before = batch.len();
            match coll.insert_many(batch.iter()).ordered(true).await {
                Ok(_) => {
                    waiting.fetch_sub(before, Relaxed);
                    batch.clear();
                }
                Err(e) => {
                    let landed = settle(&e, &mut batch, &metrics, &label);
                    waiting.fetch_sub(before - batch.len(), Relaxed);
                    if !landed {
                        LinkMetrics::bump(&metrics.publish_retries);
                        tracing::debug!("{label}: insert failed, retrying: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }
}

/// After a failed ordered `insertMany`: drops from `batch` what landed and what MongoDB
/// refused for good (counted and logged); returns whether the rest can be sent at once.
fn settle(
    e: &MongoError,
    batch: &mut VecDeque<RawDocumentBuf>,
    metrics: &LinkMetrics,
    label: &str,
) -> bool {
    let ErrorKind::InsertMany(failure) = e.kind.as_ref() else {
        return false; // network, selection timeout: nothing is known to have landed
    };
    let Some(first) = failure.write_errors.as_ref().and_then(|w| w.first()) else {
        return false; // a write concern error: retried whole (duplicates are skipped)
    };
    // An ordered insert stopped at `index`: what came before landed.
    batch.drain(..first.index.min(batch.len()));
    if first.code != DUPLICATE_KEY {
        LinkMetrics::bump(&metrics.publish_errors);
        tracing::error!(
            "{label}: MongoDB refused a document ({}): {}",
            first.code,
            first.message
        );
    }
    // A duplicate key is a document that landed before a retry.
    batch.pop_front();
    true
}

/// Reads one watched collection and pushes its new documents into the guest.
struct Reader {
    link: u64,
    open: watch::Sender<HashMap<String, bool>>,
    db: Database,
    coll: Collection<RawDocumentBuf>,
    sink: Sink,
    metrics: Arc<LinkMetrics>,
    label: String,
}

impl Reader {
    async fn run(self, collection: String, feed: Feed, setup: Setup) {
        // Set-up errors (MongoDB away) are retried with the feed.
        let mut ready = false;
        let mut cursor = Resume::default();
        loop {
            if !ready {
                match self.prepare(&collection, setup).await {
                    Ok(()) => ready = true,
                    Err(e) => {
                        self.down(&format!("cannot prepare the collection: {e}"));
                        tokio::time::sleep(REOPEN_DELAY).await;
                        continue;
                    }
                }
            }
            let res = match &feed {
                Feed::ChangeStream(filter) => self.stream(&collection, filter, &mut cursor).await,
                Feed::Tail => self.tail(&collection, &mut cursor).await,
            };
            if let Err(e) = res {
                self.down(&e.to_string());
                // The server may have come back without the collection (or with one an
                // insert created plain): set it up again before anything is inserted.
                ready = false;
                self.open.send_modify(|m| {
                    m.insert(collection.clone(), false);
                });
                if matches!(feed, Feed::ChangeStream(_)) && !resumable(&e) {
                    // The token is gone from the oplog: start again from now.
                    tracing::warn!(
                        "{}: change stream cannot resume ({e}); restarting from now, documents in between are lost",
                        self.label
                    );
                    cursor.token = None;
                }
            }
            tokio::time::sleep(REOPEN_DELAY).await;
        }
    }

    /// Creates the collection (capped) or its TTL index, as the guest says.
    async fn prepare(&self, collection: &str, setup: Setup) -> Result<(), MongoError> {
        match setup {
            Setup::Ttl(seconds) => {
                let index = IndexModel::builder()
                    .keys(doc! {"createdAt": 1})
                    .options(
                        IndexOptions::builder()
                            .expire_after(Duration::from_secs(seconds.into()))
                            .build(),
                    )
                    .build();
                self.coll.create_index(index).await?;
                Ok(())
            }
            Setup::Capped(size) => match self
                .db
                .create_collection(collection)
                .capped(true)
                .size(size)
                .await
            {
                Err(e) if code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
                other => other,
            },
        }
    }

    /// Follows the change stream until it fails.
    async fn stream(
        &self,
        collection: &str,
        filter: &Document,
        at: &mut Resume,
    ) -> Result<(), MongoError> {
        let mut and = vec![Bson::Document(doc! {"operationType": "insert"})];
        if !filter.is_empty() {
            and.push(Bson::Document(filter.clone()));
        }
        let opened = self
            .coll
            .watch()
            .pipeline([doc! {"$match": {"$and": and}}])
            .resume_after(at.token.clone())
            .await;
        let mut stream = match opened {
            Ok(s) => s.with_type::<RawDocumentBuf>(),
            Err(e) => {
                // The server answered but would not resume (its history no longer holds
                // the token, or it lost the collection): start again from now.
                if at.token.is_some() && code(&e).is_some() {
                    tracing::warn!(
                        "{}: change stream cannot resume ({e}); restarting from now, documents in between are lost",
                        self.label
                    );
                    at.token = None;
                }
                return Err(e);
            }
        };
        self.up(collection);
        while let Some(event) = stream.next().await {
            let event = event?;
            at.token = stream.resume_token();
            match event.get_document("fullDocument") {
                Ok(doc) => self.push(collection, doc.as_bytes().to_vec()),
                Err(_) => LinkMetrics::bump(&self.metrics.malformed),
            }
        }
        Err(MongoError::custom("the change stream ended"))
    }

    /// Tails the capped collection until the cursor dies or fails.
    async fn tail(&self, collection: &str, at: &mut Resume) -> Result<(), MongoError> {
        let filter = match (at.last_time, at.started) {
            // ObjectIds of different nodes are not ordered within a second (or across
            // clock skew): reopen a little earlier and skip what was already seen.
            (Some(t), _) => {
                doc! {"_id": {"$gte": ObjectId::from_parts(t.saturating_sub(RESUME_SLACK_S), [0; 5], [0; 3])}}
            }
            // Empty when first opened: everything in it is new.
            (None, true) => doc! {},
            (None, false) => {
                // First open: start after the newest document, not from history.
                let newest = self.coll.find_one(doc! {}).sort(doc! {"_id": -1}).await?;
                match newest.as_ref().and_then(|d| d.get_object_id("_id").ok()) {
                    Some(id) => {
                        at.seen(id);
                        doc! {"_id": {"$gt": id}}
                    }
                    None => doc! {},
                }
            }
        };
        at.started = true;
        let mut cursor = self
            .coll
            .find(filter)
            .cursor_type(CursorType::TailableAwait)
            .max_await_time(Duration::from_secs(1))
            .await?;
        self.up(collection);
        while cursor.advance().await? {
            let doc = cursor.current();
            match doc.get_object_id("_id") {
                Ok(id) => {
                    if at.seen(id) {
                        self.push(collection, doc.as_bytes().to_vec());
                    }
                }
                Err(_) => LinkMetrics::bump(&self.metrics.malformed),
            }
        }
        // A tailable cursor on an empty collection dies at once: reopened after a pause.
        Ok(())
    }

    fn push(&self, collection: &str, document: Vec<u8>) {
        (self.sink)(LinkEvent::Document {
            link: self.link,
            collection: collection.to_string(),
            document,
        });
    }

    fn up(&self, collection: &str) {
        self.open.send_modify(|m| {
            m.insert(collection.to_string(), true);
        });
        if !self.metrics.connected.swap(true, Relaxed) {
            self.metrics.reconnects.fetch_add(1, Relaxed);
            tracing::info!("{}: feed reopened", self.label);
            (self.sink)(LinkEvent::Connection {
                link: self.link,
                up: true,
            });
        }
    }

    fn down(&self, why: &str) {
        if self.metrics.connected.swap(false, Relaxed) {
            tracing::warn!("{}: feed lost: {why}; reopening", self.label);
            (self.sink)(LinkEvent::Connection {
                link: self.link,
                up: false,
            });
        } else {
            tracing::debug!("{}: {why}", self.label);
        }
    }
}

/// Seconds a reopened tailable cursor reaches back.
const RESUME_SLACK_S: u32 = 5;
/// Ids remembered to skip documents a reopened cursor sees twice.
const SEEN_IDS: usize = 4096;

/// Where a feed resumes: a change stream's token, or a tailed collection's last ids.
#[derive(Default)]
struct Resume {
    token: Option<mongodb::change_stream::event::ResumeToken>,
    /// Whether the capped collection was opened once (history is skipped only then).
    started: bool,
    last_time: Option<u32>,
    ids: HashSet<ObjectId>,
    order: VecDeque<ObjectId>,
}

impl Resume {
    /// Records `id`; false when it was seen already.
    fn seen(&mut self, id: ObjectId) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        let t = id.timestamp().timestamp_millis() / 1000;
        self.last_time = Some(self.last_time.unwrap_or(0).max(t as u32));
        self.order.push_back(id);
        if self.order.len() > SEEN_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

fn code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Whether a change stream may resume after `e` (anything but a server's refusal
/// without the resumable label, such as a token gone from the oplog).
fn resumable(e: &MongoError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Command(_) => e.contains_label("ResumableChangeStreamError"),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_put_first_and_kept_when_given() {
        let bytes = mongodb::bson::to_vec(&doc! {"type": 3, "uid": "a"}).unwrap();
        let d = with_id(&bytes).unwrap();
        let keys: Vec<&str> = d.iter().map(|e| e.unwrap().0).collect();
        assert_eq!(keys, ["_id", "type", "uid"]);
        let again = with_id(d.as_bytes()).unwrap();
        assert_eq!(again.as_bytes(), d.as_bytes());
        assert!(with_id(b"\x05\x00\x00\x00").is_err());
    }

    #[test]
    fn reopened_tails_skip_what_they_saw() {
        let mut r = Resume::default();
        let id = ObjectId::new();
        assert!(r.seen(id));
        assert!(!r.seen(id));
        assert!(r.last_time.is_some());
    }
}
