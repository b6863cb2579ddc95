//! Writes the database refused (busy, its disk full), kept in order and tried again each
//! second until they are made: what the engine notes (recording files, publish sessions)
//! catches up once the database takes writes again, instead of being lost.

use std::collections::VecDeque;
use std::time::Duration;

use multistreamer_core::sink::BoxFuture;
use tracing::{info, warn};

use crate::db::Db;
use crate::error::AppError;

/// One write, made again on each try (so it owns copies of what it writes).
pub type Write = Box<dyn Fn(Db) -> BoxFuture<'static, Result<(), AppError>> + Send + Sync>;

/// Pending writes of one owner (a recording, the publish sessions), in order: a write is
/// tried only once those before it are made.
pub struct Deferred {
    what: &'static str,
    pending: VecDeque<(String, Write)>,
    /// The last try was refused (logged once, not each second).
    failed: bool,
}

impl Deferred {
    pub fn new(what: &'static str) -> Deferred {
        Deferred { what, pending: VecDeque::new(), failed: false }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `write` (`label` names it in the log) and makes what it can now.
    pub async fn push(&mut self, db: &Db, label: String, write: Write) {
        self.pending.push_back((label, write));
        self.flush(db).await;
    }

    /// Makes the pending writes in order, up to the first the database refuses.
    pub async fn flush(&mut self, db: &Db) {
        while let Some((label, write)) = self.pending.front() {
            match write(db.clone()).await {
                Ok(()) => {
                    if self.failed {
                        info!(what = self.what, write = %label, "written after all");
                    }
                    self.pending.pop_front();
                }
                Err(e) => {
                    if !self.failed {
                        warn!(what = self.what, write = %label, error = %e, "the database refused a write; trying again each second");
                    }
                    self.failed = true;
                    return;
                }
            }
        }
        self.failed = false;
    }

    /// Goes on trying each second in a task of its own while its owner ends, until every
    /// write is made or the database is closed (the server stopping).
    pub fn finish_in_background(mut self, db: Db) {
        if self.pending.is_empty() {
            return;
        }
        tokio::spawn(async move {
            while !self.pending.is_empty() && !db.is_closed() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.flush(&db).await;
            }
        });
    }
}
