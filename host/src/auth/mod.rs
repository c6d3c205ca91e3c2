//! Who may connect, join and publish on `wasio serve`: the token check ([`jwt`]),
//! the rights its claims grant ([`rights`]), the policy component ([`policy`]) and
//! what one connection may cost ([`limits`]). [`Gate`] asks them in that order, and
//! counts every refusal for `/metrics`.

pub mod jwt;
pub mod limits;
pub mod policy;
pub mod rights;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde_json::{Map, Value as Json};

pub use limits::{Limit, Meter, Over};
pub use policy::{ConnectRequest, Policy, PolicyStatus, SocketView, Verdict};
pub use rights::{Patterns, Rights};

use crate::config::{AuthConfig, SocketLimits};
use jwt::Verifier;

/// Where a request was refused (the `stage` label in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting to a namespace.
    Connect,
    /// A `join`.
    Join,
    /// A `publish`.
    Publish,
}

/// What refused it (the `by` label in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The token was missing or did not verify.
    Token,
    /// The token's claims do not grant it.
    Claims,
    /// The policy component denied it (or failed, which counts as a denial).
    Policy,
}

/// Refusals and limit hits since start.
#[derive(Default)]
pub struct Counters {
    denied: [[AtomicU64; 3]; 3],
    limits: [AtomicU64; 5],
}

impl Counters {
    fn deny(&self, stage: Stage, by: By) {
        self.denied[stage as usize][by as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request over `limit`.
    pub fn limit_hit(&self, limit: Limit) {
        let i = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.limits[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(stage, by, count)` for every pair.
    pub fn denied(&self) -> Vec<(&'static str, &'static str, u64)> {
        let stages = [
            (Stage::Connect, "connect"),
            (Stage::Join, "join"),
            (Stage::Publish, "publish"),
        ];
        let bys = [
            (By::Token, "token"),
            (By::Claims, "claims"),
            (By::Policy, "policy"),
        ];
        let mut out = Vec::new();
        for (s, sn) in stages {
            for (b, bn) in bys {
                out.push((
                    sn,
                    bn,
                    self.denied[s as usize][b as usize].load(Ordering::Relaxed),
                ));
            }
        }
        out
    }

    /// `(limit, hits)` for every limit.
    pub fn limits(&self) -> Vec<(&'static str, u64)> {
        Limit::ALL
            .iter()
            .zip(&self.limits)
            .map(|(l, n)| (l.name(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// What a connected socket was granted: kept in its extensions.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Its token's claims and rights, when `[auth.jwt]` is on.
    pub token: Option<jwt::Token>,
}

impl Grant {
    /// The socket's `data` as `fetchSockets` shows it: the token's data claims.
    pub fn data(&self) -> Map<String, Json> {
        self.token
            .as_ref()
            .map(|t| t.data.clone())
            .unwrap_or_default()
    }

    fn claims(&self) -> Option<&Json> {
        self.token.as_ref().map(|t| &t.claims)
    }

    /// The policy's view of the socket `id` in `namespace`.
    pub fn view<'a>(&'a self, id: &'a str, namespace: &'a str) -> SocketView<'a> {
        SocketView {
            id,
            namespace,
            claims: self.claims(),
        }
    }
}

/// The checks of one server, shared by all its sockets.
pub struct Gate {
    /// `None` with `[auth.jwt]` off; swapped whole on SIGHUP.
    jwt: ArcSwapOption<Verifier>,
    /// Asked only while a policy component runs (it can be swapped in and out).
    policy: Option<Arc<Policy>>,
    /// Replaced whole on SIGHUP; every join and publish reads the current one.
    limits: ArcSwap<SocketLimits>,
    /// Refusals and limit hits.
    pub counters: Counters,
}

/// A client's connect request, as the gate reads it.
pub struct Connecting<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The handshake's `auth` object.
    pub auth: &'a Json,
    /// The HTTP request that opened the connection.
    pub parts: &'a axum::http::request::Parts,
}

impl Gate {
    /// An open relay with `limits`: anyone may connect, join and publish.
    pub fn open(limits: SocketLimits) -> Gate {
        Gate {
            jwt: ArcSwapOption::empty(),
            policy: None,
            limits: ArcSwap::from_pointee(limits),
            counters: Counters::default(),
        }
    }

    /// The gate `auth` describes (keys read now), with `policy` loaded by the caller.
    pub fn new(
        auth: &AuthConfig,
        limits: SocketLimits,
        policy: Arc<Policy>,
    ) -> anyhow::Result<Gate> {
        let gate = Gate {
            policy: Some(policy),
            ..Gate::open(limits)
        };
        if let Some(jwt) = &auth.jwt {
            gate.jwt.store(Some(Arc::new(Verifier::from_config(jwt)?)));
        }
        Ok(gate)
    }

    /// Re-reads the token keys (SIGHUP); a config that does not load keeps the old ones.
    pub fn reload(&self, auth: &AuthConfig) -> anyhow::Result<()> {
        let next = auth.jwt.as_ref().map(Verifier::from_config).transpose()?;
        match &next {
            Some(v) => tracing::info!(jwks_keys = v.jwks_len(), "auth: token keys re-read"),
            None if self.jwt.load().is_some() => {
                tracing::warn!(
                    "auth: [auth.jwt] is gone from the config: tokens are no longer checked"
                )
            }
            None => {}
        }
        self.jwt.store(next.map(Arc::new));
        Ok(())
    }

    /// Whether anyone may do anything.
    pub fn is_open(&self) -> bool {
        self.jwt.load().is_none() && self.active_policy().is_none()
    }

    /// The policy component, while one runs.
    fn active_policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref().filter(|p| p.is_active())
    }

    /// What one connection may cost, now.
    pub fn limits(&self) -> Arc<SocketLimits> {
        self.limits.load_full()
    }

    /// SIGHUP: the limits of the re-read config, for every socket from its next
    /// `join` or `publish` on (a WebSocket frame bound set at start stays).
    pub fn set_limits(&self, limits: SocketLimits) {
        if *self.limits.load_full() != limits {
            tracing::info!(?limits, "server.limits re-read");
        }
        self.limits.store(Arc::new(limits));
    }

    /// Lets a client in, or says why not (its `connect_error` message).
    pub async fn connect(&self, req: Connecting<'_>) -> Result<Grant, String> {
        let mut grant = Grant::default();
        if let Some(verifier) = self.jwt.load_full() {
            let token = token_of(req.auth, req.parts).ok_or_else(|| {
                self.counters.deny(Stage::Connect, By::Token);
                "unauthorized: no token (send auth: {token} or Authorization: Bearer)".to_string()
            })?;
            let token = verifier.verify(token).map_err(|e| {
                self.counters.deny(Stage::Connect, By::Token);
                format!("unauthorized: {e}")
            })?;
            if !token.rights.namespaces.allows(req.namespace) {
                self.counters.deny(Stage::Connect, By::Claims);
                return Err(format!(
                    "forbidden: the token does not grant namespace `{}`",
                    req.namespace
                ));
            }
            grant.token = Some(token);
        }
        if let Some(policy) = self.active_policy() {
            let headers = req
                .parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let ask = ConnectRequest {
                namespace: req.namespace,
                auth: req.auth,
                headers,
                query: req.parts.uri.query().unwrap_or(""),
                claims: grant.claims(),
            };
            if let Verdict::Deny(why) = policy.connect(&ask).await {
                self.counters.deny(Stage::Connect, By::Policy);
                return Err(format!("forbidden: {why}"));
            }
        }
        Ok(grant)
    }

    /// Whether `socket` may join all of `rooms` (the error is its ack's message).
    pub async fn join(
        &self,
        socket: &SocketView<'_>,
        grant: &Grant,
        rooms: &[String],
    ) -> Result<(), String> {
        if let Some(token) = &grant.token
            && let Some(room) = token.rights.join_refused(rooms)
        {
            self.counters.deny(Stage::Join, By::Claims);
            return Err(format!(
                "forbidden: the token does not grant joining `{room}`"
            ));
        }
        if let Some(policy) = self.active_policy()
            && let Verdict::Deny(why) = policy.join(socket, rooms).await
        {
            self.counters.deny(Stage::Join, By::Policy);
            return Err(format!("forbidden: {why}"));
        }
        Ok(())
    }

    /// Whether `socket` may publish `event` to `rooms` (`None`: the whole namespace).
    pub async fn publish(
        &self,
        socket: &SocketView<'_>,
        grant: &Grant,
        rooms: Option<&[String]>,
        event: &str,
        bytes: usize,
    ) -> Result<(), String> {
        if let Some(token) = &grant.token
            && let Some(why) = token.rights.publish_refused(rooms)
        {
            self.counters.deny(Stage::Publish, By::Claims);
            return Err(format!("forbidden: {why}"));
        }
        if let Some(policy) = self.active_policy()
            && let Verdict::Deny(why) = policy.publish(socket, rooms, event, bytes).await
        {
            self.counters.deny(Stage::Publish, By::Policy);
            return Err(format!("forbidden: {why}"));
        }
        Ok(())
    }
}

/// The token a client sent: `auth.token`, else `Authorization: Bearer TOKEN`.
fn token_of<'a>(auth: &'a Json, parts: &'a axum::http::request::Parts) -> Option<&'a str> {
    auth.get("token").and_then(Json::as_str).or_else(|| {
        parts
            .headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(str::trim)
    })
}
