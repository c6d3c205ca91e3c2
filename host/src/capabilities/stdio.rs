//! A guest's stdout and stderr (a panic message, a Python traceback, a `print`) go to
//! the host's log, one line per event, tagged with the adapter — never to the host's
//! own streams.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::NodeState;

/// Longest line kept before it is logged as is.
const MAX_LINE: usize = 16 * 1024;

/// One of the guest's output streams.
#[derive(Clone)]
pub(super) struct GuestOutput {
    node: Arc<NodeState>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    pub fn new(node: Arc<NodeState>, stream: &'static str) -> GuestOutput {
        GuestOutput {
            node,
            stream,
            pending: Arc::default(),
        }
    }

    fn log(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            return;
        }
        self.node.output.push(&text);
        let adapter = self.node.adapter_name();
        tracing::warn!(target: "wasio::guest", %adapter, stream = self.stream, "{}", text.trim_end());
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut pending = self.pending.lock().unwrap();
        pending.extend_from_slice(buf);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.log(&line);
        }
        if pending.len() > MAX_LINE {
            let line = std::mem::take(&mut *pending);
            self.log(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let line = std::mem::take(&mut *self.pending.lock().unwrap());
        if !line.is_empty() {
            self.log(&line);
        }
        Poll::Ready(Ok(()))
    }
}
