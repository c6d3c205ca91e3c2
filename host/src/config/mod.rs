//! `wasio.toml`: every key optional, unknown keys refused, environment variables
//! (`WASIO_SERVER__PORT=4000`) override the file. Errors are one line naming the file,
//! the key and the cause.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod auth;
mod options;

pub use auth::{ApiKey, AuthConfig, JwtAlgorithm, JwtConfig, SocketLimits, TlsConfig};
pub use options::{AdapterOptions, Capability, DatasourceSpec, Limits, WasmSource};

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[adapter]`.
    pub adapter: AdapterConfig,
    /// `[datasources.NAME]`.
    pub datasources: BTreeMap<String, Datasource>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
}

/// `[server]`: where and how clients connect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (default `0.0.0.0`).
    pub host: IpAddr,
    /// Port to listen on (default 3000; 0 picks a free one).
    pub port: u16,
    /// Origins allowed by CORS: `["*"]` for any; empty (default) for same-origin only.
    pub cors: Vec<String>,
    /// Namespaces served (default `["/"]`). A pattern such as `"/{*rest}"` accepts
    /// any namespace under it, created on first use.
    pub namespaces: Vec<String>,
    /// Packets buffered per client before sends to it fail (default 4096).
    pub max_buffer_size: usize,
    /// Largest HTTP long-polling payload in bytes (default 1 MB, as Node.js socket.io).
    pub max_payload: u64,
    /// Engine.IO's ping interval, in ms (default 25000, socket.io's `pingInterval`).
    pub ping_interval_ms: u64,
    /// How long a client may take to answer a ping, in ms (default 20000, `pingTimeout`).
    pub ping_timeout_ms: u64,
    /// How long a new connection may take to join a namespace, in ms (default 45000,
    /// `connectTimeout`).
    pub connect_timeout_ms: u64,
    /// The HTTP path clients connect on (default `/socket.io/`, socket.io's `path`).
    pub path: String,
    /// The transports accepted (default `["polling", "websocket"]`).
    pub transports: Vec<Transport>,
    /// How long a graceful shutdown (SIGTERM, Ctrl-C) may take before the process exits anyway, in ms (default 10000).
    pub shutdown_timeout_ms: u64,
    /// The key of the HTTP publish API (`POST /api/publish`), good for any namespace and
    /// room; without it or `api_keys` the API is off.
    pub api_key: Option<String>,
    /// `[[server.api_keys]]`: publish API keys limited to some namespaces and rooms.
    pub api_keys: Vec<ApiKey>,
    /// `[server.limits]`: what one connection may cost.
    pub limits: SocketLimits,
    /// `[server.tls]`: serve https/wss on the client port.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            cors: Vec::new(),
            namespaces: vec!["/".into()],
            max_buffer_size: 4096,
            max_payload: 1_000_000,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            connect_timeout_ms: 45_000,
            path: "/socket.io/".into(),
            transports: vec![Transport::Polling, Transport::Websocket],
            shutdown_timeout_ms: 10_000,
            api_key: None,
            api_keys: Vec::new(),
            limits: SocketLimits::default(),
            tls: None,
        }
    }
}

/// An Engine.IO transport, as `server.transports` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    Websocket,
}

/// `[adapter]`: which component runs the cluster logic, on which datasource.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterConfig {
    /// A `.wasm` path (relative to the config file) or `builtin:NAME`.
    pub wasm: String,
    /// The name of a `[datasources.NAME]` entry, if the adapter needs one.
    pub datasource: Option<String>,
    /// Passed to the guest's `init` as JSON.
    pub options: toml::Table,
    /// How long cluster requests wait for other nodes, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            wasm: "builtin:local".into(),
            datasource: None,
            options: toml::Table::new(),
            request_timeout_ms: 5000,
        }
    }
}

/// `[datasources.NAME]`: a backend the host connects to on the guest's behalf.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasource {
    pub connector: Connector,
    pub url: String,
    /// Publishes that may wait while the backend is unreachable (default 10000);
    /// beyond that the guest's publish fails with an error it sees.
    #[serde(default = "default_publish_buffer")]
    pub publish_buffer: usize,
}

fn default_publish_buffer() -> usize {
    10_000
}

/// The kinds of backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connector {
    /// Redis pub/sub (`redis://`, `rediss://`).
    Redis,
    /// A MongoDB collection (`mongodb://`).
    Mongodb,
    /// NATS core pub/sub (`nats://`, `tls://`).
    Nats,
    /// PostgreSQL LISTEN/NOTIFY (`postgres://`, `postgresql://`).
    Postgres,
    /// The in-process bus (`memory://NAME`): nodes of one process only.
    Memory,
}

impl Connector {
    /// The capability a guest on this kind of backend is granted.
    pub fn capability(self) -> Capability {
        match self {
            Connector::Redis | Connector::Nats | Connector::Memory => Capability::PubSub,
            Connector::Mongodb => Capability::DocStore,
            Connector::Postgres => Capability::Notify,
        }
    }
}

/// `[limits]`: what one guest instance may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Wall-clock budget of one guest call, in milliseconds (default 100).
    pub deadline_ms: u64,
    /// Memory cap per guest instance, in MiB (default 64).
    pub memory_mib: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            deadline_ms: 100,
            memory_mib: 64,
        }
    }
}

/// `[admin]`: the admin API (hot swap, status). Off unless a token is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (default `127.0.0.1:3001`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The bearer token every admin request must carry; without one the API is off.
    pub token: Option<String>,
    /// How often the admin page's connection history is sampled (default 5000 ms).
    pub history_interval_ms: u64,
    /// `[admin.tls]`: serve the admin API over https.
    pub tls: Option<TlsConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            token: None,
            history_interval_ms: 5000,
            tls: None,
        }
    }
}

/// A config that could not be used: one line, file first.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `path` (or only defaults when `None`) and applies `WASIO_*` overrides
    /// from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let label = path.map_or_else(
            || "(no config file)".to_string(),
            |p| p.display().to_string(),
        );
        let mut table = match path {
            None => toml::Table::new(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("{label}: cannot read: {e}")))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(syntax_error(&label, &text, &e)))?
            }
        };
        apply_env(&mut table, env).map_err(|e| ConfigError(format!("{label}: {e}")))?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let cause = e.into_inner().message().to_string();
                if key == "." || key.is_empty() {
                    ConfigError(format!("{label}: {cause}"))
                } else {
                    ConfigError(format!("{label}: key `{key}`: {cause}"))
                }
            })?;
        config.validate(&label)?;
        config.adapter.wasm = resolve_wasm(path, &config.adapter.wasm);
        config.resolve_files(path);
        Ok(config)
    }

    /// Makes the auth and TLS file paths relative to the config file's directory.
    fn resolve_files(&mut self, path: Option<&Path>) {
        let Some(dir) = path
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
        else {
            return;
        };
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(jwt) = &mut self.auth.jwt {
            jwt.public_key.as_mut().map(fix);
            jwt.jwks.as_mut().map(fix);
        }
        for tls in [&mut self.server.tls, &mut self.admin.tls]
            .into_iter()
            .flatten()
        {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        if let Some(policy) = &mut self.auth.policy {
            *policy = resolve_wasm(path, policy);
        }
    }

    fn validate(&self, label: &str) -> Result<(), ConfigError> {
        let err =
            |key: &str, cause: String| Err(ConfigError(format!("{label}: key `{key}`: {cause}")));
        if let Some(bad) = self.server.namespaces.iter().find(|n| !n.starts_with('/')) {
            return err("server.namespaces", format!("`{bad}` must start with `/`"));
        }
        if self.server.max_buffer_size == 0 {
            return err("server.max_buffer_size", "must be at least 1".into());
        }
        for (key, ms) in [
            ("server.ping_interval_ms", self.server.ping_interval_ms),
            ("server.ping_timeout_ms", self.server.ping_timeout_ms),
            ("server.connect_timeout_ms", self.server.connect_timeout_ms),
        ] {
            if ms == 0 {
                return err(key, "must be at least 1".into());
            }
        }
        if !self.server.path.starts_with('/') {
            return err(
                "server.path",
                format!("`{}` must start with `/`", self.server.path),
            );
        }
        let t = &self.server.transports;
        if t.is_empty() || (t.len() == 2 && t[0] == t[1]) || t.len() > 2 {
            return err(
                "server.transports",
                "must name \"polling\", \"websocket\" or both, once each".into(),
            );
        }
        if self.adapter.wasm.trim().is_empty() {
            return err(
                "adapter.wasm",
                "must be a path to a .wasm or builtin:NAME".into(),
            );
        }
        if let Some(ds) = &self.adapter.datasource
            && !self.datasources.contains_key(ds)
        {
            return err(
                "adapter.datasource",
                format!(
                    "no [datasources.{ds}] defined (defined: {})",
                    self.datasource_names()
                ),
            );
        }
        for (name, ds) in &self.datasources {
            let schemes: &[&str] = match ds.connector {
                Connector::Redis => &[
                    "redis://",
                    "rediss://",
                    "redis-cluster://",
                    "redis-sentinel://",
                ],
                Connector::Mongodb => &["mongodb://", "mongodb+srv://"],
                Connector::Nats => &["nats://", "tls://"],
                Connector::Postgres => &["postgres://", "postgresql://"],
                Connector::Memory => &["memory://"],
            };
            if !schemes.iter().any(|s| ds.url.starts_with(s)) {
                return err(
                    &format!("datasources.{name}.url"),
                    format!("must start with {}", schemes.join(" or ")),
                );
            }
        }
        if self.limits.deadline_ms == 0 {
            return err("limits.deadline_ms", "must be at least 1".into());
        }
        if self.limits.memory_mib == 0 || self.limits.memory_mib > 4096 {
            return err("limits.memory_mib", "must be between 1 and 4096".into());
        }
        if self.adapter.request_timeout_ms == 0 {
            return err("adapter.request_timeout_ms", "must be at least 1".into());
        }
        if self.admin.history_interval_ms < 100 {
            return err("admin.history_interval_ms", "must be at least 100".into());
        }
        if let Some(jwt) = &self.auth.jwt {
            if jwt.algorithms.is_empty() {
                return err(
                    "auth.jwt.algorithms",
                    "name at least one of HS256, RS256, ES256".into(),
                );
            }
            let hs = jwt.algorithms.contains(&JwtAlgorithm::HS256);
            if hs && jwt.secret.as_deref().is_none_or(|s| s.len() < 16) {
                return err(
                    "auth.jwt.secret",
                    "HS256 needs a secret of at least 16 bytes".into(),
                );
            }
            let asym = jwt.algorithms.iter().any(|a| *a != JwtAlgorithm::HS256);
            if asym && jwt.public_key.is_none() && jwt.jwks.is_none() {
                return err(
                    "auth.jwt",
                    "RS256 and ES256 need `public_key` (a PEM file) or `jwks` (a JWKS file)".into(),
                );
            }
            if jwt.claim.is_empty() {
                return err("auth.jwt.claim", "must not be empty".into());
            }
        }
        if let Some(policy) = &self.auth.policy
            && policy.trim().is_empty()
        {
            return err(
                "auth.policy",
                "must be a path to a .wasm or builtin:NAME".into(),
            );
        }
        for (i, k) in self.server.api_keys.iter().enumerate() {
            if k.key.trim().is_empty() {
                return err(
                    &format!("server.api_keys[{i}].key"),
                    "must not be empty".into(),
                );
            }
        }
        let l = &self.server.limits;
        for (key, v) in [
            ("rooms_per_socket", l.rooms_per_socket),
            ("rooms_per_join", l.rooms_per_join),
            ("room_name_bytes", l.room_name_bytes),
            ("max_publish_bytes", l.max_publish_bytes),
        ] {
            if v == 0 {
                return err(&format!("server.limits.{key}"), "must be at least 1".into());
            }
        }
        // An empty secret would let anyone who can reach the port in: publish to every
        // client (`server.api_key`), swap the adapter (`admin.token`).
        let secrets = [
            ("server.api_key", &self.server.api_key, "publish API"),
            ("admin.token", &self.admin.token, "admin API"),
        ];
        for (key, secret, api) in secrets {
            if secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return err(
                    key,
                    format!("must not be empty (leave it out to turn the {api} off)"),
                );
            }
        }
        Ok(())
    }

    /// The datasource the adapter uses, if any.
    pub fn datasource(&self) -> Option<(&str, &Datasource)> {
        let name = self.adapter.datasource.as_deref()?;
        self.datasources
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// How to load the adapter this config names.
    pub fn adapter_options(&self) -> AdapterOptions {
        let datasource = self.datasource().map(|(name, _)| name);
        // `datasource()` only names defined datasources, and the table's options are an
        // object: nothing here can fail.
        self.adapter_options_for(&self.adapter.wasm, datasource, None)
            .expect("a defined datasource and an options table")
    }

    /// How to load `wasm` (a path or `builtin:NAME`) on the datasource named `datasource`
    /// (one of this config's `[datasources]`) with `options` (the guest's `init` options;
    /// `None` takes `[adapter.options]`), with this config's limits and timeouts. A
    /// relative path is taken as given: callers resolve it against the config file.
    pub fn adapter_options_for(
        &self,
        wasm: &str,
        datasource: Option<&str>,
        options: Option<serde_json::Value>,
    ) -> Result<AdapterOptions, ConfigError> {
        let datasource = match datasource {
            None => None,
            Some(name) => Some(self.datasources.get_key_value(name).ok_or_else(|| {
                ConfigError(format!(
                    "no [datasources.{name}] in this node's config (defined: {})",
                    self.datasource_names()
                ))
            })?),
        };
        let granted = match datasource {
            Some((_, ds)) => vec![ds.connector.capability()],
            None => vec![],
        };
        let datasource = datasource.map(|(name, ds)| DatasourceSpec {
            name: name.to_string(),
            connector: ds.connector,
            url: ds.url.clone(),
            publish_buffer: ds.publish_buffer,
        });
        let options = match options {
            Some(o) if o.is_object() => o,
            Some(_) => return Err(ConfigError("adapter options must be a JSON object".into())),
            None => serde_json::to_value(&self.adapter.options).unwrap_or_default(),
        };
        // The host's bound on a request never cuts the guest's own timeout short.
        let guest_timeout = options
            .get("requestsTimeout")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(AdapterOptions {
            source: WasmSource::parse(wasm),
            datasource,
            options,
            limits: Limits {
                deadline: Duration::from_millis(self.limits.deadline_ms),
                memory_bytes: (self.limits.memory_mib as usize) << 20,
            },
            request_timeout: Duration::from_millis(
                self.adapter.request_timeout_ms.max(guest_timeout),
            ),
            granted,
        })
    }

    fn datasource_names(&self) -> String {
        if self.datasources.is_empty() {
            "none".into()
        } else {
            let names: Vec<&str> = self.datasources.keys().map(String::as_str).collect();
            names.join(", ")
        }
    }

    /// The `.wasm` file, when the adapter is not a built-in.
    pub fn wasm_path(&self) -> Option<PathBuf> {
        match WasmSource::parse(&self.adapter.wasm) {
            WasmSource::File(p) => Some(p),
            WasmSource::Builtin(_) | WasmSource::Bytes { .. } => None,
        }
    }
}

/// `wasm` (a path or `builtin:NAME`) with a relative path taken as relative to the
/// directory of the config file `config_path`, as paths in the file are.
pub fn resolve_wasm(config_path: Option<&Path>, wasm: &str) -> String {
    match (config_path.and_then(Path::parent), WasmSource::parse(wasm)) {
        (Some(dir), WasmSource::File(p)) if p.is_relative() && !dir.as_os_str().is_empty() => {
            dir.join(p).display().to_string()
        }
        _ => wasm.to_string(),
    }
}

fn syntax_error(label: &str, text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{label}: line {line}: {}", e.message())
        }
        None => format!("{label}: {}", e.message()),
    }
}

/// `WASIO_SERVER__PORT=4000` sets `server.port`; values parse as TOML (numbers,
/// booleans, arrays) and fall back to strings.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    for (key, raw) in env {
        let Some(path) = key.strip_prefix("WASIO_") else {
            continue;
        };
        if !path.contains("__") {
            continue; // WASIO_CONFIG and friends are not keys
        }
        let segments: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("environment variable {key}: empty key segment"));
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let (last, parents) = segments.split_last().expect("at least two segments");
        let mut cur = &mut *table;
        for seg in parents {
            let entry = cur
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry
                .as_table_mut()
                .ok_or_else(|| format!("environment variable {key}: `{seg}` is not a table"))?;
        }
        cur.insert(last.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasio.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.server.port, 3000);
        assert_eq!(c.adapter.wasm, "builtin:local");
        assert_eq!(c.limits.deadline_ms, 100);
        assert_eq!(c.limits.memory_mib, 64);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = load("[server]\nprot = 1\n", &[]).unwrap_err().0;
        assert!(e.contains("wasio.toml"), "{e}");
        assert!(e.contains("prot"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = load("[server]\nport = \"abc\"\n", &[]).unwrap_err().0;
        assert!(e.contains("server.port"), "{e}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = load("[server]\nport = = 3\n", &[]).unwrap_err().0;
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "[server]\nport = 1\n",
            &[
                ("WASIO_SERVER__PORT", "4000"),
                ("WASIO_ADAPTER__OPTIONS__KEY", "io"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.port, 4000);
        assert_eq!(c.adapter.options["key"].as_str(), Some("io"));
    }

    #[test]
    fn env_unknown_key_is_refused_too() {
        let e = load("", &[("WASIO_SERVER__PROT", "1")]).unwrap_err().0;
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn undefined_datasource_is_refused() {
        let e = load("[adapter]\ndatasource = \"cache\"\n", &[])
            .unwrap_err()
            .0;
        assert!(
            e.contains("adapter.datasource") && e.contains("cache"),
            "{e}"
        );
    }

    #[test]
    fn datasource_url_scheme_is_checked() {
        let e = load(
            "[datasources.c]\nconnector = \"redis\"\nurl = \"http://x\"\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert!(e.contains("datasources.c.url"), "{e}");
        let e = load("[datasources.c]\nconnector = \"kafka\"\nurl = \"x\"\n", &[])
            .unwrap_err()
            .0;
        assert!(e.contains("datasources.c.connector"), "{e}");
    }

    #[test]
    fn engine_settings_default_to_socket_io_s_and_are_checked() {
        let c = load("", &[]).unwrap();
        assert_eq!(
            (
                c.server.ping_interval_ms,
                c.server.ping_timeout_ms,
                c.server.connect_timeout_ms
            ),
            (25_000, 20_000, 45_000)
        );
        assert_eq!(c.server.path, "/socket.io/");
        assert_eq!(
            c.server.transports,
            vec![Transport::Polling, Transport::Websocket]
        );
        let c = load(
            "[server]
transports = [\"websocket\"]
",
            &[],
        )
        .unwrap();
        assert_eq!(c.server.transports, vec![Transport::Websocket]);
        for (toml, key) in [
            ("ping_interval_ms = 0", "server.ping_interval_ms"),
            ("connect_timeout_ms = 0", "server.connect_timeout_ms"),
            ("path = \"io\"", "server.path"),
            ("transports = []", "server.transports"),
            (
                "transports = [\"polling\", \"polling\"]",
                "server.transports",
            ),
            ("transports = [\"flash\"]", "server.transports"),
        ] {
            let e = load(&format!("[server]\n{toml}\n"), &[]).unwrap_err().0;
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn admin_is_off_without_a_token_and_env_sets_one() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.admin.token, None);
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:3001");
        let c = load(
            "[admin]\nlisten = \"127.0.0.1:0\"\n",
            &[("WASIO_ADMIN__TOKEN", "s3cret")],
        )
        .unwrap();
        assert_eq!(c.admin.token.as_deref(), Some("s3cret"));
        assert_eq!(c.admin.listen.port(), 0);
    }

    #[test]
    fn publish_key_and_history_interval() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.server.api_key, None, "the publish API is off by default");
        assert_eq!(c.admin.history_interval_ms, 5000);
        let c = load("", &[("WASIO_SERVER__API_KEY", "k1")]).unwrap();
        assert_eq!(c.server.api_key.as_deref(), Some("k1"));
        let e = load("[server]\napi_key = \" \"\n", &[]).unwrap_err().0;
        assert!(e.contains("server.api_key"), "{e}");
        let e = load("[admin]\nhistory_interval_ms = 10\n", &[])
            .unwrap_err()
            .0;
        assert!(e.contains("admin.history_interval_ms"), "{e}");
    }

    #[test]
    fn admin_unknown_key_and_empty_token_are_refused() {
        let e = load("[admin]\ntokn = \"x\"\n", &[]).unwrap_err().0;
        assert!(e.contains("tokn"), "{e}");
        let e = load("[admin]\ntoken = \"\"\n", &[]).unwrap_err().0;
        assert!(e.contains("admin.token"), "{e}");
    }

    #[test]
    fn adapter_options_for_names_an_unknown_datasource() {
        let c = load(
            "[datasources.cache]\nconnector = \"redis\"\nurl = \"redis://x\"\n",
            &[],
        )
        .unwrap();
        let e = c
            .adapter_options_for("builtin:redis", Some("nope"), None)
            .unwrap_err()
            .0;
        assert!(e.contains("nope") && e.contains("cache"), "{e}");
        let o = c
            .adapter_options_for("builtin:redis", Some("cache"), None)
            .unwrap();
        assert_eq!(o.granted, vec![Capability::PubSub]);
        assert!(
            c.adapter_options_for("builtin:local", None, Some(serde_json::json!(1)))
                .is_err()
        );
    }

    #[test]
    fn relative_wasm_path_is_relative_to_the_file() {
        let c = load("[adapter]\nwasm = \"a/b.wasm\"\n", &[]).unwrap();
        assert!(
            c.adapter.wasm.ends_with("a/b.wasm") && Path::new(&c.adapter.wasm).is_absolute(),
            "{}",
            c.adapter.wasm
        );
    }
}
