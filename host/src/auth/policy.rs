//! The policy component: a WebAssembly component of the `wasio:policy` world
//! (`wit/policy/policy.wit`), asked on every connect, join and publish, under the adapters'
//! sandbox (deadline, memory cap, compile cache), and hot-swapped like them.
//!
//! SKELETON: the signatures the gate calls. The implementation replaces the bodies.

use serde_json::Value as Json;

use crate::config::{Limits, WasmSource};

/// What the policy answered (or what a failed call counts as: a denial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refused, with the reason the client is told.
    Deny(String),
}

/// A connecting client, as the policy sees it.
pub struct ConnectRequest<'a> {
    /// The namespace it connects to.
    pub namespace: &'a str,
    /// The handshake's `auth` object.
    pub auth: &'a Json,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The request's query string.
    pub query: &'a str,
    /// The claims of its verified token, when `[auth.jwt]` is on.
    pub claims: Option<&'a Json>,
}

/// A connected socket, as the policy sees it.
pub struct SocketView<'a> {
    /// The socket's id.
    pub id: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The claims of its token, when `[auth.jwt]` is on.
    pub claims: Option<&'a Json>,
}

/// The running policy component, if any: shared by every socket, swapped in place.
pub struct Policy {}

/// What runs, for `/healthz`, `--check` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyStatus {
    /// The component's source label (path, `builtin:NAME`, `upload:NAME`).
    pub source: String,
    /// Its sha256.
    pub sha256: String,
    /// Calls that trapped, ran out of time or memory (each counted as a denial).
    pub faults: u64,
}

impl Policy {
    /// Compiles and instantiates `source`, calls its `init` with `options`.
    pub async fn load(
        _source: WasmSource,
        _options: Json,
        _limits: Limits,
    ) -> anyhow::Result<Policy> {
        anyhow::bail!("policy components are not built yet")
    }

    /// Asked once per connecting socket (after the token check).
    pub async fn connect(&self, _req: &ConnectRequest<'_>) -> Verdict {
        Verdict::Deny("no policy".into())
    }

    /// Asked once per `join`, with all its rooms: all or none are joined.
    pub async fn join(&self, _socket: &SocketView<'_>, _rooms: &[String]) -> Verdict {
        Verdict::Deny("no policy".into())
    }

    /// Asked once per `publish`: `rooms` `None` is the whole namespace; `bytes` its size.
    pub async fn publish(
        &self,
        _socket: &SocketView<'_>,
        _rooms: Option<&[String]>,
        _event: &str,
        _bytes: usize,
    ) -> Verdict {
        Verdict::Deny("no policy".into())
    }

    /// Replaces the running component; on error the old one keeps answering.
    pub async fn swap(&self, _source: WasmSource, _options: Json) -> anyhow::Result<PolicyStatus> {
        anyhow::bail!("policy components are not built yet")
    }

    /// What runs now.
    pub fn status(&self) -> PolicyStatus {
        PolicyStatus {
            source: String::new(),
            sha256: String::new(),
            faults: 0,
        }
    }
}
