//! Each socket's handshake, kept at connect time, as the Node.js adapters report it in
//! fetch-sockets answers: `{headers, time, address, xdomain, secure, issued, url, query, auth}`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rmpv::Value as Mp;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide_core::Sid;

use super::server::Ns;
use crate::auth::Grant;
use crate::capabilities::SocketInspector;

/// What is remembered of a socket's connection.
#[derive(Clone)]
pub struct Handshake {
    issued_ms: u64,
    auth: Mp,
}

/// Remembers `socket`'s handshake (called from the connect middleware).
pub fn record(socket: &SocketRef<Ns>, auth: Mp) {
    let issued_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    socket.extensions.insert(Handshake { issued_ms, auth });
}

/// Describes local sockets of `io` for fetch-sockets answers.
pub fn inspector(io: SocketIo<Ns>) -> SocketInspector {
    Arc::new(move |nsp: &str, sid: Sid| {
        let socket = io.of(nsp)?.get_socket(sid)?;
        let hs = socket.extensions.get::<Handshake>();
        let parts = socket.req_parts();
        let headers: Vec<(Mp, Mp)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    Mp::from(k.as_str()),
                    Mp::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let query: Vec<(Mp, Mp)> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (Mp::from(k), Mp::from(v))
            })
            .collect();
        let issued = hs.as_ref().map_or(0, |h| h.issued_ms);
        let map = Mp::Map(vec![
            (Mp::from("headers"), Mp::Map(headers)),
            (Mp::from("time"), Mp::from(httpdate(issued))),
            (Mp::from("address"), Mp::from("")),
            (
                Mp::from("xdomain"),
                Mp::from(parts.headers.contains_key("origin")),
            ),
            (
                Mp::from("secure"),
                Mp::from(parts.uri.scheme_str() == Some("https")),
            ),
            (Mp::from("issued"), Mp::from(issued)),
            (Mp::from("url"), Mp::from(parts.uri.to_string())),
            (Mp::from("query"), Mp::Map(query)),
            (Mp::from("auth"), hs.map_or(Mp::Map(vec![]), |h| h.auth)),
        ]);
        let mut handshake = Vec::new();
        rmpv::encode::write_value(&mut handshake, &map).ok()?;
        // A socket's `data` is what its token's `data_claims` copied (an empty object,
        // as a fresh Node.js socket has, without a token).
        let data = socket
            .extensions
            .get::<Arc<Grant>>()
            .and_then(|g| rmpv::ext::to_value(g.data()).ok())
            .unwrap_or(Mp::Map(vec![]));
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &data).ok()?;
        Some((handshake, bytes))
    })
}

/// `issued` as a date line, the way Node.js prints `new Date().toString()` enough for logs.
fn httpdate(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}
