//! Graceful shutdown of `wasio serve`, on SIGTERM or Ctrl-C: `/healthz` turns 503 (so a
//! load balancer stops routing here), the listeners stop accepting, every client is
//! disconnected (socket.io clients reconnect, to another node behind a balancer), and
//! the adapter is closed (the guest's `close`, then its datasource link), so that other
//! nodes stop counting this one at once. The drain is bounded; a second signal ends it
//! at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socketioxide::SocketIo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::server::Ns;
use crate::cluster::Adapter;

/// The log target of the drain's steps, as operators filter and read them.
const LOG: &str = "wasio::shutdown";

/// Exit code when the drain did not finish (timeout or second signal).
const EXIT_UNFINISHED: i32 = 1;

/// Whether the node is draining; `/healthz` answers 503 once it is.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// SIGTERM and SIGINT, listened to from creation on, so that a second one is not missed.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// What a drain closes.
pub struct Node {
    pub draining: Draining,
    /// Stops the HTTP listener, the admin API and the config reloader.
    pub stop: watch::Sender<bool>,
    pub io: SocketIo<Ns>,
    pub adapter: Adapter,
    /// The bound on the whole drain.
    pub timeout: Duration,
}

/// Waits for `server` (the spawned HTTP server) to fail or for a signal, then drains
/// `node`. A drain past `node.timeout`, or a second signal, exits the process at once.
pub async fn run(
    mut server: JoinHandle<anyhow::Result<()>>,
    node: Node,
    mut signals: Signals,
) -> ExitCode {
    let signal = tokio::select! {
        res = &mut server => {
            // Not stopped by us: the server could not serve (e.g. the port is taken).
            node.adapter.close().await;
            return match res {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: the HTTP server task failed: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        signal = signals.recv() => signal,
    };
    let timeout = node.timeout;
    tracing::info!(
        target: LOG,
        signal,
        timeout_ms = timeout.as_millis() as u64,
        "shutdown: draining (a second signal exits at once)"
    );
    // Exits rather than returns: tasks stuck past the bound must not hold the runtime's
    // shutdown either.
    tokio::select! {
        () = drain(server, node) => {
            tracing::info!(target: LOG, "shutdown: done");
            ExitCode::SUCCESS
        }
        () = tokio::time::sleep(timeout) => {
            tracing::warn!(
        target: LOG,
                timeout_ms = timeout.as_millis() as u64,
                "shutdown: drain unfinished after server.shutdown_timeout_ms, exiting anyway"
            );
            std::process::exit(EXIT_UNFINISHED)
        }
        signal = signals.recv() => {
            tracing::warn!(target: LOG, signal, "shutdown: second signal, exiting without finishing the drain");
            std::process::exit(EXIT_UNFINISHED)
        }
    }
}

async fn drain(server: JoinHandle<anyhow::Result<()>>, node: Node) {
    node.draining.start();
    tracing::info!(target: LOG, "shutdown: /healthz answers 503 (draining)");
    let _ = node.stop.send(true);
    tracing::info!(target: LOG, "shutdown: listeners stop accepting connections");
    let sockets: usize = node
        .io
        .nsps()
        .into_iter()
        .map(|ns| ns.sockets().len())
        .sum();
    // Closes every engine.io transport: clients see "transport close" and reconnect.
    node.io.close().await;
    tracing::info!(target: LOG, sockets, "shutdown: client connections closed");
    // Requests in flight (a long-poll answered by the close above) end here; a stalled
    // one gets half the bound, so that leaving the cluster still fits in the rest.
    match tokio::time::timeout(node.timeout / 2, server).await {
        Ok(Ok(Ok(()))) => tracing::info!(target: LOG, "shutdown: HTTP server stopped"),
        Ok(Ok(Err(e))) => tracing::warn!(target: LOG, "shutdown: HTTP server: {e:#}"),
        Ok(Err(e)) => tracing::warn!(target: LOG, "shutdown: HTTP server task: {e}"),
        Err(_) => {
            tracing::warn!(target: LOG, "shutdown: HTTP requests still in flight, left behind")
        }
    }
    node.adapter.close().await;
    tracing::info!(target: LOG, "shutdown: adapter closed, queued messages sent (left the cluster)");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one step a test from outside cannot see: the listener closes with it.
    #[tokio::test]
    async fn healthz_answers_503_once_draining() {
        let adapter = Adapter::builtin_local().await.unwrap();
        let config = crate::config::ServerConfig {
            host: [127, 0, 0, 1].into(),
            port: 0,
            ..Default::default()
        };
        let (router, _io) = crate::serve::server::app(adapter.clone(), &config)
            .await
            .unwrap();
        let draining = Draining::default();
        let router = router.layer(axum::Extension(draining.clone()));
        let (bound_tx, bound) = tokio::sync::oneshot::channel();
        tokio::spawn(crate::serve::server::serve(
            router,
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
            move |a| {
                let _ = bound_tx.send(a);
            },
            std::future::pending(),
        ));
        let base = format!("http://{}", bound.await.unwrap());
        let get = || crate::serve::admin::call(&base, "", "GET", "/healthz", None);
        let (code, body) = get().await.unwrap();
        assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
        draining.start();
        let (code, body) = get().await.unwrap();
        assert_eq!((code, body["status"].as_str()), (503, Some("draining")));
        assert!(
            body["adapter"]["name"].is_string(),
            "the rest stays: {body}"
        );
        adapter.close().await;
    }
}
