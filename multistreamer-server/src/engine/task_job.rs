//! A job that is one tokio task with a cancellation token: the broadcast monitors and the
//! webinar captures.

use std::sync::{Arc, Mutex};

use multistreamer_core::engine::Job;
use multistreamer_core::sink::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

pub struct TaskJob {
    task: JoinHandle<()>,
    cancel: CancellationToken,
    /// Why it stopped, when it stopped on an error.
    error: Arc<Mutex<Option<String>>>,
    /// Started again when it ended without an error while still wanted.
    restart: bool,
}

impl TaskJob {
    pub fn new(
        task: JoinHandle<()>,
        cancel: CancellationToken,
        error: Arc<Mutex<Option<String>>>,
        restart: bool,
    ) -> TaskJob {
        TaskJob { task, cancel, error, restart }
    }
}

impl Job for TaskJob {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    fn restart_when_finished(&self) -> bool {
        self.restart && self.error().is_none()
    }

    fn stop(self) -> BoxFuture<'static, ()> {
        self.cancel.cancel();
        Box::pin(async move {
            let _ = self.task.await;
        })
    }

    fn join(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.task.await;
        })
    }
}
