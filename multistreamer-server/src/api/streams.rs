//! Streams and their destinations: CRUD, live state, "record now".

#[allow(unused_imports)]
use multistreamer_core::rtmp::EnhancedRtmp;

use super::prelude::*;

fn validate_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "a name is required"));
    }
    if name.chars().count() > 100 {
        return Err(AppError::invalid("name", "at most 100 characters"));
    }
    Ok(name.to_string())
}

/// An `rtmp://`, `rtmps://` (with a key) or `srt://` destination URL.
fn validate_url(url: &str) -> Result<String, AppError> {
    let _: DestinationUrl = url.trim().parse().map_err(|e| AppError::invalid("url", format!("{e}")))?;
    Ok(url.trim().to_string())
}

/// A ladder in its normal form (`1080p,720p,480p`), or a field error.
fn validate_ladder(spec: &str) -> Result<String, AppError> {
    let ladder: Ladder = spec.parse().map_err(|e: String| AppError::invalid("ladder", e))?;
    Ok(ladder.to_string())
}

/// "" for the source, or a rung of `stream`'s ladder.
pub(crate) fn validate_rendition(stream: &StreamRow, rendition: &str) -> Result<String, AppError> {
    let r = rendition.trim();
    if r.is_empty() || r == "source" {
        return Ok(String::new());
    }
    let ladder: Ladder = stream.ladder.parse().unwrap_or_default();
    if ladder.get(r).is_none() {
        let names: Vec<String> = ladder.renditions.iter().map(|x| x.name()).collect();
        let offer = if names.is_empty() { "the stream has no ladder".to_string() } else { names.join(", ") };
        return Err(AppError::invalid("rendition", format!("{r:?} is not a rendition of this stream ({offer})")));
    }
    Ok(r.to_string())
}

fn destination_view(d: &DestinationRow, stats: Option<&DestinationLive>) -> DestinationView {
    let masked = d.url.parse::<DestinationUrl>().map(|u| u.redacted()).unwrap_or_else(|_| "<invalid URL>".into());
    DestinationView::new(d, stats, masked)
}

/// The pull URL with its password (and an HTTP query, where tokens live) hidden.
fn mask_pull_url(url: &str) -> String {
    if url.is_empty() {
        return String::new();
    }
    url.parse::<InputUrl>().map(|u| u.masked()).unwrap_or_default()
}

/// Checks a pull URL: `rtsp://` (a camera) or `http(s)://` (an HLS playlist).
fn validate_pull_url(url: &str) -> Result<(), AppError> {
    match url.parse::<InputUrl>() {
        Ok(InputUrl::Hls(_) | InputUrl::Rtsp(_)) => Ok(()),
        Ok(_) => Err(AppError::invalid("pull_url", "RTMP is pushed to the ingest (rtmp_url), not pulled")),
        Err(e) if url.starts_with("http") => Err(AppError::invalid("pull_url", e.to_string())),
        Err(_) => Err(AppError::invalid("pull_url", "expected rtsp://… (a camera) or http(s)://….m3u8 (HLS)")),
    }
}

/// A stream's live state and the node running it: this node's engine, or the report the
/// owner stored with its lease when another node runs the stream.
pub(super) async fn live_of(state: &AppState, id: i64) -> Result<(LiveSnapshot, Option<String>), AppError> {
    if let Some(c) = state.engine.cluster()
        && !state.engine.is_live(id)
        && let Some(lease) = c.remote_lease(id).await?
    {
        return Ok((lease.live, Some(lease.node_id)));
    }
    let st = state.engine.stream_state(id).await;
    Ok(local_live(state, id, &st))
}

fn local_live(state: &AppState, id: i64, st: &crate::engine::StreamState) -> (LiveSnapshot, Option<String>) {
    let live = state.engine.is_live(id);
    let variants = state.engine.hls.variants(&crate::engine::hub_name(id));
    let node = state.engine.cluster().filter(|_| live || st.pull.is_some()).map(|c| c.node_id.clone());
    (LiveSnapshot::new(live, st, &variants), node)
}

/// One stream as the API shows it (its rows and live state loaded by the caller).
pub(super) async fn stream_view(state: &AppState, s: &StreamRow) -> Result<StreamView, AppError> {
    let (live, node) = live_of(state, s.id).await?;
    let dests = db::destinations(&state.db, s.id).await?;
    let history = db::stream_history(&state.db, s.id).await?;
    Ok(stream_value(state, s, live, node, &dests, &history))
}

fn stream_value(
    state: &AppState,
    s: &StreamRow,
    st: LiveSnapshot,
    node: Option<String>,
    dests: &[DestinationRow],
    history: &[db::SessionRow],
) -> StreamView {
    StreamView {
        id: s.id,
        name: s.name.clone(),
        key: s.ingest_key.clone(),
        rtmp_url: format!("{}/{}", state.public_rtmp, s.ingest_key),
        rtsp_url: state.public_rtsp.as_ref().as_ref().map(|u| format!("{u}/{}", s.ingest_key)),
        srt_url: state
            .public_srt
            .as_ref()
            .as_ref()
            .map(|u| format!("{u}?streamid=#!::r={}/{},m=publish", state.app, s.ingest_key)),
        srt_passphrase: s.srt_passphrase.clone(),
        whip_path: state.engine.whip.as_ref().map(|_| format!("/whip/{}", state.app)),
        pull_url: mask_pull_url(&s.pull_url),
        hls_url: format!("/hls/{}/index.m3u8", s.id),
        hls_play_path: format!("/play/{}/index.m3u8", hls_token(&s.ingest_key)),
        node,
        created_at: s.created_at,
        ladder: s.ladder.clone(),
        rendition_names: s.ladder.parse::<Ladder>().unwrap_or_default().renditions.iter().map(|r| r.name()).collect(),
        record_mode: s.record_mode.clone(),
        record_rendition: if s.record_rendition.is_empty() { "source".into() } else { s.record_rendition.clone() },
        destinations: dests.iter().map(|d| destination_view(d, st.destinations.get(&d.id))).collect(),
        jobs: st.jobs,
        sessions: history.iter().map(Into::into).collect(),
    }
}

/// `GET /api/streams/{id}/live`: the stream as `GET /api/streams/{id}` shows it, as a
/// server-sent event named `stream` every second. Its rows are re-read only when the
/// engine synced (a change through the API, a stream starting or ending); the feed ends
/// when the stream is deleted or the server shuts down.
pub(super) async fn stream_live(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, AppError> {
    use futures_util::StreamExt;
    load_stream(&state, id).await?;
    struct Feed {
        state: AppState,
        changes: tokio::sync::watch::Receiver<u64>,
        rows: Option<(StreamRow, Vec<DestinationRow>, Vec<db::SessionRow>)>,
        tick: tokio::time::Interval,
    }
    let mut changes = state.engine.changes();
    changes.mark_changed();
    let feed = Feed { state: state.clone(), changes, rows: None, tick: tokio::time::interval(Duration::from_secs(1)) };
    let events = futures_util::stream::unfold(feed, move |mut f| async move {
        f.tick.tick().await;
        if f.changes.has_changed().unwrap_or(false) || f.rows.is_none() {
            f.changes.mark_unchanged();
            let s = db::stream(&f.state.db, id).await.ok()??;
            let dests = db::destinations(&f.state.db, id).await.ok()?;
            let history = db::stream_history(&f.state.db, id).await.ok()?;
            f.rows = Some((s, dests, history));
        }
        let (s, dests, history) = f.rows.as_ref()?;
        let (live, node) = live_of(&f.state, id).await.ok()?;
        let value = stream_value(&f.state, s, live, node, dests, history);
        let ev = Event::default().event("stream").json_data(&value).ok()?;
        Some((Ok(ev), f))
    })
    .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /api/streams?limit=&offset=`: the streams by id, a page at a time when `limit` is
/// given (the total in `X-Total-Count`, the next page in a `Link` header).
#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The largest page.
const MAX_PAGE: i64 = 1000;

pub(super) async fn list_streams(
    State(state): State<AppState>,
    _auth: Auth,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, AppError> {
    let axum::extract::Query(q) =
        query.map_err(|e| AppError::invalid("limit", format!("limit and offset are whole numbers: {e}")))?;
    if q.limit.is_some_and(|l| !(1..=MAX_PAGE).contains(&l)) {
        return Err(AppError::invalid("limit", format!("a page holds 1 to {MAX_PAGE} streams")));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(AppError::invalid("offset", "offset is 0 or more"));
    }
    // At most four queries and one question to the engine, whatever the number of streams
    // (the whole list is its own count).
    let streams = db::list_streams_page(&state.db, q.limit.unwrap_or(i64::MAX), offset).await?;
    let total = match (q.limit, offset) {
        (None, 0) => i64::try_from(streams.len()).unwrap_or(i64::MAX),
        _ => db::count_streams(&state.db).await?,
    };
    let ids = (streams.first().map_or(0, |s| s.id), streams.last().map_or(-1, |s| s.id));
    let dests = db::destinations_of_streams(&state.db, ids).await?;
    let history = db::stream_history_of(&state.db, ids).await?;
    let states = state.engine.stream_states(streams.iter().map(|s| s.id).collect()).await;
    let mut remote = match state.engine.cluster() {
        Some(c) => c.remote_leases().await?,
        None => Default::default(),
    };
    let none = crate::engine::StreamState::default();
    let out: Vec<StreamView> = streams
        .iter()
        .map(|s| {
            let own = dests.get(&s.id).map_or(&[][..], Vec::as_slice);
            let h = history.get(&s.id).map_or(&[][..], Vec::as_slice);
            let (live, node) = match remote.remove(&s.id).filter(|_| !state.engine.is_live(s.id)) {
                Some(lease) => (lease.live, Some(lease.node_id)),
                None => local_live(&state, s.id, states.get(&s.id).unwrap_or(&none)),
            };
            stream_value(&state, s, live, node, own, h)
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(total));
    if let Some(limit) = q.limit
        && offset + limit < total
    {
        let next = format!("</api/streams?limit={limit}&offset={}>; rel=\"next\"", offset + limit);
        if let Ok(v) = HeaderValue::from_str(&next) {
            headers.insert(header::LINK, v);
        }
    }
    Ok((headers, Json(out)))
}

#[derive(Deserialize)]
pub(super) struct StreamBody {
    name: Option<String>,
    /// Renditions, e.g. `1080p,720p,480p`; empty for none.
    ladder: Option<String>,
    /// `off`, `original` or `raw`.
    record_mode: Option<String>,
    /// `source` or a rendition of the ladder.
    record_rendition: Option<String>,
    /// An RTSP camera or an HLS playlist (http/https) to pull the stream from; empty:
    /// publishers push.
    pull_url: Option<String>,
    /// The passphrase SRT publishers must encrypt with (10 to 79 characters); empty: none.
    srt_passphrase: Option<String>,
    #[serde(default)]
    regenerate_key: bool,
}

/// An SRT passphrase: 10 to 79 URL-safe characters, or empty for none.
fn validate_srt_passphrase(p: &str) -> Result<String, AppError> {
    if !p.is_empty() && !(10..=79).contains(&p.len()) {
        return Err(AppError::invalid("srt_passphrase", "10 to 79 characters (or empty for none)"));
    }
    // it goes into URLs as it is (ffmpeg and OBS do not decode it)
    if !p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)) {
        return Err(AppError::invalid("srt_passphrase", "letters, digits and - _ . ~ only"));
    }
    Ok(p.to_string())
}

pub(super) async fn create_stream(
    State(state): State<AppState>,
    _auth: Auth,
    ApiJson(body): ApiJson<StreamBody>,
) -> Result<(StatusCode, Json<StreamView>), AppError> {
    let name = validate_name(body.name.as_deref().unwrap_or(""))?;
    let ladder = validate_ladder(body.ladder.as_deref().unwrap_or(""))?;
    let srt_passphrase = validate_srt_passphrase(body.srt_passphrase.as_deref().unwrap_or(""))?;
    let key = auth::random_hex(16)?;
    let id = db::create_stream(&state.db, &name, &key).await?;
    state.tokens.invalidate();
    if !ladder.is_empty() {
        db::set_stream_ladder(&state.db, id, &ladder).await?;
    }
    if !srt_passphrase.is_empty() {
        db::set_stream_srt_passphrase(&state.db, id, &srt_passphrase).await?;
    }
    let s = db::stream(&state.db, id).await?.ok_or_else(|| AppError::not_found("stream"))?;
    Ok((StatusCode::CREATED, Json(stream_view(&state, &s).await?)))
}

pub(super) async fn load_stream(state: &AppState, id: i64) -> Result<StreamRow, AppError> {
    db::stream(&state.db, id).await?.ok_or_else(|| AppError::not_found("stream"))
}

pub(super) async fn get_stream(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<StreamView>, AppError> {
    let s = load_stream(&state, id).await?;
    Ok(Json(stream_view(&state, &s).await?))
}

pub(super) async fn update_stream(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<StreamBody>,
) -> Result<Json<StreamView>, AppError> {
    let s = load_stream(&state, id).await?;
    // Every field is checked before anything is written, and all land in one transaction:
    // a refused field leaves the stream as it was.
    let name = body.name.as_deref().map(validate_name).transpose()?;
    let ladder = match &body.ladder {
        Some(spec) => {
            let ladder = validate_ladder(spec)?;
            let parsed: Ladder = ladder.parse().unwrap_or_default();
            for d in db::destinations(&state.db, s.id).await? {
                if !d.rendition.is_empty() && parsed.get(&d.rendition).is_none() {
                    return Err(AppError::invalid(
                        "ladder",
                        format!("destination {:?} receives {}; change it first", d.name, d.rendition),
                    ));
                }
            }
            Some(ladder)
        }
        None => None,
    };
    let pull_url = match &body.pull_url {
        Some(url) => {
            let url = url.trim();
            if !url.is_empty() {
                validate_pull_url(url)?;
            }
            Some(url.to_string())
        }
        None => None,
    };
    let record = if body.record_mode.is_some() || body.record_rendition.is_some() {
        let mode = body.record_mode.as_deref().unwrap_or(&s.record_mode).trim().to_string();
        mode.parse::<RecordMode>().map_err(|e| AppError::invalid("record_mode", e))?;
        // The rendition is checked against the ladder this request leaves.
        let after = StreamRow { ladder: ladder.clone().unwrap_or_else(|| s.ladder.clone()), ..s.clone() };
        let rendition = match &body.record_rendition {
            Some(r) => validate_rendition(&after, r).map_err(|e| AppError::invalid("record_rendition", e.message))?,
            None => s.record_rendition.clone(),
        };
        Some((mode, rendition))
    } else {
        None
    };
    let srt_passphrase = body.srt_passphrase.as_deref().map(validate_srt_passphrase).transpose()?;
    let key = if body.regenerate_key { Some(auth::random_hex(16)?) } else { None };
    let mut tx = db::begin(&state.db).await?;
    if let Some(name) = &name {
        db::rename_stream(&mut *tx, s.id, name).await?;
    }
    if let Some(key) = &key {
        db::set_stream_key(&mut *tx, s.id, key).await?;
    }
    if let Some(ladder) = &ladder {
        db::set_stream_ladder(&mut *tx, s.id, ladder).await?;
    }
    if let Some(url) = &pull_url {
        db::set_stream_pull_url(&mut *tx, s.id, url).await?;
    }
    if let Some(p) = &srt_passphrase {
        db::set_stream_srt_passphrase(&mut *tx, s.id, p).await?;
    }
    if let Some((mode, rendition)) = &record {
        db::set_stream_recording(&mut *tx, s.id, mode, rendition).await?;
    }
    tx.commit().await?;
    if key.is_some() {
        state.tokens.invalidate();
    }
    // Also after a rename or a new key: live pages re-read the stream on the engine's sync.
    state.engine.sync_stream(s.id).await?;
    let s = load_stream(&state, id).await?;
    Ok(Json(stream_view(&state, &s).await?))
}

#[derive(Deserialize)]
pub(super) struct RecordNowBody {
    active: bool,
}

/// "Record now" on a live stream (kind: the stream's setting, original when it is off).
pub(super) async fn set_recording(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RecordNowBody>,
) -> Result<Json<StreamView>, AppError> {
    let s = load_stream(&state, id).await?;
    if !state.engine.is_live(s.id)
        && let Some(c) = state.engine.cluster()
        && let Some(lease) = c.remote_lease(s.id).await?
    {
        // "record now" belongs to the session, which runs there
        return Err(AppError::new(
            ErrorKind::FailedPrecondition,
            format!("the stream is live on node {}: use that node ({})", lease.node_id, lease.http_url),
        ));
    }
    if body.active && !state.engine.is_live(s.id) {
        return Err(AppError::new(ErrorKind::FailedPrecondition, "the stream is not live"));
    }
    if !body.active && s.record_mode != "off" {
        return Err(AppError::new(
            ErrorKind::FailedPrecondition,
            "this stream records every session; set its recording to off to stop",
        ));
    }
    state.engine.set_record_now(s.id, body.active).await?;
    Ok(Json(stream_view(&state, &s).await?))
}

pub(super) async fn delete_stream(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    let deleted = db::delete_stream(&state.db, id).await?;
    state.tokens.invalidate();
    if !deleted {
        return Err(AppError::not_found("stream"));
    }
    state.engine.close_stream(id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct DestinationBody {
    name: Option<String>,
    url: Option<String>,
    enabled: Option<bool>,
    /// `source` (default) or a rung of the stream's ladder.
    rendition: Option<String>,
    /// `negotiate` (default) or `assume`.
    enhanced_rtmp: Option<String>,
}

fn validate_enhanced_rtmp(mode: &str) -> Result<String, AppError> {
    let mode = mode.trim();
    mode.parse::<EnhancedRtmp>().map_err(|e| AppError::invalid("enhanced_rtmp", e))?;
    Ok(mode.to_string())
}

pub(super) async fn create_destination(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<DestinationBody>,
) -> Result<(StatusCode, Json<DestinationView>), AppError> {
    let s = load_stream(&state, id).await?;
    let name = validate_name(body.name.as_deref().unwrap_or(""))?;
    let url = validate_url(body.url.as_deref().unwrap_or(""))?;
    let enabled = body.enabled.unwrap_or(true);
    let rendition = validate_rendition(&s, body.rendition.as_deref().unwrap_or(""))?;
    let enhanced = body.enhanced_rtmp.as_deref().map(validate_enhanced_rtmp).transpose()?;
    let did = db::create_destination(&state.db, s.id, &name, &url, enabled, &rendition).await?;
    if let Some(mode) = enhanced {
        let mut d = db::destination(&state.db, s.id, did).await?.ok_or_else(|| AppError::not_found("destination"))?;
        d.enhanced_rtmp = mode;
        db::update_destination(&state.db, &d).await?;
    }
    state.engine.sync_stream(s.id).await?;
    let d = db::destination(&state.db, s.id, did).await?.ok_or_else(|| AppError::not_found("destination"))?;
    let (live, _) = live_of(&state, s.id).await?;
    Ok((StatusCode::CREATED, Json(destination_view(&d, live.destinations.get(&d.id)))))
}

pub(super) async fn update_destination(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath((id, did)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<DestinationBody>,
) -> Result<Json<DestinationView>, AppError> {
    let mut d = db::destination(&state.db, id, did).await?.ok_or_else(|| AppError::not_found("destination"))?;
    if let Some(name) = &body.name {
        d.name = validate_name(name)?;
    }
    if let Some(url) = &body.url {
        d.url = validate_url(url)?;
    }
    if let Some(enabled) = body.enabled {
        d.enabled = enabled;
    }
    if let Some(r) = &body.rendition {
        let s = load_stream(&state, id).await?;
        d.rendition = validate_rendition(&s, r)?;
    }
    if let Some(mode) = &body.enhanced_rtmp {
        d.enhanced_rtmp = validate_enhanced_rtmp(mode)?;
    }
    db::update_destination(&state.db, &d).await?;
    state.engine.sync_stream(id).await?;
    let (live, _) = live_of(&state, id).await?;
    Ok(Json(destination_view(&d, live.destinations.get(&d.id))))
}

pub(super) async fn delete_destination(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath((id, did)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    if !db::delete_destination(&state.db, id, did).await? {
        return Err(AppError::not_found("destination"));
    }
    state.engine.sync_stream(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
