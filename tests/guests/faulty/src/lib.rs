//! TEST DOUBLE, never shipped: a single-node adapter that misbehaves on purpose, so
//! tests can show the host surviving it. A broadcast whose packet contains
//! `__trap__` traps, `__loop__` spins forever, `__grow__` allocates until the memory
//! cap stops it, `__probe__` reports what the sandbox let it reach. With options `{"fail_init": true}` its `init` returns an error.

wit_bindgen::generate!({ path: "../../../wit", world: "local-adapter" });

use exports::wasio::adapter::guest::{AdapterInfo, BroadcastOpts, Guest, InitArgs};
use wasio::adapter::requests::{self, Answer};
use wasio::adapter::types::Error;

struct Faulty;

/// With options `{"mute": true}` the guest never finishes a cluster request, to show
/// the host ending it at its own deadline.
static MUTE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn finish(id: u64) {
    if !MUTE.load(std::sync::atomic::Ordering::Relaxed) {
        requests::finish(id, Ok(()));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the sandbox let the guest see: tests assert it is nothing.
fn probe() -> String {
    let fs_root = std::fs::read_dir("/")
        .map(|d| d.count())
        .map_err(|e| e.kind());
    let fs_cwd = std::fs::read_dir(".")
        .map(|d| d.count())
        .map_err(|e| e.kind());
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let net = std::net::TcpStream::connect("127.0.0.1:6379")
        .map(|_| ())
        .map_err(|e| e.kind());
    format!("fs_root={fs_root:?} fs_cwd={fs_cwd:?} env={env} args={args} net={net:?}")
}

fn misbehave_on(packet: &[u8]) -> Result<(), Error> {
    if contains(packet, b"__probe__") {
        return Err(Error::Other(probe()));
    }
    if contains(packet, b"__trap__") {
        panic!("faulty guest: trap requested");
    }
    if contains(packet, b"__loop__") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if contains(packet, b"__grow__") {
        let mut hog: Vec<Vec<u8>> = Vec::new();
        loop {
            hog.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hog);
        }
    }
    Ok(())
}

impl Guest for Faulty {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        MUTE.store(
            args.options.contains("\"mute\":true"),
            std::sync::atomic::Ordering::Relaxed,
        );
        if args.options.contains("\"fail_init\":true") {
            return Err(Error::Invalid(
                "faulty guest: init refused on purpose".into(),
            ));
        }
        Ok(AdapterInfo {
            name: "faulty".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    fn open(_nsp: String) -> Result<(), Error> {
        Ok(())
    }
    fn close() -> Result<(), Error> {
        Ok(())
    }
    fn broadcast(_nsp: String, packet: Vec<u8>, _opts: BroadcastOpts) -> Result<(), Error> {
        misbehave_on(&packet)
    }
    fn broadcast_with_ack(
        _: String,
        id: u64,
        packet: Vec<u8>,
        _: BroadcastOpts,
        _: u32,
    ) -> Result<(), Error> {
        misbehave_on(&packet)?;
        finish(id);
        Ok(())
    }
    fn add_sockets(_: String, _: BroadcastOpts, _: Vec<String>) -> Result<(), Error> {
        Ok(())
    }
    fn del_sockets(_: String, _: BroadcastOpts, _: Vec<String>) -> Result<(), Error> {
        Ok(())
    }
    fn disconnect_sockets(_: String, _: BroadcastOpts, _: bool) -> Result<(), Error> {
        Ok(())
    }
    fn fetch_sockets(_: String, id: u64, _: BroadcastOpts) -> Result<(), Error> {
        finish(id);
        Ok(())
    }
    fn all_rooms(_: String, id: u64, _: BroadcastOpts) -> Result<(), Error> {
        finish(id);
        Ok(())
    }
    fn server_count(_: String, id: u64) -> Result<(), Error> {
        requests::reply(id, &Answer::ServerCount(1));
        finish(id);
        Ok(())
    }
    fn server_side_emit(_: String, id: Option<u64>, _: Vec<u8>) -> Result<(), Error> {
        if let Some(id) = id {
            finish(id);
        }
        Ok(())
    }
    fn on_message(_: String, _: Option<String>, _: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
    fn on_document(_: String, _: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
    fn on_timer(_: u64) {}
    fn on_counts(_: u64, _: Result<Vec<u64>, Error>) {}
    fn on_local_ack(_: u64, _: Option<Vec<u8>>) {}
    fn on_server_side_ack(_: u64, _: Vec<u8>) {}
    fn on_connection(_: bool) {}
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
}

export!(Faulty);
