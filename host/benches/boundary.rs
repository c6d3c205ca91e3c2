//! The cost of the guest boundary: one broadcast through socketioxide's native local
//! adapter vs the same broadcast through wasio's `WasmAdapter` with the built-in
//! `local` guest (local delivery + packet encoding + one guest call), side by side.
//!
//! Sockets are a bench double (`CountingEmitter`) that counts deliveries, so the
//! numbers are the adapters' own cost, not the network's.
//!
//! Run: `cargo bench -p wasio --bench boundary`

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::stream;
use socketioxide_core::adapter::errors::SocketError;
use socketioxide_core::adapter::{
    AckStreamItem, BroadcastFlags, BroadcastIter, BroadcastOptions, CoreAdapter, CoreLocalAdapter,
    RemoteSocketData, SocketEmitter,
};
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::Parse;
use socketioxide_core::{Sid, Str, Uid, Value};
use socketioxide_parser_common::CommonParser;
use wasio::{Adapter, WasmAdapter};

/// BENCH DOUBLE: `n` pretend sockets that count what they are sent.
struct CountingEmitter {
    sids: Vec<Sid>,
    path: Str,
    sent: Arc<AtomicU64>,
}

impl SocketEmitter for CountingEmitter {
    type AckError = SocketError;
    type AckStream = stream::Empty<AckStreamItem<SocketError>>;

    fn get_all_sids(&self, filter: impl Fn(&Sid) -> bool) -> Vec<Sid> {
        self.sids.iter().filter(|s| filter(s)).copied().collect()
    }
    fn get_remote_sockets(&self, sids: BroadcastIter<'_>) -> Vec<RemoteSocketData> {
        sids.map(|id| RemoteSocketData {
            id,
            server_id: Uid::ZERO,
            ns: self.path.clone(),
        })
        .collect()
    }
    fn send_many(&self, sids: BroadcastIter<'_>, data: Value) -> Result<(), Vec<SocketError>> {
        for _ in sids {
            black_box(data.clone());
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    fn send_many_volatile(&self, sids: BroadcastIter<'_>, data: Value) {
        let _ = self.send_many(sids, data);
    }
    fn send_many_with_ack(
        &self,
        _sids: BroadcastIter<'_>,
        _packet: Packet,
        _timeout: Option<Duration>,
    ) -> (Self::AckStream, u32) {
        (stream::empty(), 0)
    }
    fn disconnect_many(&self, _sids: Vec<Sid>) -> Result<(), Vec<SocketError>> {
        Ok(())
    }
    fn path(&self) -> &Str {
        &self.path
    }
    fn parser(&self) -> impl Parse {
        CommonParser
    }
    fn server_id(&self) -> Uid {
        Uid::ZERO
    }
    fn ack_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

fn emitter(n: usize) -> CountingEmitter {
    CountingEmitter {
        sids: (0..n).map(|_| Sid::new()).collect(),
        path: Str::from("/"),
        sent: Arc::default(),
    }
}

/// A 64-byte event payload, as the issue's workload.
fn packet() -> Packet {
    let json = format!(r#"["message","{}"]"#, "x".repeat(64));
    Packet::event(
        "/",
        Value::Str(Str::from(json), None::<VecDeque<bytes::Bytes>>),
    )
}

fn opts() -> BroadcastOptions {
    let mut o = BroadcastOptions::default();
    o.add_flag(BroadcastFlags::Broadcast);
    o
}

fn boundary(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let adapter = rt
        .block_on(Adapter::builtin_local())
        .expect("built-in local adapter");
    let mut group = c.benchmark_group("broadcast");
    for sockets in [1usize, 100] {
        let native = CoreLocalAdapter::new(emitter(sockets));
        group.bench_with_input(
            BenchmarkId::new("native-local", sockets),
            &sockets,
            |b, _| b.iter(|| native.broadcast(packet(), opts()).unwrap()),
        );

        let wasm = Arc::new(WasmAdapter::new(
            &adapter,
            CoreLocalAdapter::new(emitter(sockets)),
        ));
        rt.block_on(wasm.clone().init(|| {}))
            .expect("namespace opened");
        group.bench_with_input(
            BenchmarkId::new("wasio-local-guest", sockets),
            &sockets,
            |b, _| {
                b.to_async(&rt)
                    .iter(|| async { wasm.broadcast(packet(), opts()).await.unwrap() })
            },
        );
        // The same adapter with the `local` flag: delivered here, never relayed, so no
        // encoding and no guest call: what wasio costs before the boundary.
        group.bench_with_input(
            BenchmarkId::new("wasio-no-relay", sockets),
            &sockets,
            |b, _| {
                b.to_async(&rt).iter(|| async {
                    let mut o = opts();
                    o.add_flag(BroadcastFlags::Local);
                    wasm.broadcast(packet(), o).await.unwrap()
                })
            },
        );
    }
    // One guest call with almost nothing to lower: the fixed cost of crossing.
    group.bench_function("guest-call-floor", |b| {
        b.to_async(&rt)
            .iter(|| async { adapter.server_side_emit("/", Vec::new()).await.unwrap() })
    });
    group.bench_function("encode-packet-only", |b| {
        b.iter(|| wasio::testing::encode_packet(black_box(&packet())).unwrap())
    });
    group.bench_function("build-packet-only", |b| b.iter(|| black_box(packet())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = boundary
}
criterion_main!(benches);
