//! `wasio:adapter/requests`: the guest answers cluster requests the host opened; the
//! host routes each answer to the waiting operation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::HostState;
use crate::runtime::bindings::wasio::adapter::requests::{Answer, Host};
use crate::runtime::bindings::wasio::adapter::types::Error;

type Open = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Part>>>>;

enum Part {
    Answer(Answer),
    Finish(Result<(), String>),
}

/// Requests waiting for guest answers, by id.
#[derive(Default)]
pub(crate) struct Requests {
    next: AtomicU64,
    open: Open,
}

impl Requests {
    /// Opens a cluster request the guest will answer through `requests`.
    pub(crate) fn open(&self) -> RequestHandle {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        self.open.lock().unwrap().insert(id, tx);
        RequestHandle {
            id,
            rx,
            open: self.open.clone(),
        }
    }

    fn send(&self, id: u64, part: Part) {
        let mut open = self.open.lock().unwrap();
        let finished = matches!(part, Part::Finish(_));
        if let Some(tx) = open.get(&id) {
            let _ = tx.send(part);
        }
        if finished {
            open.remove(&id);
        }
    }

    /// Ids of the cluster requests open now.
    pub(crate) fn open_ids(&self) -> Vec<u64> {
        self.open.lock().unwrap().keys().copied().collect()
    }

    /// Whether any of `ids` is still open.
    pub(crate) fn any_open(&self, ids: &[u64]) -> bool {
        let open = self.open.lock().unwrap();
        ids.iter().any(|id| open.contains_key(id))
    }

    /// Ends the requests of `ids` still open with `reason`.
    pub(crate) fn fail(&self, ids: &[u64], reason: &str) {
        let mut open = self.open.lock().unwrap();
        for id in ids {
            if let Some(tx) = open.remove(id) {
                let _ = tx.send(Part::Finish(Err(reason.to_string())));
            }
        }
    }

    pub(crate) fn fail_all(&self, reason: &str) {
        for (_, tx) in self.open.lock().unwrap().drain() {
            let _ = tx.send(Part::Finish(Err(reason.to_string())));
        }
    }
}

/// One open request; dropping it forgets the request.
pub(crate) struct RequestHandle {
    /// The id the guest answers to.
    pub id: u64,
    rx: mpsc::UnboundedReceiver<Part>,
    open: Open,
}

/// Everything the guest answered to one request.
#[derive(Debug)]
pub(crate) struct Answers {
    pub parts: Vec<Answer>,
    /// `Err` when the guest (or the host's own deadline) ended it early.
    pub outcome: Result<(), String>,
    /// Set when the host's deadline ended it: the guest never finished (a broken guest,
    /// not a slow cluster).
    pub abandoned: bool,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            parts: Vec::new(),
            outcome: Ok(()),
            abandoned: false,
        }
    }
}

impl RequestHandle {
    /// The next answer part, `Ok(None)` once finished, `Err` when it ended with an error.
    pub(crate) async fn next(&mut self) -> Option<Result<Answer, String>> {
        match self.rx.recv().await? {
            Part::Answer(a) => Some(Ok(a)),
            Part::Finish(Ok(())) => None,
            Part::Finish(Err(e)) => Some(Err(e)),
        }
    }

    /// Collects answers until `finish`, or until `deadline` passes (the host's guard
    /// against a guest that never finishes).
    pub(crate) async fn collect(mut self, deadline: Duration) -> Answers {
        let mut answers = Answers::default();
        let collect = async {
            while let Some(part) = self.next().await {
                match part {
                    Ok(a) => answers.parts.push(a),
                    Err(e) => {
                        answers.outcome = Err(e);
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(deadline, collect).await.is_err() {
            answers.outcome = Err(format!("no answer from the adapter within {deadline:?}"));
            answers.abandoned = true;
        }
        answers
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.open.lock().unwrap().remove(&self.id);
    }
}

impl Host for HostState {
    fn reply(&mut self, id: u64, part: Answer) -> wasmtime::Result<()> {
        self.node.requests.send(id, Part::Answer(part));
        Ok(())
    }

    fn finish(&mut self, id: u64, outcome: Result<(), Error>) -> wasmtime::Result<()> {
        let outcome = outcome.map_err(|e| crate::runtime::describe(&e));
        self.node.requests.send(id, Part::Finish(outcome));
        Ok(())
    }
}
