//! TLS on a listener (`[server.tls]`, `[admin.tls]`): the certificate and key read from
//! PEM files into a rustls config that SIGHUP can replace, and the accept loop that
//! serves an axum router over it (HTTP/1.1 with WebSocket upgrades).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// How long a client may take over its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener's certificate and key, replaceable while it serves.
pub struct Tls {
    config: ArcSwap<rustls::ServerConfig>,
    failed_handshakes: AtomicU64,
}

impl Tls {
    /// Reads the certificate chain and key `files` name.
    pub fn load(files: &TlsConfig) -> anyhow::Result<Tls> {
        Ok(Tls {
            config: ArcSwap::from_pointee(server_config(files)?),
            failed_handshakes: AtomicU64::new(0),
        })
    }

    /// Reads `files` again; when they do not load, the old certificate stays in use
    /// and the error is returned. Connections already open keep theirs.
    pub fn reload(&self, files: &TlsConfig) -> anyhow::Result<()> {
        self.config.store(Arc::new(server_config(files)?));
        Ok(())
    }

    /// Handshakes that failed or timed out since start.
    pub fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes.load(Ordering::Relaxed)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// A client config for the admin client: a node presenting exactly one of the
/// certificates in the PEM files `pinned` (a self-signed certificate, which webpki
/// refuses as its own anchor) is trusted as it is; any other certificate must chain
/// to those or to the public web roots, for the host name asked.
pub fn client_config(pinned: &[&Path]) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut exact = Vec::new();
    for path in pinned {
        for cert in read_chain(path)? {
            // A CA among them also anchors the certificates it signed.
            let _ = roots.add(cert.clone());
            exact.push(cert);
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("TLS certificate verifier")?;
    let verifier = Arc::new(Pinned {
        exact,
        webpki,
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Trusts a pinned certificate as it is, otherwise what webpki trusts. Handshake
/// signatures are checked either way.
#[derive(Debug)]
struct Pinned {
    exact: Vec<CertificateDer<'static>>,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn server_config(files: &TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    let (cert, key) = (&files.cert, &files.key);
    let chain = read_chain(cert)?;
    let key_der = read_key(key)?;
    // ring, as fred's rustls already builds: no aws-lc to compile.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "{}: key not usable with the certificate in {}",
                key.display(),
                cert.display()
            )
        })?;
    // The server speaks HTTP/1.1 only (WebSocket upgrades need it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate file", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{}: no certificate in it", path.display());
    }
    Ok(chain)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{}: no private key in it", path.display())
        }
        e => anyhow::anyhow!("{}: not a PEM private key: {e}", path.display()),
    })
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then waits for
/// the open connections to finish their requests (as `axum::serve` does in plain HTTP).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Arc<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // `stop` tells the connections to finish; `open` counts them (one receiver each).
    let (stop_tx, stop) = watch::channel(());
    let (open_tx, open) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::debug!("tls: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // As on the plain path: small frames go out at once.
        let _ = tcp.set_nodelay(true);
        let (tls, router) = (tls.clone(), router.clone());
        let (mut stop, open) = (stop.clone(), open.clone());
        // The handshake runs in the connection's own task: a slow client does not hold
        // up the accept loop.
        tokio::spawn(async move {
            let peer = tcp.peer_addr().ok();
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tls.handshake_failed(peer, &e),
                Err(_) => return tls.handshake_failed(peer, &"timed out"),
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let done = tokio::select! {
                done = conn.as_mut() => done,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = done {
                tracing::debug!(?peer, "tls: connection: {e}");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(stop);
    let _ = stop_tx.send(());
    drop(open);
    open_tx.closed().await;
    Ok(())
}

impl Tls {
    fn handshake_failed(&self, peer: Option<std::net::SocketAddr>, why: &dyn std::fmt::Display) {
        self.failed_handshakes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?peer, "tls: handshake failed: {why}");
    }
}
