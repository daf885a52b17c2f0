//! Group commit: concurrent writers share one storage transaction and one
//! fsync.
//!
//! A writer queues its (already validated) request. If no other writer is
//! committing, it becomes the leader: it takes every queued request, applies
//! each as its own revision in one storage write transaction, commits once,
//! and hands every caller its own response; then it takes whatever queued up
//! meanwhile, until the queue is empty. Followers just wait for their
//! response. Durable throughput is therefore not capped at one fsync per
//! write.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::txn::{TxnRequest, TxnResponse};
use crate::error::Result;

/// Where a follower's response is delivered.
#[derive(Default)]
pub(crate) struct Slot {
    result: Mutex<Option<Result<TxnResponse>>>,
    ready: Condvar,
}

impl Slot {
    pub fn fill(&self, r: Result<TxnResponse>) {
        *self.result.lock() = Some(r);
        self.ready.notify_one();
    }

    fn wait(&self) -> Result<TxnResponse> {
        let mut r = self.result.lock();
        loop {
            if let Some(r) = r.take() {
                return r;
            }
            self.ready.wait(&mut r);
        }
    }
}

pub(crate) type Job = (TxnRequest, Arc<Slot>);

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    leading: bool,
}

#[derive(Default)]
pub(crate) struct Committer {
    queue: Mutex<Queue>,
}

impl Committer {
    /// Queues `req` and returns its response; `apply` is run by whichever
    /// caller leads, with every job queued at that moment.
    pub fn submit(&self, req: TxnRequest, apply: impl Fn(Vec<Job>)) -> Result<TxnResponse> {
        let slot = Arc::new(Slot::default());
        {
            let mut q = self.queue.lock();
            q.jobs.push((req, Arc::clone(&slot)));
            if q.leading {
                drop(q);
                return slot.wait();
            }
            q.leading = true;
        }
        loop {
            let jobs = {
                let mut q = self.queue.lock();
                if q.jobs.is_empty() {
                    q.leading = false;
                    break;
                }
                std::mem::take(&mut q.jobs)
            };
            apply(jobs);
        }
        slot.wait()
    }
}
