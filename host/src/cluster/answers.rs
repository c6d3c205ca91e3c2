//! What a cluster request comes to: the outcome of one request, and what its answers
//! mean (sockets per node, rooms, a server count, server-side acks) — read in this one
//! place by the adapter's own API and by the socketioxide bridge alike.

use crate::runtime::SocketInfo;
use crate::runtime::bindings::wasio::adapter::requests::Answer;

use super::guest::GuestError;

/// How a cluster request the guest started ended.
pub(crate) enum Outcome {
    /// Every node answered (or the guest said it is done).
    Done(Vec<Answer>),
    /// The guest ended it early, a node not answering in time: what came, and why.
    Partial { message: String, parts: Vec<Answer> },
}

/// Why a cluster request gave no full answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The guest refused to start it, or failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// A node did not answer in time.
    #[error("cluster request failed: {0}")]
    Partial(String),
}

impl Outcome {
    /// The answers, when every node answered.
    pub(crate) fn complete(self) -> Result<Vec<Answer>, RequestError> {
        match self {
            Outcome::Done(parts) => Ok(parts),
            Outcome::Partial { message, .. } => Err(RequestError::Partial(message)),
        }
    }
}

/// The sockets each answering node described, one list per node, in answer order.
pub(crate) fn sockets(parts: Vec<Answer>) -> Vec<Vec<SocketInfo>> {
    parts
        .into_iter()
        .filter_map(|a| match a {
            Answer::Sockets(list) => Some(list),
            _ => None,
        })
        .collect()
}

/// Every room the answering nodes named (unsorted, perhaps repeated).
pub(crate) fn rooms(parts: Vec<Answer>) -> Vec<String> {
    parts
        .into_iter()
        .flat_map(|a| match a {
            Answer::Rooms(list) => list,
            _ => Vec::new(),
        })
        .collect()
}

/// The node count the guest gave last; 1 (this node) when it gave none.
pub(crate) fn server_count(parts: &[Answer]) -> u32 {
    let count = parts.iter().rev().find_map(|a| match a {
        Answer::ServerCount(n) => Some(*n),
        _ => None,
    });
    count.unwrap_or(1)
}

/// Each node's answer to a `serverSideEmit` with an ack (its ack arguments).
pub(crate) fn server_acks(parts: Vec<Answer>) -> anyhow::Result<Vec<rmpv::Value>> {
    let mut acks = Vec::new();
    for part in parts {
        if let Answer::ServerAck(bytes) = part {
            acks.push(rmpv::decode::read_value(&mut &bytes[..])?);
        }
    }
    Ok(acks)
}
