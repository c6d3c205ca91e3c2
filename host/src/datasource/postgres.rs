//! The PostgreSQL link behind `wasio:adapter/notify` (on `tokio-postgres`): two
//! connections per datasource, whatever the number of namespaces.
//!
//! - One listens. It LISTENs to every channel a guest asked for (all of them again
//!   after a reconnect) and reads the notifications in order. On a channel listened
//!   to with an attachments table, a notification that is a JSON object with an
//!   `attachmentId` is replaced by that row's payload, read on this connection before
//!   the next notification, so order holds.
//! - One writes. Notifications, attachments and cleanups go through one bounded queue
//!   (`publish_buffer`), sent in order; a run of notifications is pipelined. While
//!   PostgreSQL is away the queue holds them, and what the server may not have taken
//!   is sent again after the reconnect, once this node listens again and
//!   [`REJOIN_HOLD`] later (a notification reaches only those listening when it is
//!   sent, and the other nodes are reconnecting too).
//! - No TLS yet: a URL asking for it (`sslmode=require`) is refused at start-up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification, Statement};

use super::{LinkError, LinkEvent, LinkMetrics, Sink};
use crate::config::DatasourceSpec;

/// PostgreSQL's limit on a notification's payload, in bytes (it must stay below).
pub const MAX_PAYLOAD: usize = 8000;
/// Notifications sent in one pipeline.
const PIPELINE: usize = 64;
/// How long the first connections may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// After a reconnect, how long what was held waits more, so that the other nodes (who
/// lost the same server) listen again: PostgreSQL keeps no notification for a channel
/// nobody listens to.
const REJOIN_HOLD: Duration = Duration::from_secs(2);

enum Op {
    Notify {
        channel: String,
        payload: String,
    },
    Attached {
        channel: String,
        header: serde_json::Map<String, serde_json::Value>,
        table: String,
        payload: Vec<u8>,
    },
    Clean {
        table: String,
        older_than_ms: u32,
    },
    /// Answered once everything queued before it was sent.
    Barrier(oneshot::Sender<()>),
}

enum Control {
    Listen(String, Option<String>),
    Unlisten(String),
    /// Answered once the LISTENs asked before it are in place.
    Barrier(oneshot::Sender<()>),
}

/// Channels listened to, each with its attachments table.
type Listened = Arc<Mutex<BTreeMap<String, Option<String>>>>;

/// One PostgreSQL datasource, shared by every namespace of the node.
pub struct PostgresLink {
    spec: DatasourceSpec,
    id: u64,
    ops: mpsc::Sender<Op>,
    control: mpsc::UnboundedSender<Control>,
    listened: Listened,
    metrics: Arc<LinkMetrics>,
    writer: JoinHandle<()>,
    listener: JoinHandle<()>,
}

/// A connection: its client, the notifications it receives, the task driving it.
struct Conn {
    client: Client,
    notes: mpsc::UnboundedReceiver<Notification>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn open(config: &Config) -> Result<Conn, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("PostgreSQL connection ended: {e}");
                    break;
                }
            }
        }
    });
    Ok(Conn {
        client,
        notes,
        driver,
    })
}

impl PostgresLink {
    /// Connects both connections (failing after a few seconds, naming the datasource)
    /// and starts pushing notifications into `sink`.
    pub async fn connect(spec: &DatasourceSpec, sink: Sink) -> anyhow::Result<Self> {
        let label = spec.label();
        let config = config(spec)?;
        let first = async {
            let listening = open(&config).await?;
            let writing = open(&config).await?;
            Ok::<_, tokio_postgres::Error>((listening, writing))
        };
        let (listening, writing) = tokio::time::timeout(CONNECT_TIMEOUT, first)
            .await
            .map_err(|_| anyhow::anyhow!("{label}: no connection after {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("{label}: cannot connect"))?;
        let id = super::next_link_id();
        let metrics = Arc::new(LinkMetrics::default());
        metrics.connected.store(true, Relaxed);
        let listened = Listened::default();
        let (ops, rx) = mpsc::channel(spec.publish_buffer.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        let (up, listening_up) = watch::channel(true);
        let writer = tokio::spawn(write(
            config.clone(),
            writing,
            rx,
            listening_up,
            metrics.clone(),
            label.clone(),
        ));
        let listener = tokio::spawn(
            Listener {
                link: id,
                config,
                listened: listened.clone(),
                sink,
                metrics: metrics.clone(),
                up,
                label,
                statements: HashMap::new(),
            }
            .run(listening, control_rx),
        );
        Ok(PostgresLink {
            spec: spec.clone(),
            id,
            ops,
            control,
            listened,
            metrics,
            writer,
            listener,
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

    /// Starts receiving `channel`, resolving attachments from `attachments` when given.
    pub fn listen(&self, channel: String, attachments: Option<String>) -> Result<(), LinkError> {
        if channel.is_empty() {
            return Err(LinkError::Invalid("a channel name cannot be empty".into()));
        }
        if let Some(table) = &attachments {
            table_name(table)?;
        }
        self.listened
            .lock()
            .unwrap()
            .insert(channel.clone(), attachments.clone());
        self.tell(Control::Listen(channel, attachments))
    }

    /// Stops receiving `channel`.
    pub fn unlisten(&self, channel: String) -> Result<(), LinkError> {
        self.listened.lock().unwrap().remove(&channel);
        self.tell(Control::Unlisten(channel))
    }

    /// The channels listened to now.
    pub fn channels(&self) -> Vec<String> {
        self.listened.lock().unwrap().keys().cloned().collect()
    }

    /// Queues a notification; `Invalid` when it is too long for one.
    pub fn notify(&self, channel: String, payload: String) -> Result<(), LinkError> {
        if payload.len() >= MAX_PAYLOAD {
            return Err(LinkError::Invalid(format!(
                "a notification carries less than {MAX_PAYLOAD} bytes ({} given): send it as an attachment",
                payload.len()
            )));
        }
        self.enqueue(Op::Notify { channel, payload })
    }

    /// Queues `payload` for `table` and the notification of `header` naming its row.
    pub fn notify_attached(
        &self,
        channel: String,
        header: &str,
        table: String,
        payload: Vec<u8>,
    ) -> Result<(), LinkError> {
        table_name(&table)?;
        let header = match serde_json::from_str(header) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(LinkError::Invalid(
                    "an attachment's header must be a JSON object".into(),
                ));
            }
        };
        self.enqueue(Op::Attached {
            channel,
            header,
            table,
            payload,
        })
    }

    /// Queues the deletion of `table`'s rows older than `older_than_ms`.
    pub fn clean(&self, table: String, older_than_ms: u32) -> Result<(), LinkError> {
        table_name(&table)?;
        self.enqueue(Op::Clean {
            table,
            older_than_ms,
        })
    }

    fn enqueue(&self, op: Op) -> Result<(), LinkError> {
        super::enqueue(&self.ops, op, "PostgreSQL", &self.spec, &self.metrics)
    }

    fn tell(&self, control: Control) -> Result<(), LinkError> {
        self.control
            .send(control)
            .map_err(|_| LinkError::Closed("the PostgreSQL link is closed".into()))
    }

    /// Whether, within `wait`, everything queued before was sent and every LISTEN asked
    /// before is in place.
    pub async fn settled(&self, wait: Duration) -> bool {
        let (sent, sent_rx) = oneshot::channel();
        let (listening, listening_rx) = oneshot::channel();
        if self.enqueue(Op::Barrier(sent)).is_err()
            || self.tell(Control::Barrier(listening)).is_err()
        {
            return false;
        }
        let both = async { sent_rx.await.is_ok() && listening_rx.await.is_ok() };
        tokio::time::timeout(wait, both).await.unwrap_or(false)
    }

    /// State and counters for `/healthz`.
    pub fn to_json(&self) -> serde_json::Value {
        super::queue_json(&self.ops, &self.metrics, &self.spec, "postgres")
    }

    /// Drops both connections at once, queue and all, as a node that crashed would
    /// (for the conformance kit).
    pub fn sever(&self) {
        self.listener.abort();
        self.writer.abort();
    }

    /// Closes the link once what is queued is sent (2 s at most).
    pub async fn close(self) {
        let PostgresLink {
            ops,
            writer,
            listener,
            ..
        } = self;
        listener.abort();
        // The writer drains the queue and ends once the last sender is gone.
        drop(ops);
        let abort = writer.abort_handle();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        abort.abort();
    }
}

/// The connection settings of `spec`'s URL, refused by name when it asks for TLS.
fn config(spec: &DatasourceSpec) -> anyhow::Result<Config> {
    let label = spec.label();
    let mut config = Config::from_str(&spec.url).with_context(|| format!("{label}: bad URL"))?;
    if config.get_ssl_mode() == SslMode::Require {
        anyhow::bail!(
            "{label}: sslmode=require is not supported (wasio connects to PostgreSQL without TLS)"
        );
    }
    // `prefer` would try TLS first; there is none to try.
    config.ssl_mode(SslMode::Disable);
    if config.get_application_name().is_none() {
        config.application_name("wasio");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(2));
    }
    Ok(config)
}

/// A table name as the Node.js adapter writes it into SQL (unquoted, perhaps with its
/// schema), refused when it is anything else.
fn table_name(name: &str) -> Result<&str, LinkError> {
    let part = |p: &str| {
        let mut chars = p.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| part(p)) {
        Ok(name)
    } else {
        Err(LinkError::Invalid(format!(
            "`{name}` is not a table name (letters, digits, `_`, `$`, with an optional schema)"
        )))
    }
}

/// `"name"`, as SQL quotes an identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6)).min(MAX_BACKOFF)
}

/// Whether `e` lost the connection (the operation may be sent again) rather than
/// being refused by the server.
fn lost(e: &tokio_postgres::Error, client: &Client) -> bool {
    e.is_closed() || client.is_closed()
}

/// The writer: sends the queued operations in order until each was taken.
async fn write(
    config: Config,
    first: Conn,
    mut ops: mpsc::Receiver<Op>,
    mut listening: watch::Receiver<bool>,
    metrics: Arc<LinkMetrics>,
    label: String,
) {
    let mut pending: VecDeque<Op> = VecDeque::new();
    let mut conn = Some(first);
    let mut attempt = 0;
    loop {
        let c = match conn.take() {
            Some(c) => c,
            None => match open(&config).await {
                Ok(c) => c,
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!("{label}: cannot write: {e}");
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            },
        };
        let mut writer = match Writer::new(c).await {
            Ok(w) => w,
            Err(_) => continue,
        };
        attempt = 0;
        loop {
            if pending.is_empty() {
                match ops.recv().await {
                    Some(op) => pending.push_back(op),
                    None => return,
                }
            }
            while pending.len() < PIPELINE {
                match ops.try_recv() {
                    Ok(op) => pending.push_back(op),
                    Err(_) => break,
                }
            }
            metrics.held.store(pending.len(), Relaxed);
            // Held while this node does not listen (gone only when the link is).
            if listening.wait_for(|up| *up).await.is_err() {
                return;
            }
            if writer.send(&mut pending, &metrics, &label).await.is_err() {
                metrics
                    .publish_retries
                    .fetch_add(pending.len() as u64, Relaxed);
                break;
            }
            metrics.held.store(pending.len(), Relaxed);
        }
    }
}

/// The connection was lost: what is left in the queue goes again.
struct Lost;

/// The writing connection, with its prepared statements.
struct Writer {
    conn: Conn,
    notify: Statement,
    inserts: HashMap<String, Statement>,
}

impl Writer {
    async fn new(conn: Conn) -> Result<Writer, Lost> {
        let notify = conn
            .client
            .prepare("SELECT pg_notify($1, $2)")
            .await
            .map_err(|_| Lost)?;
        Ok(Writer {
            conn,
            notify,
            inserts: HashMap::new(),
        })
    }

    /// Sends the operations at the front of `pending`, removing each once it was
    /// taken, or refused by the server (logged and counted).
    async fn send(
        &mut self,
        pending: &mut VecDeque<Op>,
        metrics: &LinkMetrics,
        label: &str,
    ) -> Result<(), Lost> {
        let client = &self.conn.client;
        let refused = |what: &str, e: &tokio_postgres::Error| {
            LinkMetrics::bump(&metrics.publish_errors);
            tracing::warn!("{label}: {what} refused: {e}");
        };
        let run = pending
            .iter()
            .take_while(|op| matches!(op, Op::Notify { .. }))
            .count();
        if run > 0 {
            // Pipelined: tokio-postgres sends them in the order they are first polled.
            let params: Vec<[&(dyn ToSql + Sync); 2]> = pending
                .iter()
                .take(run)
                .filter_map(|op| match op {
                    Op::Notify { channel, payload } => Some([channel as _, payload as _]),
                    _ => None,
                })
                .collect();
            let sends = params.iter().map(|p| client.execute(&self.notify, p));
            let results = futures_util::future::join_all(sends).await;
            for result in results {
                match result {
                    Ok(_) => {}
                    Err(e) if lost(&e, client) => return Err(Lost),
                    Err(e) => refused("notification", &e),
                }
                pending.pop_front();
            }
            return Ok(());
        }
        match pending.front() {
            Some(Op::Attached {
                channel,
                header,
                table,
                payload,
            }) => {
                let insert = match self.inserts.get(table) {
                    Some(s) => s.clone(),
                    None => {
                        let sql = format!("INSERT INTO {table} (payload) VALUES ($1) RETURNING id");
                        match client.prepare(&sql).await {
                            Ok(s) => {
                                self.inserts.insert(table.clone(), s.clone());
                                s
                            }
                            Err(e) if lost(&e, client) => return Err(Lost),
                            Err(e) => {
                                refused("attachment", &e);
                                pending.pop_front();
                                return Ok(());
                            }
                        }
                    }
                };
                let id: i64 = match client.query_one(&insert, &[payload]).await {
                    Ok(row) => row.get(0),
                    Err(e) if lost(&e, client) => return Err(Lost),
                    Err(e) => {
                        refused("attachment", &e);
                        pending.pop_front();
                        return Ok(());
                    }
                };
                let mut header = header.clone();
                header.insert("attachmentId".into(), id.to_string().into());
                let header = serde_json::Value::Object(header).to_string();
                match client.execute(&self.notify, &[channel, &header]).await {
                    Ok(_) => {}
                    Err(e) if lost(&e, client) => return Err(Lost),
                    Err(e) => refused("notification", &e),
                }
            }
            Some(Op::Clean {
                table,
                older_than_ms,
            }) => {
                let sql = format!(
                    "DELETE FROM {table} WHERE created_at < now() - interval '{older_than_ms} milliseconds'"
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => {}
                    Err(e) if lost(&e, client) => return Err(Lost),
                    // A missing table, say: the next cleanup tries again.
                    Err(e) => tracing::debug!("{label}: cleanup of {table}: {e}"),
                }
            }
            Some(Op::Barrier(_)) => {
                if let Some(Op::Barrier(tx)) = pending.pop_front() {
                    let _ = tx.send(());
                }
                return Ok(());
            }
            Some(Op::Notify { .. }) | None => return Ok(()),
        }
        pending.pop_front();
        Ok(())
    }
}

/// The listening connection's task.
struct Listener {
    link: u64,
    config: Config,
    listened: Listened,
    sink: Sink,
    metrics: Arc<LinkMetrics>,
    /// Whether this node listens now: the writer holds what it would send until it does.
    up: watch::Sender<bool>,
    label: String,
    /// `SELECT payload` of each attachments table, on the current connection.
    statements: HashMap<String, Statement>,
}

impl Listener {
    async fn run(mut self, first: Conn, mut control: mpsc::UnboundedReceiver<Control>) {
        let mut conn = Some(first);
        let mut attempt = 0;
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        let mut lost_once = false;
        loop {
            let mut c = match conn.take() {
                Some(c) => c,
                None => match open(&self.config).await {
                    Ok(c) => c,
                    Err(e) => {
                        if attempt == 0 {
                            tracing::warn!("{}: cannot listen: {e}", self.label);
                        }
                        // Barriers wait for the connection; LISTENs are replayed from the set.
                        let pause = tokio::time::sleep(backoff(attempt));
                        tokio::pin!(pause);
                        loop {
                            tokio::select! {
                                _ = &mut pause => break,
                                asked = control.recv() => match asked {
                                    Some(Control::Barrier(tx)) => waiting.push(tx),
                                    Some(_) => {}
                                    None => return,
                                },
                            }
                        }
                        attempt += 1;
                        continue;
                    }
                },
            };
            self.statements.clear();
            let channels: Vec<(String, Option<String>)> = self
                .listened
                .lock()
                .unwrap()
                .iter()
                .map(|(c, t)| (c.clone(), t.clone()))
                .collect();
            let mut replayed = true;
            for (channel, table) in &channels {
                if self
                    .start(&c.client, channel, table.as_deref())
                    .await
                    .is_err()
                {
                    replayed = false;
                    break;
                }
            }
            if !replayed {
                continue;
            }
            attempt = 0;
            self.metrics.connected.store(true, Relaxed);
            // The writer goes on at once the first time, and a while after a reconnect.
            let mut hold = if lost_once {
                Some(tokio::time::Instant::now() + REJOIN_HOLD)
            } else {
                self.up.send_replace(true);
                None
            };
            if lost_once {
                LinkMetrics::bump(&self.metrics.reconnects);
                tracing::info!("{}: listening again", self.label);
                if !(self.sink)(LinkEvent::Connection {
                    link: self.link,
                    up: true,
                }) {
                    return;
                }
            }
            for tx in waiting.drain(..) {
                let _ = tx.send(());
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(hold.unwrap_or_else(tokio::time::Instant::now)), if hold.is_some() => {
                        hold = None;
                        self.up.send_replace(true);
                    }
                    note = c.notes.recv() => match note {
                        Some(n) => {
                            if !self.deliver(&c.client, n).await {
                                return;
                            }
                        }
                        None => break,
                    },
                    asked = control.recv() => match asked {
                        Some(Control::Listen(channel, table)) => {
                            if self.start(&c.client, &channel, table.as_deref()).await.is_err() {
                                break;
                            }
                        }
                        Some(Control::Unlisten(channel)) => {
                            let sql = format!("UNLISTEN {}", quoted(&channel));
                            if c.client.batch_execute(&sql).await.is_err() && c.client.is_closed() {
                                break;
                            }
                        }
                        Some(Control::Barrier(tx)) => {
                            let _ = tx.send(());
                        }
                        None => return,
                    },
                }
            }
            lost_once = true;
            self.metrics.connected.store(false, Relaxed);
            self.up.send_replace(false);
            tracing::warn!("{}: the listening connection was lost", self.label);
            if !(self.sink)(LinkEvent::Connection {
                link: self.link,
                up: false,
            }) {
                return;
            }
        }
    }

    /// LISTENs to `channel`, creating its attachments table when missing.
    async fn start(&self, client: &Client, channel: &str, table: Option<&str>) -> Result<(), Lost> {
        if let Some(table) = table {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {table} (id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)"
            );
            // Another node may be creating it at the same moment; reading it will tell.
            if let Err(e) = client.batch_execute(&sql).await {
                if lost(&e, client) {
                    return Err(Lost);
                }
                tracing::debug!("{}: creating {table}: {e}", self.label);
            }
        }
        match client
            .batch_execute(&format!("LISTEN {}", quoted(channel)))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if lost(&e, client) => Err(Lost),
            Err(e) => {
                tracing::warn!("{}: LISTEN {channel} refused: {e}", self.label);
                Ok(())
            }
        }
    }

    /// Hands `note` to the sink (an attachment's row in place of its header); false
    /// when no one listens any more.
    async fn deliver(&mut self, client: &Client, note: Notification) -> bool {
        let channel = note.channel().to_string();
        let table = self
            .listened
            .lock()
            .unwrap()
            .get(&channel)
            .cloned()
            .flatten();
        let payload = match table {
            Some(table) if note.payload().contains("\"attachmentId\"") => {
                match self.attachment(client, &table, note.payload()).await {
                    Some(bytes) => bytes,
                    None => return true,
                }
            }
            _ => note.payload().as_bytes().to_vec(),
        };
        (self.sink)(LinkEvent::Message {
            link: self.link,
            channel,
            pattern: None,
            payload,
        })
    }

    /// The row a header names; `None` (counted) when the header or the row is not there.
    async fn attachment(&mut self, client: &Client, table: &str, header: &str) -> Option<Vec<u8>> {
        let id = match serde_json::from_str::<serde_json::Value>(header) {
            Ok(serde_json::Value::Object(map)) => match map.get("attachmentId") {
                Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
                Some(serde_json::Value::Number(n)) => n.as_i64(),
                _ => None,
            },
            _ => None,
        };
        let Some(id) = id else {
            LinkMetrics::bump(&self.metrics.malformed);
            tracing::debug!("{}: a header with no usable attachmentId", self.label);
            return None;
        };
        let select = match self.statements.get(table) {
            Some(s) => s.clone(),
            None => {
                let sql = format!("SELECT payload FROM {table} WHERE id = $1");
                match client.prepare(&sql).await {
                    Ok(s) => {
                        self.statements.insert(table.to_string(), s.clone());
                        s
                    }
                    Err(e) => {
                        LinkMetrics::bump(&self.metrics.lost_messages);
                        tracing::warn!("{}: reading {table}: {e}", self.label);
                        return None;
                    }
                }
            }
        };
        match client.query_opt(&select, &[&id]).await {
            Ok(Some(row)) => match row.try_get::<_, Vec<u8>>(0) {
                Ok(bytes) => Some(bytes),
                Err(_) => {
                    LinkMetrics::bump(&self.metrics.malformed);
                    None
                }
            },
            Ok(None) => {
                // Cleaned up already, or never there: nothing to deliver.
                LinkMetrics::bump(&self.metrics.malformed);
                tracing::debug!("{}: attachment {id} of {table} is not there", self.label);
                None
            }
            Err(e) => {
                LinkMetrics::bump(&self.metrics.lost_messages);
                tracing::warn!("{}: reading attachment {id}: {e}", self.label);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_the_node_adapters_unquoted_identifiers() {
        assert!(table_name("socket_io_attachments").is_ok());
        assert!(table_name("public.socket_io_attachments").is_ok());
        assert!(table_name("a1$").is_ok());
        for bad in ["", "1a", "a b", "a;drop", "a.b.c", "\"x\"", "a."] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channels_are_quoted_as_sql_identifiers() {
        assert_eq!(quoted("socket.io#/"), "\"socket.io#/\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
