//! The declarative engine: the caller says which jobs it wants (a typed spec per key), a
//! [`JobSet`] makes the running jobs match — starting the missing ones, stopping the
//! unwanted ones and restarting those whose spec changed — and remembers why each failed.
//!
//! The diff itself is the pure function [`plan`], tested without any I/O. Stops run in
//! the background: the owner never waits on an encoder drain or a destination's graceful
//! close. A job kind that must be fully gone before its replacement starts (a ladder,
//! whose rendition names the new one reuses) is marked [`Job::EXCLUSIVE`]; its
//! replacement starts on the next reconcile after the stop, which
//! [`JobSet::with_on_stopped`] asks for.
//!
//! ```
//! use std::collections::BTreeMap;
//! use multistreamer_core::engine::{Job, JobSet};
//! use multistreamer_core::sink::BoxFuture;
//!
//! struct Printer(String);
//! impl Job for Printer {
//!     fn is_finished(&self) -> bool { false }
//!     fn stop(self) -> BoxFuture<'static, ()> { Box::pin(async {}) }
//!     fn join(self) -> BoxFuture<'static, ()> { Box::pin(async {}) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut jobs: JobSet<&str, String, Printer> = JobSet::new();
//! let desired = BTreeMap::from([("a", "hello".to_string())]);
//! jobs.reconcile(&desired, |_, spec| Ok(Printer(spec.clone())));
//! assert_eq!(jobs.get(&"a").map(|p| p.0.as_str()), Some("hello"));
//! jobs.reconcile(&BTreeMap::new(), |_, spec| Ok(Printer(spec.clone())));
//! assert!(jobs.get(&"a").is_none());
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::warn;

use crate::sink::BoxFuture;
use crate::sync::lock;

/// Something the engine runs: a destination, a pull, a ladder, a recording, …
pub trait Job: Send + 'static {
    /// A replacement under the same key starts only once this one has fully stopped.
    const EXCLUSIVE: bool = false;

    /// Whether it ended by itself (its stream ended, it failed, its input is over).
    fn is_finished(&self) -> bool;

    /// Why it stopped, when it ended with an error (or the error it is retrying on).
    fn error(&self) -> Option<String> {
        None
    }

    /// Whether a job that ended by itself is started again while it is still wanted with
    /// the same spec. By default only when it ended without an error: a ladder refused by
    /// the codec or a recording on a full disk waits for a new spec (or its key to leave
    /// the desired set and come back). A VOD pull that played once is not restarted either.
    fn restart_when_finished(&self) -> bool {
        self.error().is_none()
    }

    /// Stops it now, gracefully; resolves once it has stopped.
    fn stop(self) -> BoxFuture<'static, ()>;

    /// Resolves once it has ended by itself.
    fn join(self) -> BoxFuture<'static, ()>;
}

/// What a key currently holds, as [`plan`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Current<'a, S> {
    /// A job runs with this spec.
    Running(&'a S),
    /// A job with this spec ended (failed, or finished for good) or could not start; it is
    /// not started again with the same spec.
    Ended(&'a S),
}

/// What [`plan`] decided for one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan<K> {
    /// Running jobs to stop (unwanted, or their spec changed).
    pub stop: Vec<K>,
    /// Keys to start now.
    pub start: Vec<K>,
    /// Ended entries to forget (unwanted, or wanted with another spec).
    pub forget: Vec<K>,
}

/// The diff between what runs and what is wanted. `stopping` holds keys whose previous
/// job is still stopping; with `exclusive`, nothing starts under those keys (nor under
/// keys stopped by this plan) until the stop has finished.
pub fn plan<K: Ord + Clone, S: PartialEq>(
    current: &BTreeMap<K, Current<'_, S>>,
    stopping: &BTreeSet<K>,
    desired: &BTreeMap<K, S>,
    exclusive: bool,
) -> Plan<K> {
    let mut p = Plan { stop: Vec::new(), start: Vec::new(), forget: Vec::new() };
    for (key, cur) in current {
        let wanted = desired.get(key);
        match (cur, wanted) {
            (Current::Running(spec), Some(w)) if *spec == w => {}
            (Current::Ended(spec), Some(w)) if *spec == w => {}
            (Current::Running(_), _) => p.stop.push(key.clone()),
            (Current::Ended(_), _) => p.forget.push(key.clone()),
        }
    }
    for key in desired.keys() {
        let blocked = exclusive && (stopping.contains(key) || p.stop.contains(key));
        let kept = current.get(key).is_some_and(|_| !p.stop.contains(key) && !p.forget.contains(key));
        if !kept && !blocked {
            p.start.push(key.clone());
        }
    }
    p
}

enum Slot<S, J> {
    Running { spec: S, job: J },
    Ended { spec: S },
}

/// What a [`JobSet::reconcile`] changed (for logs and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<K> {
    pub started: Vec<K>,
    pub stopped: Vec<K>,
    /// Keys whose start failed, with the error.
    pub failed: Vec<(K, String)>,
}

impl<K> Default for Changes<K> {
    fn default() -> Self {
        Changes { started: Vec::new(), stopped: Vec::new(), failed: Vec::new() }
    }
}

type OnStopped = Arc<dyn Fn() + Send + Sync>;

/// The running jobs of one kind, keyed by `K`, each started from a spec `S`.
pub struct JobSet<K, S, J> {
    slots: BTreeMap<K, Slot<S, J>>,
    /// The last error of each key (a failed start, a job that ended with an error).
    errors: BTreeMap<K, String>,
    /// Keys of exclusive jobs still stopping.
    stopping: Arc<Mutex<BTreeSet<K>>>,
    background: JoinSet<()>,
    on_stopped: Option<OnStopped>,
}

impl<K: fmt::Debug, S, J> fmt::Debug for JobSet<K, S, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSet").field("keys", &self.slots.keys().collect::<Vec<_>>()).finish()
    }
}

impl<K, S, J> Default for JobSet<K, S, J>
where
    K: Ord + Clone + Send + 'static,
    S: PartialEq + Clone,
    J: Job,
{
    fn default() -> Self {
        JobSet::new()
    }
}

impl<K, S, J> JobSet<K, S, J>
where
    K: Ord + Clone + Send + 'static,
    S: PartialEq + Clone,
    J: Job,
{
    pub fn new() -> Self {
        JobSet {
            slots: BTreeMap::new(),
            errors: BTreeMap::new(),
            stopping: Arc::default(),
            background: JoinSet::new(),
            on_stopped: None,
        }
    }

    /// Called (from a background task) when an exclusive job has stopped, so the owner
    /// reconciles again and starts its replacement.
    pub fn with_on_stopped(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_stopped = Some(Arc::new(f));
        self
    }

    /// Makes the running jobs match `desired`, starting missing jobs with `start`.
    /// Must be called from within a Tokio runtime (stops are spawned).
    pub fn reconcile<F>(&mut self, desired: &BTreeMap<K, S>, mut start: F) -> Changes<K>
    where
        F: FnMut(&K, &S) -> Result<J, String>,
    {
        while self.background.try_join_next().is_some() {}
        self.settle_finished();
        let stopping = lock(&self.stopping).clone();
        let current: BTreeMap<K, Current<'_, S>> = self
            .slots
            .iter()
            .map(|(k, slot)| {
                let c = match slot {
                    Slot::Running { spec, .. } => Current::Running(spec),
                    Slot::Ended { spec } => Current::Ended(spec),
                };
                (k.clone(), c)
            })
            .collect();
        let p = plan(&current, &stopping, desired, J::EXCLUSIVE);
        drop(current);
        let mut changes = Changes::default();
        for key in p.forget {
            self.slots.remove(&key);
        }
        for key in p.stop {
            if let Some(Slot::Running { job, .. }) = self.slots.remove(&key) {
                self.stop_in_background(key.clone(), job);
                changes.stopped.push(key);
            }
        }
        for key in p.start {
            let Some(spec) = desired.get(&key) else { continue };
            match start(&key, spec) {
                Ok(job) => {
                    self.errors.remove(&key);
                    self.slots.insert(key.clone(), Slot::Running { spec: spec.clone(), job });
                    changes.started.push(key);
                }
                Err(e) => {
                    self.errors.insert(key.clone(), e.clone());
                    self.slots.insert(key.clone(), Slot::Ended { spec: spec.clone() });
                    changes.failed.push((key, e));
                }
            }
        }
        changes
    }

    /// Jobs that ended by themselves: kept as ended (not restarted with the same spec)
    /// when they do not restart, forgotten otherwise (started again if wanted).
    fn settle_finished(&mut self) {
        let finished: Vec<K> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Running { job, .. } if job.is_finished()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in finished {
            let Some(Slot::Running { spec, job }) = self.slots.remove(&key) else { continue };
            let keep_ended = !job.restart_when_finished();
            if let Some(e) = job.error() {
                self.errors.insert(key.clone(), e);
            }
            if keep_ended {
                self.slots.insert(key.clone(), Slot::Ended { spec });
            }
            // It has ended: dropping the handle after its task is done loses nothing, but
            // let it release its resources the way it wants.
            self.background.spawn(job.join());
        }
    }

    fn stop_in_background(&mut self, key: K, job: J) {
        self.retire(key, job, true);
    }

    /// Moves a job to the background: stopped now (`stop`) or left to end by itself.
    fn retire(&mut self, key: K, job: J, stop: bool) {
        if let Some(e) = job.error() {
            self.errors.insert(key.clone(), e);
        }
        if J::EXCLUSIVE {
            lock(&self.stopping).insert(key.clone());
        }
        let stopping = Arc::clone(&self.stopping);
        let on_stopped = self.on_stopped.clone();
        self.background.spawn(async move {
            if stop {
                job.stop().await;
            } else {
                job.join().await;
            }
            if J::EXCLUSIVE {
                lock(&stopping).remove(&key);
                if let Some(f) = on_stopped {
                    f();
                }
            }
        });
    }

    /// Lets the running jobs that `which` picks end by themselves in the background (their
    /// input ended: a destination delivers what it holds, a ladder drains its encoders, a
    /// recording closes its file) instead of being stopped when they leave the desired
    /// set. An exclusive job's replacement still waits for it.
    pub fn release(&mut self, which: impl Fn(&K, &S) -> bool) -> Vec<K> {
        let keys: Vec<K> = self
            .slots
            .iter()
            .filter(|(k, s)| matches!(s, Slot::Running { spec, .. } if which(k, spec)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            if let Some(Slot::Running { job, .. }) = self.slots.remove(key) {
                self.retire(key.clone(), job, false);
            }
        }
        keys
    }

    /// The running job of `key`.
    pub fn get(&self, key: &K) -> Option<&J> {
        match self.slots.get(key) {
            Some(Slot::Running { job, .. }) => Some(job),
            _ => None,
        }
    }

    /// The spec `key` runs (or ended) with.
    pub fn spec(&self, key: &K) -> Option<&S> {
        match self.slots.get(key) {
            Some(Slot::Running { spec, .. } | Slot::Ended { spec }) => Some(spec),
            None => None,
        }
    }

    /// Every running job.
    pub fn running(&self) -> impl Iterator<Item = (&K, &S, &J)> {
        self.slots.iter().filter_map(|(k, s)| match s {
            Slot::Running { spec, job } => Some((k, spec, job)),
            Slot::Ended { .. } => None,
        })
    }

    /// Forgets the kept errors of keys that no longer exist (`exists` is false): a deleted
    /// stream's or destination's last error is not kept for the life of the process.
    pub fn retain_errors(&mut self, exists: impl Fn(&K) -> bool) {
        self.errors.retain(|k, _| exists(k));
    }

    /// The running job's own error, or the last error kept for `key`.
    pub fn error(&self, key: &K) -> Option<String> {
        self.get(key).and_then(Job::error).or_else(|| self.errors.get(key).cloned())
    }

    /// Stops every job now and waits for them (and for earlier background stops).
    pub async fn stop_all(&mut self) {
        for (key, slot) in std::mem::take(&mut self.slots) {
            if let Slot::Running { job, .. } = slot {
                self.stop_in_background(key, job);
            }
        }
        while self.background.join_next().await.is_some() {}
    }

    /// Waits up to `timeout` for every job to end by itself (after their streams ended);
    /// those still running then are stopped. Returns whether all ended in time.
    pub async fn join_all(&mut self, timeout: Duration) -> bool {
        let mut waiting = JoinSet::new();
        for (_, slot) in std::mem::take(&mut self.slots) {
            if let Slot::Running { job, .. } = slot {
                waiting.spawn(job.join());
            }
        }
        let all = async {
            while waiting.join_next().await.is_some() {}
            while self.background.join_next().await.is_some() {}
        };
        let in_time = tokio::time::timeout(timeout, all).await.is_ok();
        if !in_time {
            warn!("jobs did not finish in time; stopping them");
            waiting.abort_all();
            self.background.abort_all();
        }
        in_time
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn map<const N: usize>(items: [(u32, &'static str); N]) -> BTreeMap<u32, &'static str> {
        BTreeMap::from(items)
    }

    #[test]
    fn plan_starts_missing_stops_unwanted_and_restarts_changed() {
        let running = BTreeMap::from([
            (1, Current::Running(&"a")),
            (2, Current::Running(&"b")),
            (3, Current::Running(&"c")),
            (4, Current::Ended(&"d")),
            (5, Current::Ended(&"e")),
        ]);
        let desired = map([(1, "a"), (2, "B"), (4, "d"), (5, "E"), (6, "f")]);
        let p = plan(&running, &BTreeSet::new(), &desired, false);
        assert_eq!(p.stop, vec![2, 3], "2 changed, 3 unwanted");
        assert_eq!(p.forget, vec![5], "an ended key with a new spec is forgotten and started");
        assert_eq!(p.start, vec![2, 5, 6], "the failed 4 is not retried with the same spec");
    }

    #[test]
    fn plan_waits_for_an_exclusive_stop_before_the_replacement() {
        let running = BTreeMap::from([(1, Current::Running(&"a"))]);
        let desired = map([(1, "b"), (2, "c")]);
        let p = plan(&running, &BTreeSet::from([2]), &desired, true);
        assert_eq!((p.stop, p.start), (vec![1], vec![]), "1 is stopping now, 2 still stopping");
        let p = plan(&BTreeMap::new(), &BTreeSet::new(), &desired, true);
        assert_eq!(p.start, vec![1, 2], "both start once the stops are done");
        let p = plan(&running, &BTreeSet::from([2]), &desired, false);
        assert_eq!(p.start, vec![1, 2], "non-exclusive jobs restart at once");
    }

    #[derive(Default)]
    struct Probe {
        stopped: AtomicUsize,
    }

    struct TestJob {
        finished: Arc<AtomicBool>,
        error: Option<String>,
        probe: Arc<Probe>,
        restart: bool,
    }

    impl Job for TestJob {
        const EXCLUSIVE: bool = true;
        fn is_finished(&self) -> bool {
            self.finished.load(Ordering::SeqCst)
        }
        fn error(&self) -> Option<String> {
            self.error.clone().filter(|_| self.is_finished())
        }
        fn restart_when_finished(&self) -> bool {
            self.restart && self.error().is_none()
        }
        fn stop(self) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.probe.stopped.fetch_add(1, Ordering::SeqCst);
            })
        }
        fn join(self) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test(start_paused = true)]
    async fn job_set_restarts_after_the_stop_and_keeps_errors() {
        let probe = Arc::new(Probe::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&asked);
        let mut jobs: JobSet<u32, &'static str, TestJob> =
            JobSet::new().with_on_stopped(move || _ = a.fetch_add(1, Ordering::SeqCst));
        let flags: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let starter = |fail: Option<&'static str>, restart: bool| {
            let probe = Arc::clone(&probe);
            let flags = Arc::clone(&flags);
            move |_: &u32, spec: &&'static str| {
                if spec.starts_with("bad") {
                    return Err(format!("cannot start {spec}"));
                }
                let finished = Arc::new(AtomicBool::new(false));
                lock(&flags).push(Arc::clone(&finished));
                Ok(TestJob { finished, error: fail.map(String::from), probe: Arc::clone(&probe), restart })
            }
        };
        let c = jobs.reconcile(&map([(1, "a"), (2, "bad")]), starter(None, true));
        assert_eq!(c.started, vec![1]);
        assert_eq!(c.failed, vec![(2, "cannot start bad".to_string())]);
        assert_eq!(jobs.error(&2).as_deref(), Some("cannot start bad"));
        let c = jobs.reconcile(&map([(1, "a"), (2, "bad")]), starter(None, true));
        assert_eq!(c, Changes::default(), "nothing changes, the failed start is not retried");

        // A new spec for 1: stopped in the background, restarted once the stop is done.
        let c = jobs.reconcile(&map([(1, "a2")]), starter(None, true));
        assert_eq!((c.stopped, c.started), (vec![1], vec![]));
        assert!(jobs.get(&1).is_none() && jobs.error(&2).is_some());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!((probe.stopped.load(Ordering::SeqCst), asked.load(Ordering::SeqCst)), (1, 1));
        let c = jobs.reconcile(&map([(1, "a2")]), starter(Some("disk full"), true));
        assert_eq!(c.started, vec![1]);
        assert_eq!(jobs.spec(&1), Some(&"a2"));

        // It fails by itself: kept as ended with its error, not restarted with that spec.
        lock(&flags).last().expect("a job").store(true, Ordering::SeqCst);
        let c = jobs.reconcile(&map([(1, "a2")]), starter(None, true));
        assert!(c.started.is_empty());
        assert_eq!(jobs.error(&1).as_deref(), Some("disk full"));
        // Unwanted, then wanted again: a fresh start.
        jobs.reconcile(&BTreeMap::new(), starter(None, true));
        let c = jobs.reconcile(&map([(1, "a2")]), starter(None, false));
        assert_eq!(c.started, vec![1]);
        assert!(jobs.error(&1).is_none(), "a successful start clears the error");
        // A key that no longer exists (its stream was deleted) loses its kept error; others keep theirs.
        assert!(jobs.error(&2).is_some());
        jobs.retain_errors(|k| *k != 2);
        assert!(jobs.error(&2).is_none());

        // Finished without error and not restartable (a VOD played once): stays ended.
        lock(&flags).last().expect("a job").store(true, Ordering::SeqCst);
        let c = jobs.reconcile(&map([(1, "a2")]), starter(None, true));
        assert!(c.started.is_empty() && jobs.get(&1).is_none());

        let c = jobs.reconcile(&map([(3, "c")]), starter(None, true));
        assert_eq!(c.started, vec![3]);
        // Released: left to end by itself (joined, not stopped), out of the running set.
        assert_eq!(jobs.release(|k, _| *k == 3), vec![3]);
        assert_eq!(jobs.running().count(), 0);
        let c = jobs.reconcile(&map([(3, "c")]), starter(None, true));
        assert!(c.started.is_empty(), "an exclusive replacement waits until the released job ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let c = jobs.reconcile(&map([(3, "c")]), starter(None, true));
        assert_eq!(c.started, vec![3]);
        jobs.stop_all().await;
        assert_eq!(probe.stopped.load(Ordering::SeqCst), 2);
        assert_eq!(jobs.running().count(), 0);
    }
}
