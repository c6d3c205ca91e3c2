//! What the config file becomes: how to load one adapter ([`AdapterOptions`]), as plain
//! data every layer above reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Connector;

/// Where an adapter component comes from.
#[derive(Clone, Debug)]
pub enum WasmSource {
    /// One embedded in this binary (`builtin:local`).
    Builtin(String),
    /// A `.wasm` file.
    File(PathBuf),
    /// A component's bytes (an upload), with a label for messages (`upload:NAME`).
    Bytes {
        /// How messages name it (`upload:NAME`).
        label: String,
        /// The component.
        bytes: Arc<Vec<u8>>,
    },
}

impl WasmSource {
    /// Parses the config form: `builtin:NAME` or a path.
    pub fn parse(s: &str) -> WasmSource {
        match s.strip_prefix("builtin:") {
            Some(name) => WasmSource::Builtin(name.to_string()),
            None => WasmSource::File(PathBuf::from(s)),
        }
    }

    /// How messages, `/healthz` and the admin API name it: `builtin:NAME`, the path, or
    /// `upload:NAME`.
    pub fn label(&self) -> String {
        match self {
            WasmSource::Builtin(name) => format!("builtin:{name}"),
            WasmSource::File(path) => path.display().to_string(),
            WasmSource::Bytes { label, .. } => label.clone(),
        }
    }
}

/// How to load an adapter.
#[derive(Clone, Debug)]
pub struct AdapterOptions {
    /// The component.
    pub source: WasmSource,
    /// The `[adapter.options]` table, handed to the guest's `init` as JSON.
    pub options: serde_json::Value,
    /// What each instance may use.
    pub limits: Limits,
    /// How long the guest is given to answer a cluster request (its own timeout);
    /// the host ends the request a grace period after that in any case.
    pub request_timeout: Duration,
    /// Capabilities the config grants beyond the always-granted ones.
    pub granted: Vec<Capability>,
    /// The backend the host connects to for the guest, if any.
    pub datasource: Option<DatasourceSpec>,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            source: WasmSource::Builtin("local".into()),
            options: serde_json::json!({}),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(5),
            granted: Vec::new(),
            datasource: None,
        }
    }
}

/// Per-instance limits, set on every store.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock budget of one guest call; a guest still running then is stopped.
    pub deadline: Duration,
    /// Linear-memory cap per instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
        }
    }
}

/// A host capability a guest may import beyond the always-granted ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `wasio:adapter/pubsub`: a pub/sub datasource (Redis, the in-memory bus).
    PubSub,
    /// `wasio:adapter/docstore`: a MongoDB datasource.
    DocStore,
    /// `wasio:adapter/notify`: a PostgreSQL datasource.
    Notify,
}

/// A configured backend, as the adapter is given it.
#[derive(Clone, Debug)]
pub struct DatasourceSpec {
    /// The key of `[datasources.NAME]`, for messages.
    pub name: String,
    /// Which kind of backend.
    pub connector: Connector,
    /// Where it is.
    pub url: String,
    /// How many publishes may wait while the backend is unreachable.
    pub publish_buffer: usize,
}

impl DatasourceSpec {
    /// The URL without its password, for logs and `/healthz`.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// `datasource `NAME` (URL)`, how messages name it.
    pub fn label(&self) -> String {
        format!("datasource `{}` ({})", self.name, self.redacted_url())
    }
}

fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("redis://user:secret@h:6379/2"),
            "redis://user:***@h:6379/2"
        );
        assert_eq!(super::redact("rediss://:pw@h"), "rediss://:***@h");
        assert_eq!(super::redact("redis://h:6379"), "redis://h:6379");
    }
}
