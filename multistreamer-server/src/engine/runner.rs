//! The task that owns every job of the server: it answers the API's commands and the hub's
//! events by making the jobs match `desired()` again.

#[allow(unused_imports)]
use super::*;

/// The task that owns every running job.
pub(super) struct Runner {
    pub(super) changed: tokio::sync::watch::Sender<u64>,
    pub(super) hub: Hub,
    pub(super) db: Db,
    pub(super) transcode: TranscodeOptions,
    pub(super) recordings_dir: PathBuf,
    pub(super) push: RtmpPushOptions,
    pub(super) dest_options: DestinationOptions,
    pub(super) cancel: CancellationToken,
    pub(super) ingest_cancel: CancellationToken,
    pub(super) live: LiveState,
    /// The publish session of each live stream.
    pub(super) sessions: HashMap<i64, Session>,
    pub(super) pulls: JobSet<i64, InputUrl, PullHandle>,
    pub(super) ladders: JobSet<i64, LadderSpec, LadderHandle>,
    pub(super) recordings: JobSet<i64, RecordingSpec, RecordingJob>,
    pub(super) destinations: JobSet<i64, DestinationSpec, DestinationHandle>,
    pub(super) platforms: Arc<Platforms>,
    pub(super) captures: JobSet<i64, CaptureSpec, TaskJob>,
    pub(super) live_captures: LiveCaptures,
    pub(super) monitors: JobSet<i64, MonitorSpec, TaskJob>,
    /// Asks this task to sync (a monitor switched a broadcast's destinations off).
    pub(super) wake: Arc<dyn Fn() + Send + Sync>,
    /// The other nodes on the same database, when there are.
    pub(super) cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A stream's publish session: its `stream_sessions` row, once written.
pub(super) struct Session {
    row: Option<i64>,
    started_at: i64,
    stream: Option<Arc<multistreamer_core::hub::LiveStream>>,
}

fn log_changes<K: std::fmt::Debug>(what: &str, c: &Changes<K>) {
    for k in &c.started {
        info!(id = ?k, "{what} started");
    }
    for k in &c.stopped {
        info!(id = ?k, "{what} stopping");
    }
    for (k, e) in &c.failed {
        warn!(id = ?k, error = %e, "cannot start the {what}");
    }
}

impl Runner {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut events = self.hub.events();
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(done) = self.command(cmd).await {
                        let _ = done.send(());
                        break;
                    }
                }
                ev = events.recv() => match ev {
                    Ok(HubEvent::StreamStarted(name)) => {
                        if split_rendition(&name).is_none()
                            && let Some(id) = stream_id_of(&name)
                        {
                            let started_at = db::now();
                            // refused (the database busy or full): the whole row is written at its end
                            let row = db::session_started(&self.db, id, started_at).await.ok();
                            let stream = self.hub.get(&name);
                            self.sessions.insert(id, Session { row, started_at, stream });
                        }
                        self.sync().await.unwrap_or_else(|e| warn!(error = %e, "updating jobs failed"));
                    }
                    Ok(HubEvent::StreamEnded(name)) => {
                        // Jobs fed by this stream end by themselves, delivering what they hold.
                        self.ladders.release(|_, spec| spec.source == name);
                        self.recordings.release(|_, spec| spec.target == name);
                        self.destinations.release(|_, spec| spec.target == name);
                        if split_rendition(&name).is_none()
                            && let Some(id) = stream_id_of(&name)
                        {
                            // "record now" lasts for one session
                            self.live.record_now.remove(&id);
                            self.session_ended(id, &name).await;
                        }
                        self.sync().await.unwrap_or_else(|e| warn!(error = %e, "updating jobs failed"));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // missed ends: the sessions whose stream the hub no longer runs end now
                        let gone: Vec<i64> = self
                            .sessions
                            .iter()
                            .filter(|(id, s)| match (self.hub.get(&hub_name(**id)), &s.stream) {
                                (Some(now), Some(ours)) => !Arc::ptr_eq(&now, ours),
                                (now, _) => now.is_none(),
                            })
                            .map(|(id, _)| *id)
                            .collect();
                        for id in gone {
                            self.session_ended(id, &hub_name(id)).await;
                        }
                        self.sync().await.unwrap_or_else(|e| warn!(error = %e, "updating jobs failed"));
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    }

    async fn session_ended(&mut self, id: i64, name: &str) {
        let Some(Session { row, started_at, stream }) = self.sessions.remove(&id) else { return };
        // the hub has let go of an ended stream: its counters are read from the session's copy
        let bytes = stream.or_else(|| self.hub.get(name)).map_or(0, |s| s.stats().bytes_in.load(Relaxed));
        let ended_at = db::now();
        let write: deferred::Write = match row {
            Some(row) => {
                Box::new(move |db| Box::pin(async move { db::session_ended(&db, row, ended_at, bytes).await }))
            }
            None => Box::new(move |db| {
                Box::pin(async move { db::session_recorded(&db, id, started_at, ended_at, bytes).await })
            }),
        };
        let mut rows = deferred::Deferred::new("publish sessions");
        rows.push(&self.db, format!("stream {id} session ended"), write).await;
        rows.finish_in_background(self.db.clone());
    }

    /// Handles one command; returns the reply channel of a shutdown, after it is done.
    async fn command(&mut self, cmd: Command) -> Option<oneshot::Sender<()>> {
        match cmd {
            Command::Sync(done) => {
                let r = self.sync().await;
                if let Some(done) = done {
                    let _ = done.send(r);
                }
            }
            Command::RecordNow { stream_id, on, done } => {
                if on {
                    self.live.record_now.insert(stream_id);
                } else {
                    self.live.record_now.remove(&stream_id);
                }
                let _ = done.send(self.sync().await);
            }
            Command::Close { stream_id, done } => {
                self.hub.end_stream(&hub_name(stream_id));
                let _ = self.sync().await;
                let _ = done.send(());
            }
            Command::State { stream_id, reply } => {
                let _ = reply.send(self.state(stream_id));
            }
            Command::States(ids, reply) => {
                let _ = reply.send(ids.into_iter().map(|id| (id, self.state(id))).collect());
            }
            Command::LiveDropped(reply) => {
                let _ = reply.send(self.destinations.running().map(|(_, _, h)| h.stats.live_dropped()).sum());
            }
            Command::Destinations(reply) => {
                let _ = reply.send(self.destinations.running().map(|(_, _, h)| h.stats.snapshot()).collect());
            }
            Command::IsRecording(path, reply) => {
                let _ = reply.send(self.recordings.running().any(|(_, _, r)| r.writes(&path)));
            }
            Command::Shutdown(done) => {
                self.shutdown().await;
                return Some(done);
            }
        }
        None
    }

    fn state(&self, id: i64) -> StreamState {
        let ladder = self.ladders.get(&id);
        let recording = match self.recordings.get(&id) {
            Some(r) => RecordingStatus { error: self.recordings.error(&id), ..r.status() },
            None => RecordingStatus { error: self.recordings.error(&id), ..RecordingStatus::default() },
        };
        let destinations = self
            .destinations
            .running()
            .filter(|(_, spec, _)| stream_id_of(&spec.target) == Some(id))
            .map(|(k, _, h)| (*k, h.stats.snapshot()))
            .collect();
        StreamState {
            pull: self.pulls.get(&id).map(PullHandle::status),
            recording,
            renditions: ladder.map(LadderHandle::rungs).unwrap_or_default(),
            skipped_renditions: ladder.map(|l| l.stats().skipped()).unwrap_or_default(),
            ladder_error: self.ladders.error(&id),
            ladder_input_dropped: ladder.map_or(0, LadderHandle::input_dropped),
            destinations,
        }
    }

    /// Loads the configuration, computes the desired jobs and applies the difference.
    async fn sync(&mut self) -> Result<(), AppError> {
        let streams = db::list_streams(&self.db).await?;
        let dests = db::destinations_by_stream(&self.db).await?;
        let mut broadcasts: HashMap<i64, Vec<db::BroadcastRow>> = HashMap::new();
        let mut broadcast_ids = std::collections::HashSet::new();
        for b in db::all_broadcasts(&self.db).await? {
            broadcast_ids.insert(b.id);
            broadcasts.entry(b.stream_id).or_default().push(b);
        }
        let configs: Vec<StreamConfig> = streams
            .iter()
            .map(|s| {
                let d = dests.get(&s.id).map_or(&[][..], Vec::as_slice);
                StreamConfig::from_rows(s, d, broadcasts.get(&s.id).map_or(&[][..], Vec::as_slice))
            })
            .collect();
        // A stream deleted (through any node) while live ends: its publisher is disconnected.
        let ids: std::collections::HashSet<i64> = streams.iter().map(|s| s.id).collect();
        for name in self.hub.stream_names() {
            if super::source_stream_id(&name).is_some_and(|id| !ids.contains(&id)) {
                info!(stream = %name, "the stream was deleted; ending it");
                self.hub.end_stream(&name);
            }
        }
        self.live.pulls_here = self.cluster.as_ref().map(|c| c.pulls());
        self.live.hub_streams = self.hub.stream_names().into_iter().collect();
        let want = desired::desired(&configs, &self.live);
        let names: HashMap<i64, String> = configs.iter().map(|s| (s.id, s.name.clone())).collect();
        let dest_names: HashMap<i64, String> =
            configs.iter().flat_map(|s| s.destinations.iter().map(|d| (d.id, d.name.clone()))).collect();

        let (hub, cancel) = (self.hub.clone(), &self.cancel);
        let c = self.pulls.reconcile(&want.pulls, |id, url| {
            url.spawn(hub.clone(), hub_name(*id), &PullOptions::default(), cancel.child_token())
                .map_err(|e| e.to_string())
        });
        log_changes("pull", &c);
        let transcode = &self.transcode;
        let c = self.ladders.reconcile(&want.ladders, |_, spec| {
            spawn_ladder(hub.clone(), spec.source.clone(), spec.ladder.clone(), transcode.clone(), cancel.child_token())
                .map_err(|e| e.to_string())
        });
        log_changes("ladder", &c);
        let (db, dir) = (&self.db, &self.recordings_dir);
        let c = self.recordings.reconcile(&want.recordings, |id, spec| {
            let name = names.get(id).cloned().unwrap_or_else(|| hub_name(*id));
            let options = record_options(dir, &name, &spec.target);
            let handle = spawn_recording(hub.clone(), spec.target.clone(), spec.kind, options, cancel.child_token())
                .map_err(|e| e.to_string())?;
            Ok(RecordingJob::new(db.clone(), handle, *id, name))
        });
        log_changes("recording", &c);
        let (push, dest_options) = (&self.push, &self.dest_options);
        let c = self.destinations.reconcile(&want.destinations, |id, spec| {
            let name = dest_names.get(id).cloned().unwrap_or_default();
            info!(destination = %name, target = %spec.url, stream = %spec.target, "starting destination");
            let connector = spec.url.connector(RtmpPushOptions { enhanced: spec.enhanced_rtmp, ..push.clone() });
            Ok(spawn_destination(
                hub.clone(),
                spec.target.clone(),
                name,
                connector,
                dest_options.clone(),
                cancel.child_token(),
            ))
        });
        log_changes("destination", &c);
        let (platforms, wake) = (&self.platforms, &self.wake);
        let c = self.monitors.reconcile(&want.monitors, |id, spec| {
            Ok(monitor::spawn(Arc::clone(platforms), *id, spec.clone(), Arc::clone(wake), cancel.child_token()))
        });
        log_changes("broadcast monitor", &c);
        // every capture asked for (running) runs, live stream or not
        let mut want_captures = std::collections::BTreeMap::new();
        let all_captures = db::all_captures(&self.db).await?;
        let capture_ids: std::collections::HashSet<i64> = all_captures.iter().map(|c| c.id).collect();
        // (on the node that started it: its files are on that node's disk)
        for row in all_captures.into_iter().filter(|c| c.state == "running" && c.node_id == db::node_id()) {
            let settings: CaptureSettings = serde_json::from_str(&row.options).unwrap_or_default();
            match self.platforms.open_capture_url(row.id, &row.sealed_url) {
                Ok(url) => {
                    let spec = CaptureSpec {
                        id: row.id,
                        name: row.name.clone(),
                        url,
                        profile: row.profile.clone(),
                        settings,
                        dir: PathBuf::from(&row.dir),
                        broadcast_id: row.broadcast_id,
                    };
                    want_captures.insert(row.id, spec);
                }
                Err(e) => warn!(capture = row.id, error = %e, "cannot open the capture's URL"),
            }
        }
        let (db, live) = (&self.db, &self.live_captures);
        let c = self.captures.reconcile(&want_captures, |_, spec| {
            Ok(capture::spawn(
                spec.clone(),
                db.clone(),
                Arc::clone(platforms),
                Arc::clone(live),
                Arc::clone(wake),
                cancel.child_token(),
            ))
        });
        log_changes("capture", &c);
        // the last errors of deleted streams, destinations, broadcasts and captures go with them
        self.pulls.retain_errors(|id| names.contains_key(id));
        self.ladders.retain_errors(|id| names.contains_key(id));
        self.recordings.retain_errors(|id| names.contains_key(id));
        self.destinations.retain_errors(|id| dest_names.contains_key(id));
        self.monitors.retain_errors(|id| broadcast_ids.contains(id));
        self.captures.retain_errors(|id| capture_ids.contains(id));
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.ingest_cancel.cancel();
        self.monitors.stop_all().await;
        self.captures.stop_all().await;
        self.pulls.stop_all().await;
        self.hub.close();
        let live: Vec<i64> = self.sessions.keys().copied().collect();
        for id in live {
            self.session_ended(id, &hub_name(id)).await;
        }
        // Streams have ended: recordings close their files, ladders drain, then
        // destinations deliver what they hold and unpublish.
        self.recordings.join_all(Duration::from_secs(30)).await;
        self.ladders.join_all(Duration::from_secs(30)).await;
        if !self.destinations.join_all(Duration::from_secs(10)).await {
            warn!("destinations did not finish in time");
        }
        self.cancel.cancel();
    }
}

/// Files are named after the stream as the operator knows it (and the rendition).
pub(super) fn record_options(dir: &Path, name: &str, target: &str) -> RecordOptions {
    let mut options = RecordOptions::new(dir);
    let label: String = name.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    let label = match split_rendition(target) {
        Some((_, rung)) => format!("{label}@{rung}"),
        None => label,
    };
    options.template = format!("{label}-{{date}}-{{time}}");
    options
}
