//! Connection tokens: a JWT in the handshake's `auth.token` or an `Authorization:
//! Bearer` header, signed HS256, RS256 or ES256, with `exp` required and `nbf`, `iss`,
//! `aud` checked. Keys come from the config, a PEM file or a JWKS file (by `kid`);
//! [`Verifier::from_config`] reads the files, so SIGHUP builds a new one.

use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value as Json};

use super::rights::Rights;
use crate::config::{JwtAlgorithm, JwtConfig};

/// A verified token: its claims, the rights they grant, the data copied onto the socket.
#[derive(Debug, Clone)]
pub struct Token {
    /// Every claim of the token.
    pub claims: Json,
    /// What the socket may do.
    pub rights: Rights,
    /// `data_claims` picked from `claims`.
    pub data: Map<String, Json>,
}

/// Checks tokens against the configured keys and claims.
pub struct Verifier {
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    /// A PEM public key and the family (RS256 or ES256) it is for.
    public: Option<(Algorithm, DecodingKey)>,
    /// JWKS keys by `kid`.
    /// `(kid, family, key)`: the family (RS256 or ES256) from the key's type.
    jwks: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_s: u64,
    claim: String,
    data_claims: Vec<String>,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

impl Verifier {
    /// Reads the keys `config` names; an unreadable or malformed file is an error naming it.
    pub fn from_config(config: &JwtConfig) -> anyhow::Result<Verifier> {
        let public = match &config.public_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("auth.jwt.public_key: cannot read {}", path.display())
                })?;
                // The file says which family it is: an EC key or an RSA one.
                let key = DecodingKey::from_ec_pem(&pem)
                    .map(|k| (Algorithm::ES256, k))
                    .or_else(|_| DecodingKey::from_rsa_pem(&pem).map(|k| (Algorithm::RS256, k)))
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "auth.jwt.public_key: {}: not an RSA or P-256 public key in PEM: {e}",
                            path.display()
                        )
                    })?;
                Some(key)
            }
        };
        let jwks = match &config.jwks {
            None => Vec::new(),
            Some(path) => {
                let text = std::fs::read(path)
                    .with_context(|| format!("auth.jwt.jwks: cannot read {}", path.display()))?;
                let set: JwkSet = serde_json::from_slice(&text).map_err(|e| {
                    anyhow::anyhow!("auth.jwt.jwks: {}: not a JWKS: {e}", path.display())
                })?;
                set.keys
                    .iter()
                    .map(|jwk| {
                        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                            anyhow::anyhow!(
                                "auth.jwt.jwks: {}: key {:?} is unusable: {e}",
                                path.display(),
                                jwk.common.key_id
                            )
                        })?;
                        // A key serves only its own family: an RS256 token must not be
                        // checked against an EC key that happens to be alone in the set.
                        let family = match &jwk.algorithm {
                            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                            _ => Algorithm::ES256,
                        };
                        Ok((jwk.common.key_id.clone(), family, key))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
        };
        Ok(Verifier {
            algorithms: config.algorithms.iter().copied().map(algorithm).collect(),
            secret: config
                .secret
                .as_deref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            public,
            jwks,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_s: config.leeway_s,
            claim: config.claim.clone(),
            data_claims: config.data_claims.clone(),
        })
    }

    /// How many JWKS keys are loaded (for the log line on reload).
    pub fn jwks_len(&self) -> usize {
        self.jwks.len()
    }

    /// Checks `token`; the error is what the client is told.
    pub fn verify(&self, token: &str) -> Result<Token, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("token algorithm {:?} is not accepted", header.alg));
        }
        let key = self.key_for(header.alg, header.kid.as_deref())?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway_s;
        v.validate_nbf = true;
        match &self.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Json>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => "token expired".to_string(),
                K::ImmatureSignature => "token not valid yet (nbf)".to_string(),
                K::InvalidSignature => "invalid token signature".to_string(),
                K::InvalidIssuer => "wrong token issuer".to_string(),
                K::InvalidAudience => "wrong token audience".to_string(),
                K::MissingRequiredClaim(c) => format!("token has no `{c}` claim"),
                _ => "invalid token".to_string(),
            }
        })?;
        let claims = data.claims;
        let rights = Rights::from_claim(claims.get(&self.claim))
            .map_err(|e| format!("token claim `{}`: {e}", self.claim))?;
        let data = self
            .data_claims
            .iter()
            .filter_map(|c| claims.get(c).map(|v| (c.clone(), v.clone())))
            .collect();
        Ok(Token {
            claims,
            rights,
            data,
        })
    }

    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<&DecodingKey, String> {
        if alg == Algorithm::HS256 {
            return self
                .secret
                .as_ref()
                .ok_or_else(|| "HS256 is not accepted".into());
        }
        let mut family = self.jwks.iter().filter(|(_, f, _)| *f == alg);
        let from_set = match kid {
            Some(kid) => family.find(|(k, _, _)| k.as_deref() == Some(kid)),
            // Without a kid, a set holding one key of the family names it.
            None => family
                .next()
                .filter(|_| self.jwks.iter().filter(|(_, f, _)| *f == alg).count() == 1),
        };
        if let Some((_, _, key)) = from_set {
            return Ok(key);
        }
        match &self.public {
            Some((family, key)) if *family == alg => Ok(key),
            _ => Err(match kid {
                Some(kid) => format!("no key `{kid}` for {alg:?}"),
                None => format!("no key for {alg:?}"),
            }),
        }
    }
}
