//! Your own socketioxide app with wasio's wasm adapter: a chat where every message is
//! relayed through the adapter (here the built-in `local` one; point
//! `AdapterOptions::source` at any adapter `.wasm`).
//!
//! Run: `cargo run -p wasio --example chat`, then connect a socket.io client to
//! http://127.0.0.1:3000 and emit `say` with a string.

use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use wasio::{Adapter, WasmAdapter};

type Chat = WasmAdapter<socketioxide::adapter::Emitter>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let adapter = Adapter::builtin_local().await?;
    let (layer, io) = SocketIo::builder()
        .with_config(adapter.socket_io_config())
        .with_adapter::<Chat>(adapter.clone())
        .build_layer();
    io.ns("/", async |socket: SocketRef<Chat>| {
        socket.join("chat");
        socket.on(
            "say",
            async |socket: SocketRef<Chat>, Data(text): Data<String>| {
                // Delivered here and, through the adapter, on every other node.
                let _ = socket.within("chat").emit("said", &text).await;
            },
        );
    })
    .await?;

    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "chat on http://{} (adapter {})",
        listener.local_addr()?,
        adapter.status().current.name
    );
    axum::serve(listener, app).await?;
    Ok(())
}
