//! `[auth]`, `[server.limits]`, `[[server.api_keys]]` and the TLS tables: who may
//! connect, join and publish, what one socket may cost, and the certificates.

use std::path::PathBuf;

use serde::Deserialize;

/// `[auth]`: off (an open relay) unless `jwt` or `policy` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `[auth.jwt]`: a signed token on connect, whose claims say what the socket may do.
    pub jwt: Option<JwtConfig>,
    /// A policy component (`.wasm` path relative to the config file, or `builtin:NAME`)
    /// asked on every connect, join and publish.
    pub policy: Option<String>,
    /// Passed to the policy's `init` as JSON.
    pub policy_options: toml::Table,
}

impl AuthConfig {
    /// The mode in one word, for the start-up line and `--check`.
    pub fn mode(&self) -> &'static str {
        match (&self.jwt, &self.policy) {
            (None, None) => "open",
            (Some(_), None) => "jwt",
            (None, Some(_)) => "policy",
            (Some(_), Some(_)) => "jwt+policy",
        }
    }
}

/// Signature algorithms accepted for connection tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared `secret`.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256 and a `public_key` PEM or a JWKS.
    RS256,
    /// ECDSA P-256 with SHA-256 and a `public_key` PEM or a JWKS.
    ES256,
}

/// `[auth.jwt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Algorithms a token may be signed with (default `["HS256"]`).
    pub algorithms: Vec<JwtAlgorithm>,
    /// The HS256 secret.
    pub secret: Option<String>,
    /// A PEM public key file (RS256 or ES256), relative to the config file.
    pub public_key: Option<PathBuf>,
    /// A JWKS file (keys picked by `kid`), relative to the config file; re-read on SIGHUP.
    pub jwks: Option<PathBuf>,
    /// The `iss` a token must carry, when set.
    pub issuer: Option<String>,
    /// One of the `aud` a token must carry, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 0).
    pub leeway_s: u64,
    /// The claim holding the socket's rights (default `wasio`):
    /// `{"namespaces": [...], "join": [...], "publish": [...]}`, each a list of exact
    /// names or glob patterns.
    pub claim: String,
    /// Claims copied into the socket's `data` (seen by `fetchSockets`), e.g. `["sub"]`.
    pub data_claims: Vec<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithms: vec![JwtAlgorithm::HS256],
            secret: None,
            public_key: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway_s: 0,
            claim: "wasio".into(),
            data_claims: Vec::new(),
        }
    }
}

/// `[server.limits]`: what one connection may cost. Every default is a bound, auth on or off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketLimits {
    /// `publish` events per second per socket, with bursts of as many (default 100; 0: no limit).
    pub publishes_per_second: u32,
    /// Rooms one socket may be in, its own id's room not counted (default 1000).
    pub rooms_per_socket: usize,
    /// Room names in one `join` or `leave` (default 100).
    pub rooms_per_join: usize,
    /// Longest room name in bytes (default 256).
    pub room_name_bytes: usize,
    /// Largest `publish` (the whole event as received) in bytes (default 1 MB, as socket.io).
    pub max_publish_bytes: usize,
    /// Over a limit, disconnect the socket after the error ack (default false).
    pub disconnect: bool,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            publishes_per_second: 100,
            rooms_per_socket: 1000,
            rooms_per_join: 100,
            room_name_bytes: 256,
            // socket.io's own default bound on one message (maxHttpBufferSize).
            max_publish_bytes: 1_000_000,
            disconnect: false,
        }
    }
}

/// `[[server.api_keys]]`: a publish API key limited to some namespaces and rooms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The bearer key.
    pub key: String,
    /// Namespaces it may publish in (exact or glob; default `["*"]`: any).
    #[serde(default = "any")]
    pub namespaces: Vec<String>,
    /// Rooms it may publish to (exact or glob). A publish to a whole namespace (no
    /// `room`) needs `"*"` here. Default: none.
    #[serde(default)]
    pub rooms: Vec<String>,
}

fn any() -> Vec<String> {
    vec!["*".into()]
}

/// `[server.tls]` / `[admin.tls]`: PEM files (relative to the config file), re-read on SIGHUP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}
