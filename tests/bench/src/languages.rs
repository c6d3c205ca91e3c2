//! What a language choice costs: the same adapter (the `wasio-json` protocol) in Rust,
//! Python and JavaScript, each as the adapter of two wasio nodes in this process on the
//! in-memory bus, measured the same way. The Redis guest and the `local` guest (no
//! relay at all: the host's own cost) are reference rows.
//!
//! - load: compile + instantiate + `init` (cold), and instantiate + `init` again with
//!   the compiled component cached (what a re-instantiation or a swap back costs);
//! - memory: the instance's linear memory after the run;
//! - broadcast: `io.emit` to the namespace, awaited, one after another: the host's
//!   encoding, one guest call, the guest's publish;
//! - relay: `serverSideEmit` from node A until node B's handler ran for all of them:
//!   A's guest publishes, B's guest decodes (`on-message`) and hands it over;
//! - fetchSockets: a cluster request's round trip (A asks, B answers, A finishes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use wasio::{
    Adapter, AdapterOptions, Capability, Connector, DatasourceSpec, WasmAdapter, WasmSource,
};

#[derive(clap::Args, Clone, Debug)]
pub struct LangArgs {
    /// Broadcasts and relayed messages per adapter.
    #[arg(long, default_value_t = 20_000)]
    pub calls: u64,
    /// fetchSockets round trips per adapter.
    #[arg(long, default_value_t = 500)]
    pub requests: usize,
    /// Where the built guests are (`target/guests/wasm32-wasip2/release`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/guests/wasm32-wasip2/release"))]
    pub guests: std::path::PathBuf,
}

type Io = SocketIo<WasmAdapter<socketioxide::adapter::Emitter>>;

struct Measured {
    name: &'static str,
    wasm_bytes: usize,
    cold: Duration,
    warm: Duration,
    memory: u64,
    broadcast: Duration,
    relay: Duration,
    fetch_p50: Duration,
}

pub fn run(args: LangArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let file = |f: &str| WasmSource::File(args.guests.join(f));
        let adapters = [
            ("Rust (json-rust)", file("json_rust.wasm")),
            ("Python (json-python)", file("json_python.wasm")),
            ("JavaScript (json-js)", file("json_js.wasm")),
            (
                "Rust, Redis protocol (builtin:redis)",
                WasmSource::Builtin("redis".into()),
            ),
            (
                "no relay (builtin:local)",
                WasmSource::Builtin("local".into()),
            ),
        ];
        let mut rows = Vec::new();
        for (name, source) in adapters {
            eprintln!("measuring {name}");
            rows.push(measure(name, source, &args).await.with_context(|| name)?);
        }
        print(&rows, &args);
        Ok(())
    })
}

async fn load(source: &WasmSource, bus: &str) -> anyhow::Result<Adapter> {
    Adapter::load(AdapterOptions {
        source: source.clone(),
        granted: vec![Capability::PubSub],
        datasource: Some(DatasourceSpec {
            name: "bench".into(),
            connector: Connector::Memory,
            url: bus.into(),
            publish_buffer: 10_000,
        }),
        ..Default::default()
    })
    .await
}

async fn noop(_s: SocketRef<WasmAdapter<socketioxide::adapter::Emitter>>) {}

async fn io_with(adapter: &Adapter) -> anyhow::Result<Io> {
    let (_svc, io) = SocketIo::builder()
        .with_config(adapter.socket_io_config())
        .with_adapter::<WasmAdapter<_>>(adapter.clone())
        .build_svc();
    io.ns("/", noop).await?;
    Ok(io)
}

async fn measure(
    name: &'static str,
    source: WasmSource,
    args: &LangArgs,
) -> anyhow::Result<Measured> {
    let wasm_bytes = source.read()?.len();
    let bus = format!("memory://bench-{name}");
    let started = Instant::now();
    let a = load(&source, &bus).await?;
    let cold = started.elapsed();
    let started = Instant::now();
    let b = load(&source, &bus).await?;
    let warm = started.elapsed();
    let io_a = io_with(&a).await?;
    let _io_b = io_with(&b).await?;
    let relays = Arc::new(AtomicU64::new(0));
    let counted = relays.clone();
    b.on_server_side_emit(Arc::new(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    }));

    let payload = "x".repeat(64);
    let started = Instant::now();
    for _ in 0..args.calls {
        io_a.emit("bench", &payload)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let broadcast = started.elapsed() / args.calls as u32;

    let started = Instant::now();
    for i in 0..args.calls {
        a.server_side_emit("/", vec!["bench".into(), i.into()])
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let relayed = relays.clone();
    let single_node = name.contains("local");
    while !single_node && relayed.load(Ordering::Relaxed) < args.calls {
        anyhow::ensure!(
            Instant::now() < deadline,
            "B received {} of {}",
            relayed.load(Ordering::Relaxed),
            args.calls
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let relay = started.elapsed() / args.calls as u32;

    let mut times = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let started = Instant::now();
        a.fetch_sockets("/", &[], &[]).await?;
        times.push(started.elapsed());
    }
    times.sort();
    let memory = a.metrics().guest_memory_bytes.load(Ordering::Relaxed);
    a.close().await;
    b.close().await;
    Ok(Measured {
        name,
        wasm_bytes,
        cold,
        warm,
        memory,
        broadcast,
        relay,
        fetch_p50: times[times.len() / 2],
    })
}

fn print(rows: &[Measured], args: &LangArgs) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rust = &rows[0];
    let ratio = |x: f64, base: f64| {
        if base > 0.0 {
            format!("{:.1}×", x / base)
        } else {
            "-".into()
        }
    };
    println!(
        "\nAdapters by language: 2 nodes in one process on the in-memory bus, {} broadcasts and relays, {} fetchSockets, 64-byte payloads\n",
        args.calls, args.requests
    );
    println!(
        "| adapter | .wasm | load, cold | load, cached | memory | broadcast µs/call | relay µs/msg | fetchSockets p50 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} MB | {:.0} ms | {:.2} ms | {:.1} MiB | {:.1} ({}) | {} | {:.0} ({}) |",
            r.name,
            r.wasm_bytes as f64 / 1e6,
            ms(r.cold),
            ms(r.warm),
            r.memory as f64 / (1 << 20) as f64,
            us(r.broadcast),
            ratio(us(r.broadcast), us(rust.broadcast)),
            if r.name.contains("local") {
                "-".to_string()
            } else {
                format!(
                    "{:.1} ({})",
                    us(r.relay),
                    ratio(us(r.relay), us(rust.relay))
                )
            },
            us(r.fetch_p50),
            ratio(us(r.fetch_p50), us(rust.fetch_p50)),
        );
    }
    println!("\nRatios are against the Rust row.");
}
