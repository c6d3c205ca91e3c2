//! The scenarios, in order. Clients are named by node and index: `B0` is the first
//! client of node B. Each scenario states what it asserts in its row's name; later ones
//! build on the rooms joined by earlier ones.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::client::{Client, Incoming};
use super::cluster::{Cluster, NODES, OTHER, REQUEST_TIMEOUT, label, unique};
use super::{Outcome, Row};
use crate::datasource::Topic;

/// No scenario may take longer than this.
const ROW_LIMIT: Duration = Duration::from_secs(40);

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

pub async fn run_all(c: &Cluster) -> Vec<Row> {
    let mut rows = Vec::new();
    let r = &mut rows;
    row(c, r, "server count: each node counts 3", server_count(c)).await;
    row(c, r, "broadcast to all: every client once", to_all(c)).await;
    row(
        c,
        r,
        "socket.broadcast: all but the sender",
        except_sender(c),
    )
    .await;
    row(c, r, "broadcast to a room: members only", to_room(c)).await;
    row(
        c,
        r,
        "broadcast to rooms: a member of two once",
        to_rooms(c),
    )
    .await;
    row(c, r, "broadcast except a room", except_room(c)).await;
    row(
        c,
        r,
        "socketsJoin / socketsLeave on another node",
        join_leave(c),
    )
    .await;
    row(c, r, "fetchSockets: every socket and its rooms", fetch(c)).await;
    row(c, r, "fetchSockets in a room", fetch_room(c)).await;
    row(c, r, "allRooms: the union", all_rooms(c)).await;
    row(
        c,
        r,
        "serverSideEmit: other nodes once each",
        server_side(c),
    )
    .await;
    row(
        c,
        r,
        "serverSideEmit with ack: one per node",
        server_side_ack(c),
    )
    .await;
    row(
        c,
        r,
        "broadcast with ack: every client's ack",
        broadcast_ack(c),
    )
    .await;
    row(c, r, "disconnectSockets on another node", disconnect(c)).await;
    row(
        c,
        r,
        "a second namespace: its rooms and broadcasts apart",
        namespaces(c),
    )
    .await;
    row(c, r, "malformed messages: dropped, counted", malformed(c)).await;
    row(c, r, "a node disappears: requests still end", node_dies(c)).await;
    rows
}

async fn row(
    c: &Cluster,
    rows: &mut Vec<Row>,
    scenario: &'static str,
    check: impl Future<Output = anyhow::Result<Outcome>>,
) {
    let started = Instant::now();
    let faults_before: Vec<u64> = c.nodes.iter().map(|n| faults(&n.adapter)).collect();
    let abandoned_before: Vec<u64> = c.nodes.iter().map(|n| abandoned(&n.adapter)).collect();
    let mut outcome = match tokio::time::timeout(ROW_LIMIT, check).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => Outcome::Fail(format!("{e:#}")),
        Err(_) => Outcome::Fail(format!("did not finish within {ROW_LIMIT:?}")),
    };
    // The host ends a request the guest never finished at its deadline, with what
    // arrived: the row may look right, but every such call waited 6 s.
    if outcome == Outcome::Pass {
        let unfinished: Vec<String> = c
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(n, node)| {
                let k = abandoned(&node.adapter) - abandoned_before[n];
                (k > 0).then(|| format!("node {} {k}×", label(n)))
            })
            .collect();
        if !unfinished.is_empty() {
            outcome = Outcome::Fail(format!(
                "the adapter never called `requests.finish`: the host's deadline ({REQUEST_TIMEOUT:?} and its grace) ended the request ({})",
                unfinished.join(", ")
            ));
        }
    }
    // A fault's message is only `wasm unreachable`: what the guest wrote before it
    // (a Python traceback, a panic message) says why.
    if let Outcome::Fail(why) = &mut outcome {
        for (n, node) in c.nodes.iter().enumerate() {
            if faults(&node.adapter) == faults_before[n] {
                continue;
            }
            let lines = node.adapter.output_before_fault();
            if lines.is_empty() {
                continue;
            }
            why.push_str(&format!(
                "\n  node {}'s guest wrote before its fault:",
                label(n)
            ));
            for l in lines {
                why.push_str("\n    | ");
                why.push_str(&l);
            }
        }
    }
    rows.push(Row {
        scenario,
        outcome,
        elapsed: started.elapsed(),
    });
}

/// Polls `check` until it holds, the cluster's patience at most; `what` names it in
/// the failure.
async fn until(
    c: &Cluster,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + c.patience;
    while !check().await {
        ensure!(
            Instant::now() < deadline,
            "{what} (waited {:?})",
            c.patience
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How often `adapter`'s guest trapped or was stopped.
fn faults(adapter: &crate::cluster::Adapter) -> u64 {
    let m = adapter.metrics();
    m.traps.load(Ordering::Relaxed)
        + m.deadline_stops.load(Ordering::Relaxed)
        + m.memory_stops.load(Ordering::Relaxed)
}

/// How many cluster requests `adapter`'s guest never finished.
fn abandoned(adapter: &crate::cluster::Adapter) -> u64 {
    adapter.metrics().abandoned_requests.load(Ordering::Relaxed)
}

fn name(n: usize, i: usize) -> String {
    format!("{}{i}", label(n))
}

fn every() -> Vec<(usize, usize)> {
    (0..NODES).flat_map(|n| [(n, 0), (n, 1)]).collect()
}

/// Checks that exactly `members` got the broadcast once and nobody else got it.
fn exactly(
    counts: &HashMap<(usize, usize), usize>,
    members: &[(usize, usize)],
) -> anyhow::Result<Outcome> {
    let mut wrong = Vec::new();
    let mut keys: Vec<_> = counts.keys().copied().collect();
    keys.sort();
    for k in keys {
        let want = usize::from(members.contains(&k));
        let got = counts[&k];
        if got != want {
            wrong.push(format!(
                "{} got it {got}× (expected {want})",
                name(k.0, k.1)
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join(", "));
    Ok(Outcome::Pass)
}

fn token() -> Value {
    json!(format!("t{}", unique()))
}

async fn join(c: &Cluster, n: usize, i: usize, room: &str) -> anyhow::Result<()> {
    join_as(&c.clients[n][i], room).await
}

async fn join_as(client: &tokio::sync::Mutex<Client>, room: &str) -> anyhow::Result<()> {
    let ack = client
        .lock()
        .await
        .emit_with_ack("join", json!(room))
        .await?;
    ensure!(ack["ok"] == true, "join refused: {ack}");
    Ok(())
}

/// Waits until broadcasts from node `from` to `room` in `nsp` reach every one of
/// `members`, the cluster's patience at most. A backend that subscribes a channel per
/// room (sharded Redis, `dynamic`) does so just after a join, as Node.js's does: a
/// broadcast sent in between misses the new member. Probes are events of their own,
/// which the rows' counts ignore.
async fn reachable(
    c: &Cluster,
    from: usize,
    nsp: &str,
    room: &str,
    members: &[&tokio::sync::Mutex<Client>],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + c.patience;
    loop {
        let probe = json!(format!("probe-{}", unique()));
        c.nodes[from]
            .io
            .of(nsp)
            .context("no such namespace")?
            .to(room.to_string())
            .emit("probe", &probe)
            .await
            .map_err(|e| anyhow::anyhow!("probe broadcast: {e}"))?;
        let mut all = true;
        for m in members {
            let mut client = m.lock().await;
            let until = Instant::now() + Duration::from_millis(200);
            let mut got = false;
            while let Some(e) = client
                .next(until.saturating_duration_since(Instant::now()))
                .await
            {
                if e == Incoming::Event("probe".into(), probe.clone()) {
                    got = true;
                    break;
                }
            }
            all &= got;
        }
        if all {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "broadcasts from {} to room `{room}` in `{nsp}` never reached every member (waited {:?})",
            label(from),
            c.patience
        );
    }
}

async fn server_count(c: &Cluster) -> anyhow::Result<Outcome> {
    for (n, node) in c.nodes.iter().enumerate() {
        let mut last = String::new();
        until(
            c,
            &format!("node {} does not count {NODES} nodes", label(n)),
            async || match node.adapter.server_count("/").await {
                Ok(k) if k == NODES as u32 => true,
                Ok(k) => {
                    last = format!("{k}, not {NODES}");
                    false
                }
                Err(e) => {
                    last = format!("an error: {e:#}");
                    false
                }
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}: last answer {last}"))?;
    }
    Ok(Outcome::Pass)
}

async fn to_all(c: &Cluster) -> anyhow::Result<Outcome> {
    let t = token();
    c.nodes[A]
        .io
        .emit("all", &t)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    exactly(
        &c.deliveries(A, "all", &t, &every(), &every()).await?,
        &every(),
    )
}

async fn except_sender(c: &Cluster) -> anyhow::Result<Outcome> {
    let t = token();
    let ack = c.clients[A][0]
        .lock()
        .await
        .emit_with_ack(
            "publish",
            json!({"event": "excl", "data": t, "exceptSelf": true}),
        )
        .await?;
    ensure!(ack["ok"] == true, "publish refused: {ack}");
    let others: Vec<_> = every().into_iter().filter(|k| *k != (A, 0)).collect();
    exactly(
        &c.deliveries(A, "excl", &t, &every(), &others).await?,
        &others,
    )
}

/// Rooms used from here on: B0 in red and blue, C1 in red, C0 in blue.
async fn to_room(c: &Cluster) -> anyhow::Result<Outcome> {
    join(c, B, 0, "red").await?;
    join(c, C, 1, "red").await?;
    join(c, B, 0, "blue").await?;
    join(c, C, 0, "blue").await?;
    let t = token();
    let ack = c.clients[A][1]
        .lock()
        .await
        .emit_with_ack(
            "publish",
            json!({"room": "red", "event": "room", "data": t}),
        )
        .await?;
    ensure!(ack["ok"] == true, "publish refused: {ack}");
    exactly(
        &c.deliveries(A, "room", &t, &every(), &[(B, 0), (C, 1)])
            .await?,
        &[(B, 0), (C, 1)],
    )
}

async fn to_rooms(c: &Cluster) -> anyhow::Result<Outcome> {
    let t = token();
    c.nodes[A]
        .io
        .to(["red", "blue"])
        .emit("rooms", &t)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    exactly(
        &c.deliveries(A, "rooms", &t, &every(), &[(B, 0), (C, 0), (C, 1)])
            .await?,
        &[(B, 0), (C, 0), (C, 1)],
    )
}

async fn except_room(c: &Cluster) -> anyhow::Result<Outcome> {
    let t = token();
    c.nodes[A]
        .io
        .except("red")
        .emit("except", &t)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    exactly(
        &c.deliveries(A, "except", &t, &every(), &[(A, 0), (A, 1), (B, 1), (C, 0)])
            .await?,
        &[(A, 0), (A, 1), (B, 1), (C, 0)],
    )
}

async fn join_leave(c: &Cluster) -> anyhow::Result<Outcome> {
    let sid = c.sid(B, 1).await;
    let member = async |yes: bool| {
        let local = c.nodes[B].io.to("green").local().sockets();
        local.iter().any(|s| s.id.to_string() == sid) == yes
    };
    c.nodes[A]
        .io
        .to(sid.clone())
        .join("green")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    until(
        c,
        "B1 joined `green` on node B after A's socketsJoin",
        async || member(true).await,
    )
    .await?;
    reachable(c, C, "/", "green", &[&c.clients[B][1]]).await?;
    let t = token();
    c.nodes[C]
        .io
        .to("green")
        .emit("green", &t)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    exactly(
        &c.deliveries(C, "green", &t, &every(), &[(B, 1)]).await?,
        &[(B, 1)],
    )
    .context("a broadcast to `green` from C after the join")?;
    c.nodes[A]
        .io
        .to(sid.clone())
        .leave("green")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    until(
        c,
        "B1 left `green` on node B after A's socketsLeave",
        async || member(false).await,
    )
    .await?;
    Ok(Outcome::Pass)
}

async fn fetch(c: &Cluster) -> anyhow::Result<Outcome> {
    let sockets = c.nodes[A].adapter.fetch_sockets("/", &[], &[]).await?;
    let got: BTreeSet<String> = sockets.iter().map(|s| s.id.clone()).collect();
    let want: BTreeSet<String> = c.all().await.into_iter().map(|(_, _, s)| s).collect();
    ensure!(got == want, "got {got:?}, expected {want:?}");
    let b0 = c.sid(B, 0).await;
    let s = sockets.iter().find(|s| s.id == b0).context("B0 missing")?;
    ensure!(
        s.rooms.contains(&"red".to_string()) && s.rooms.contains(&"blue".to_string()),
        "B0's rooms are {:?}, expected red and blue among them",
        s.rooms
    );
    // The Redis protocol does not say which node a socket is on: empty is allowed.
    ensure!(
        s.server_id.is_empty() || s.server_id == c.nodes[B].adapter.node_id(),
        "B0's server id is {}, node B is {}",
        s.server_id,
        c.nodes[B].adapter.node_id()
    );
    Ok(Outcome::Pass)
}

async fn fetch_room(c: &Cluster) -> anyhow::Result<Outcome> {
    let sockets = c.nodes[C]
        .adapter
        .fetch_sockets("/", &["blue".into()], &[])
        .await?;
    let got: BTreeSet<String> = sockets.into_iter().map(|s| s.id).collect();
    let want: BTreeSet<String> = [c.sid(B, 0).await, c.sid(C, 0).await].into();
    ensure!(
        got == want,
        "from C in `blue`: got {got:?}, expected B0 and C0 {want:?}"
    );
    Ok(Outcome::Pass)
}

async fn all_rooms(c: &Cluster) -> anyhow::Result<Outcome> {
    let rooms = c.nodes[A].adapter.all_rooms("/").await?;
    for r in ["red", "blue"] {
        ensure!(
            rooms.iter().any(|x| x == r),
            "`{r}` (only on B and C) missing from A's allRooms: {rooms:?}"
        );
    }
    Ok(Outcome::Pass)
}

async fn server_side(c: &Cluster) -> anyhow::Result<Outcome> {
    let k = unique();
    let mine =
        |v: &rmpv::Value| v.as_array().and_then(|a| a.get(1)).and_then(|x| x.as_u64()) == Some(k);
    c.nodes[A]
        .adapter
        .server_side_emit("/", vec!["sse".into(), k.into()])
        .await?;
    for n in [B, C] {
        until(c, &format!("node {}'s handler ran", label(n)), async || {
            c.nodes[n].server_side.lock().unwrap().iter().any(mine)
        })
        .await?;
    }
    // What follows an emit arrives after it: once this is answered, a duplicate would be in.
    c.nodes[A]
        .adapter
        .server_side_emit_with_ack("/", vec!["fence".into()])
        .await?;
    for n in [A, B, C] {
        let times = c.nodes[n]
            .server_side
            .lock()
            .unwrap()
            .iter()
            .filter(|v| mine(v))
            .count();
        let want = usize::from(n != A);
        ensure!(
            times == want,
            "node {}'s handler ran {times}× (expected {want})",
            label(n)
        );
    }
    Ok(Outcome::Pass)
}

async fn server_side_ack(c: &Cluster) -> anyhow::Result<Outcome> {
    let acks = c.nodes[B]
        .adapter
        .server_side_emit_with_ack("/", vec!["ssa".into()])
        .await?;
    let got: BTreeSet<String> = acks
        .iter()
        .filter_map(|a| a.as_array()?.first()?.as_str().map(String::from))
        .collect();
    let want: BTreeSet<String> = [A, C]
        .iter()
        .map(|n| c.nodes[*n].adapter.node_id().to_string())
        .collect();
    ensure!(
        acks.len() == 2 && got == want,
        "acks {acks:?}, expected one from each of A and C"
    );
    Ok(Outcome::Pass)
}

async fn broadcast_ack(c: &Cluster) -> anyhow::Result<Outcome> {
    let timeout = Duration::from_secs(5);
    let started = Instant::now();
    let stream = c.nodes[A]
        .io
        .timeout(timeout)
        .emit_with_ack::<_, Value>("bwa", &token())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stream = std::pin::pin!(stream);
    let mut got = BTreeSet::new();
    let mut errors = Vec::new();
    while let Some((_, res)) = stream.next().await {
        match res {
            Ok(v) => {
                got.insert(v.as_str().unwrap_or_default().to_string());
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let want: BTreeSet<String> = c.all().await.into_iter().map(|(_, _, s)| s).collect();
    ensure!(errors.is_empty(), "ack errors: {errors:?}");
    ensure!(
        got == want,
        "acks from {got:?}, expected every client {want:?}"
    );
    ensure!(
        started.elapsed() < timeout,
        "the acks were complete, but the stream ran to its timeout"
    );
    Ok(Outcome::Pass)
}

async fn disconnect(c: &Cluster) -> anyhow::Result<Outcome> {
    let sid = c.sid(C, 1).await;
    c.nodes[A]
        .io
        .to(sid)
        .disconnect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = c.clients[C][1].lock().await;
    let deadline = Instant::now() + c.patience;
    loop {
        match client
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Some(Incoming::Disconnected) => return Ok(Outcome::Pass),
            Some(_) => {}
            None => bail!(
                "C1 is still connected {:?} after A's disconnectSockets",
                c.patience
            ),
        }
    }
}

/// Clients still connected once C1 was disconnected.
fn connected() -> Vec<(usize, usize)> {
    every().into_iter().filter(|k| *k != (C, 1)).collect()
}

/// Garbage, messages with the right shape but wrong contents, and hostile JSON (deep
/// nesting, lone surrogates, integers out of range) on every channel (or watched
/// collection) the adapters listen to. Each node must refuse (and so count)
/// at least one, keep its instance (no trap), and still relay.
/// One room name in both namespaces: B0 and C0 are in it in `/`, the `/other` clients
/// of B and C in `/other`. A broadcast to it in `/other` reaches those two alone, and
/// `/other`'s fetchSockets sees `/other`'s sockets alone: an adapter that relays or
/// answers without its namespace fails here.
async fn namespaces(c: &Cluster) -> anyhow::Result<Outcome> {
    let room = format!("ns-{}", unique());
    join(c, B, 0, &room).await?;
    join(c, C, 0, &room).await?;
    for n in [B, C] {
        join_as(&c.others[n], &room).await?;
    }
    // Not reaching them is reported with what reached `/` instead.
    let mut wrong = Vec::new();
    if let Err(e) = reachable(c, A, OTHER, &room, &[&c.others[B], &c.others[C]]).await {
        wrong.push(format!("{e:#}"));
    }
    let other = |n: usize| {
        c.nodes[n]
            .io
            .of(OTHER)
            .ok_or_else(|| anyhow::anyhow!("node {} has no `{OTHER}`", label(n)))
    };
    let t = token();
    other(A)?
        .to(room.clone())
        .emit("ns", &t)
        .await
        .map_err(|e| anyhow::anyhow!("broadcast in `{OTHER}`: {e}"))?;
    let in_root = c.deliveries(A, "ns", &t, &connected(), &[]).await?;
    let mut keys: Vec<_> = in_root.keys().copied().collect();
    keys.sort();
    for k in keys {
        if in_root[&k] > 0 {
            wrong.push(format!(
                "{} (in `/`) got the `{OTHER}` broadcast {}×",
                name(k.0, k.1),
                in_root[&k]
            ));
        }
    }
    let fence = json!(format!("fence-{}", unique()));
    other(A)?
        .emit("fence", &fence)
        .await
        .map_err(|e| anyhow::anyhow!("fence in `{OTHER}`: {e}"))?;
    for n in 0..NODES {
        let who = format!("{}'s `{OTHER}` client", label(n));
        let mut client = c.others[n].lock().await;
        let want = usize::from(n != A);
        match c
            .count_to_fence(&mut client, &who, &fence, ("ns", &t), want)
            .await
        {
            Ok(got) if got == want => {}
            Ok(got) => wrong.push(format!("{who} got it {got}× (expected {want})")),
            Err(e) => wrong.push(format!("{e:#}")),
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join(", "));

    let mut sids = Vec::new();
    for client in &c.others {
        sids.push(client.lock().await.sid.clone());
    }
    let ids = |sockets: Vec<crate::runtime::SocketInfo>| -> BTreeSet<String> {
        sockets.into_iter().map(|s| s.id).collect()
    };
    let all = ids(c.nodes[A].adapter.fetch_sockets(OTHER, &[], &[]).await?);
    let want: BTreeSet<String> = sids.iter().cloned().collect();
    ensure!(
        all == want,
        "fetchSockets in `{OTHER}` from A gave {all:?}, expected the `{OTHER}` clients {want:?}"
    );
    let members = ids(c.nodes[A]
        .adapter
        .fetch_sockets(OTHER, std::slice::from_ref(&room), &[])
        .await?);
    let want: BTreeSet<String> = [sids[B].clone(), sids[C].clone()].into();
    ensure!(
        members == want,
        "fetchSockets of room {room} in `{OTHER}` gave {members:?}, expected {want:?}"
    );
    Ok(Outcome::Pass)
}

async fn malformed(c: &Cluster) -> anyhow::Result<Outcome> {
    let before: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| n.adapter.metrics().dropped_messages.load(Ordering::Relaxed))
        .collect();
    let faults = |c: &Cluster| -> u64 { c.nodes.iter().map(|n| faults(&n.adapter)).sum() };
    let faults_before = faults(c);
    if let Some(link) = c.pubsub(A) {
        let topics = link.topics();
        ensure!(!topics.is_empty(), "node A subscribed to nothing");
        let payloads: [&[u8]; 6] = [
            b"",
            b"\xc1\xc1\xc1",
            b"{not json",
            b"{\"type\": 99}",
            b"\x93\xa4junk\x01\xc0",
            &[0xff; 4096],
        ];
        let hostile = hostile_json();
        for topic in &topics {
            let (channel, sharded) = match topic {
                Topic::Channel(ch) => (ch.clone(), false),
                Topic::Shard(ch) => (ch.clone(), true),
                Topic::Pattern(p) => (p.replace(['*', '?'], "x"), false),
            };
            for p in payloads
                .iter()
                .copied()
                .chain(hostile.iter().map(Vec::as_slice))
            {
                link.publish(channel.clone(), p.to_vec(), sharded)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    } else if let Some(store) = c.docstore(A) {
        use mongodb::bson::{Bson, doc};
        // From another node of this namespace, so that feeds filtering on both pass them.
        let docs = [
            doc! { "uid": "intruder", "nsp": "/", "type": 99 },
            doc! { "uid": "intruder", "nsp": "/", "type": "three", "data": 1 },
            doc! { "uid": "intruder", "nsp": "/", "type": 3, "data": "not a packet" },
            doc! { "uid": "intruder", "nsp": "/", "type": 3, "data": Bson::Binary(mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![0xc1; 16] }) },
        ];
        let collections = store.collections();
        ensure!(!collections.is_empty(), "node A watches no collection");
        for coll in collections {
            for d in &docs {
                let bytes = mongodb::bson::to_vec(d)?;
                if let Err(e) = store.insert(coll.clone(), &bytes) {
                    bail!("inserting into {coll}: {e}");
                }
            }
        }
    } else if let Some(link) = c.notify(A) {
        let channels = link.channels();
        ensure!(!channels.is_empty(), "node A listens to no channel");
        let text: [&str; 4] = [
            "",
            "{not json",
            "{\"type\": 99}",
            "{\"uid\":\"intruder\",\"type\":3,\"attachmentId\":\"999999999\"}",
        ];
        let hostile = hostile_json();
        for channel in channels {
            for p in text.iter().map(|t| t.to_string()).chain(
                hostile
                    .iter()
                    .filter_map(|h| String::from_utf8(h.clone()).ok())
                    .filter(|h| h.len() < crate::datasource::postgres::MAX_PAYLOAD),
            ) {
                link.notify(channel.clone(), p)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    } else {
        return Ok(Outcome::Skip(
            "the adapter has no datasource to inject into".into(),
        ));
    }
    for (n, node) in c.nodes.iter().enumerate() {
        until(
            c,
            &format!("node {} counted none of them as dropped", label(n)),
            async || {
                node.adapter
                    .metrics()
                    .dropped_messages
                    .load(Ordering::Relaxed)
                    > before[n]
            },
        )
        .await?;
    }
    let t = token();
    c.nodes[B]
        .io
        .emit("after", &t)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    exactly(
        &c.deliveries(B, "after", &t, &connected(), &connected())
            .await?,
        &connected(),
    )
    .context("a broadcast after the garbage")?;
    ensure!(
        faults(c) == faults_before,
        "a guest trapped or was stopped ({} faults)",
        faults(c) - faults_before
    );
    Ok(Outcome::Pass)
}

/// JSON that parses (or nearly) but holds what a guest's bindings cannot hand to the
/// host — a lone surrogate is no WIT `string`, 2^64 no `u64` — or that overflows a
/// recursive parser: once as plain JSON, once in the shape of `wasio-json` messages
/// (guest-adapters/json-protocol.md) from another node, so that it gets past a JSON
/// adapter's first checks to the code that hands values to imports.
fn hostile_json() -> Vec<Vec<u8>> {
    let deep =
        |open: &str, close: &str| format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
    let opts = |rooms: &str| {
        format!(
            r#"{{"rooms":{rooms},"except":[],"flags":{{"local":false,"broadcast":false,"volatile":false}},"sid":null,"serverId":null}}"#
        )
    };
    let msg = |fields: &str| format!(r#"{{"v":1,"uid":"intruder","nsp":"/",{fields}}}"#);
    let mut out = vec![
        deep("[", "]"),
        deep(r#"{"a":"#, "}"),
        r#""\ud800""#.to_string(),
        r#"{"v":1,"uid":"\udc00","nsp":"/","type":"broadcast"}"#.to_string(),
        r#"{"v":18446744073709551616,"uid":"intruder","nsp":"/","type":"broadcast"}"#.to_string(),
        msg(&format!(
            r#""type":"broadcast","packet":"","opts":{}"#,
            deep("[", "]")
        )),
        msg(&format!(
            r#""type":"broadcast","packet":"","opts":{}"#,
            opts(r#"["\ud800x"]"#)
        )),
        msg(&format!(
            r#""type":"join","rooms":["\udfff"],"opts":{}"#,
            opts("[]")
        )),
        msg(&format!(
            r#""type":"leave","rooms":["ok"],"opts":{}"#,
            opts(r#"["a","\ud83d"]"#)
        )),
        msg(r#""type":"emit","data":"\ud800""#),
    ];
    for n in [
        "18446744073709551616",
        "-9223372036854775809",
        "1e400",
        "-1",
    ] {
        out.push(msg(&format!(
            r#""type":"fetch","rid":{n},"opts":{}"#,
            opts("[]")
        )));
        out.push(msg(&format!(
            r#""type":"rooms","rid":{n},"opts":{}"#,
            opts("[]")
        )));
        out.push(msg(&format!(r#""type":"emit","rid":{n},"data":"""#)));
        out.push(msg(&format!(
            r#""type":"broadcast-ack","rid":{n},"timeout":{n},"packet":"","opts":{}"#,
            opts("[]")
        )));
        out.push(msg(&format!(
            r#""type":"broadcast-ack","rid":1,"timeout":{n},"packet":"","opts":{}"#,
            opts("[]")
        )));
        out.push(msg(&format!(r#""type":"count","rid":{n},"count":{n}"#)));
        out.push(msg(&format!(r#""type":"ack","rid":{n},"data":"""#)));
    }
    out.into_iter().map(String::into_bytes).collect()
}

async fn node_dies(c: &Cluster) -> anyhow::Result<Outcome> {
    match (c.pubsub(C), c.docstore(C), c.notify(C)) {
        (Some(link), _, _) => link.sever().await,
        (_, Some(store), _) => store.sever(),
        (_, _, Some(link)) => link.sever(),
        _ => return Ok(Outcome::Skip("the adapter has no datasource".into())),
    }
    let started = Instant::now();
    let live: BTreeSet<String> = c
        .all()
        .await
        .into_iter()
        .filter(|(n, _, _)| *n != C)
        .map(|(_, _, s)| s)
        .collect();
    match c.nodes[A].adapter.fetch_sockets("/", &[], &[]).await {
        Ok(sockets) => {
            let got: BTreeSet<String> = sockets.into_iter().map(|s| s.id).collect();
            ensure!(
                got == live,
                "after C vanished, A's fetchSockets gave {got:?}, expected A's and B's {live:?}"
            );
        }
        Err(e) => ensure!(
            e.to_string().contains("time"),
            "after C vanished, A's fetchSockets failed with something other than a timeout: {e:#}"
        ),
    }
    ensure!(
        started.elapsed() <= REQUEST_TIMEOUT + Duration::from_secs(2),
        "A's fetchSockets took {:?}",
        started.elapsed()
    );
    let mut last = 0;
    until(c, "A counts 2 nodes after C vanished", async || {
        last = c.nodes[A].adapter.server_count("/").await.unwrap_or(0);
        last == 2
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: last count {last}"))?;
    let t = token();
    c.nodes[A]
        .io
        .emit("alive", &t)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let live_clients = [(A, 0), (A, 1), (B, 0), (B, 1)];
    exactly(
        &c.deliveries(A, "alive", &t, &live_clients, &live_clients)
            .await?,
        &live_clients,
    )
}
