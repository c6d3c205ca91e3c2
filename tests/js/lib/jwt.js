// Signs JSON Web Tokens for the auth tests with node:crypto only (HS256, RS256, ES256), so
// the server's verifier is checked against an independent signer.
"use strict";

const crypto = require("node:crypto");

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/**
 * A compact JWT of `claims` signed with `alg`: `key` is the HS256 secret (string) or a
 * private KeyObject. `kid` goes in the header when given. `exp` defaults to an hour
 * from now (pass `exp: null` to leave it out).
 */
function sign(claims, { alg = "HS256", key, kid } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iat: now, exp: now + 3600, ...claims };
  if (body.exp === null) delete body.exp;
  const header = { alg, typ: "JWT", ...(kid ? { kid } : {}) };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(body))}`;
  let sig;
  if (alg === "HS256") sig = crypto.createHmac("sha256", key).update(input).digest();
  else if (alg === "RS256") sig = crypto.sign("sha256", Buffer.from(input), key);
  // JOSE wants ECDSA signatures as r || s, not DER.
  else if (alg === "ES256") sig = crypto.sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  else throw new Error(`sign: unknown alg ${alg}`);
  return `${input}.${b64url(sig)}`;
}

/** A fresh key pair: {privateKey, publicPem, jwk} for "RS256" or "ES256". */
function keyPair(alg, kid) {
  const { privateKey, publicKey } =
    alg === "RS256"
      ? crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
      : crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), alg, use: "sig", ...(kid ? { kid } : {}) };
  return { privateKey, publicPem: publicKey.export({ type: "spki", format: "pem" }), jwk };
}

module.exports = { keyPair, sign };
