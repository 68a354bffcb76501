//! The node's signed requests for its storage audits, and one attempt to send them: the node
//! fetches its fill, asks for the challenge due and answers it, always as the initiator (it sits
//! behind the subscriber's NAT), on the router's reports listener.
//!
//! A request is a small JSON body signed with the node's report key: the headers
//! [`NODE_HEADER`] (the node id, to find its key before reading anything else) and
//! [`SIGNATURE_HEADER`] (hex ed25519 over [`DOMAIN`] followed by the body's bytes). The domain
//! prefix keeps an audit signature from ever verifying as a report's (whose canonical bytes start
//! `quid-report-v`), and the body carries `at_ms`, the node's clock, which must rise with every
//! request and lie within the router's skew: a copy of a request is refused as a replay.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::audit::{Answer, CHUNK_BYTES, Challenge};

/// What every audit signature covers before the body.
pub const DOMAIN: &[u8] = b"quid-audit-request-v1\0";

/// The header naming the node.
pub const NODE_HEADER: &str = "quid-node";

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "quid-signature";

/// Fetch fill chunks `from .. from + count` (`POST /v1/audits/fill`); the answer is their
/// bytes, `count` x [`CHUNK_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillRequest {
    pub node: String,
    pub at_ms: i64,
    pub from: u64,
    pub count: u32,
}

/// Say how much of the fill is held, and ask for the challenge due (`POST /v1/audits/due`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueRequest {
    pub node: String,
    pub at_ms: i64,
    /// Chunks `0..held` are stored and synced to disk.
    pub held: u64,
}

/// The router's answer to a [`DueRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    /// The open challenge, if one is due now.
    pub challenge: Option<Challenge>,
    /// The chunks the router counts as held (`0..filled`).
    pub filled: u64,
    /// The chunks of the whole fill (the declared storage / [`CHUNK_BYTES`]).
    pub total: u64,
    /// The fill's rate limit, so the node paces itself.
    pub fill_bytes_per_sec: u64,
}

/// Answer the open challenge (`POST /v1/audits/answer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    pub node: String,
    pub at_ms: i64,
    pub answer: Answer,
}

/// The hex signature of `body` by `key`.
pub fn sign(key: &SigningKey, body: &[u8]) -> String {
    hex::encode(key.sign(&signed_bytes(body)).to_bytes())
}

/// Whether `signature` (hex, either case) is `key`'s over `body`.
pub fn verify(key: &VerifyingKey, body: &[u8], signature: &str) -> bool {
    let Some(bytes) = hex::decode(signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(&signed_bytes(body), &Signature::from_bytes(&bytes))
        .is_ok()
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + body.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(body);
    out
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No answer, or 429/503: try later.
    #[error("try again later: {0}")]
    Retry(String),
    /// Refused with a reason.
    #[error("refused: {status} {reason}: {message}")]
    Refused {
        status: u16,
        reason: String,
        message: String,
    },
    /// The answer is not what the endpoint sends.
    #[error("unreadable answer from the router: {0}")]
    Answer(String),
}

/// Posts `body` (serialised) to `path` under `url`, signed by `key` as `node`; returns the
/// answer's bytes.
pub fn post_signed<T: Serialize>(
    agent: &ureq::Agent,
    url: &str,
    path: &str,
    node: &str,
    key: &SigningKey,
    body: &T,
) -> Result<Vec<u8>, RequestError> {
    let body = serde_json::to_vec(body).map_err(|e| RequestError::Answer(e.to_string()))?;
    let response = agent
        .post(&format!("{}{path}", url.trim_end_matches('/')))
        .set("content-type", "application/json")
        .set(NODE_HEADER, node)
        .set(SIGNATURE_HEADER, &sign(key, &body))
        .send_bytes(&body);
    match response {
        Ok(r) => {
            let mut out = Vec::new();
            // The largest answer is a fill of 64 chunks; more is not the router's.
            std::io::Read::read_to_end(
                &mut std::io::Read::take(r.into_reader(), (65 * CHUNK_BYTES) as u64),
                &mut out,
            )
            .map_err(|e| RequestError::Retry(e.to_string()))?;
            Ok(out)
        }
        Err(ureq::Error::Status(status, r)) => {
            let v: serde_json::Value = r
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let reason = v["reason"].as_str().unwrap_or("?").to_owned();
            let message = v["message"].as_str().unwrap_or("").to_owned();
            if matches!(status, 408 | 429 | 503) {
                Err(RequestError::Retry(format!("{status} {reason}: {message}")))
            } else {
                Err(RequestError::Refused {
                    status,
                    reason,
                    message,
                })
            }
        }
        Err(e) => Err(RequestError::Retry(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_the_body_and_the_domain_only() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let body = br#"{"node":"pi","at_ms":1,"held":0}"#;
        let sig = sign(&key, body);
        assert!(verify(&key.verifying_key(), body, &sig));
        assert!(verify(&key.verifying_key(), body, &sig.to_uppercase()));
        assert!(!verify(
            &key.verifying_key(),
            br#"{"node":"pi","at_ms":2,"held":0}"#,
            &sig
        ));
        assert!(!verify(
            &SigningKey::from_bytes(&[4; 32]).verifying_key(),
            body,
            &sig
        ));
        assert!(!verify(&key.verifying_key(), body, "zz"));
        // The same bytes signed without the domain (as a report would be) do not verify.
        let bare = hex::encode(key.sign(body).to_bytes());
        assert!(!verify(&key.verifying_key(), body, &bare));
    }
}
