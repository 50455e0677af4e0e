//! A bounded number of things of one kind that clients can hold open (the
//! bulk streams of a service, say): a [`Slot`] each, for as long as it is
//! held, and `RESOURCE_EXHAUSTED` at once when none is left.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// At most `max` held at once.
#[derive(Clone, Debug)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: usize,
    what: &'static str,
}

/// One held slot; given back when dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Slots {
    /// `max` slots of `what` (for the error, e.g. "product searches").
    pub fn new(max: usize, what: &'static str) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max.max(1))),
            max,
            what,
        }
    }

    /// A slot, or `RESOURCE_EXHAUSTED` (with the usual retry hint) when all
    /// are held.
    pub fn take(&self) -> Result<Slot, Status> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot(permit)),
            Err(_) => Err(crate::pushback::refuse(
                format!(
                    "{} {} are running already; try again shortly",
                    self.max, self.what
                ),
                crate::pushback::SHORTEST,
            )),
        }
    }
}
