//! Platform accounts (YouTube, MTS Link) and the broadcasts streams feed on them.

#[allow(unused_imports)]
use super::prelude::*;
use crate::db::BroadcastRow;
use crate::platforms::broadcasts::{self, NewBroadcastBody};
use crate::platforms::{Account, FlowState, oauth_error};

async fn platform_view(state: &AppState, id: i64) -> Result<PlatformView, AppError> {
    let row = db::platform(&state.db, id).await?.ok_or_else(|| AppError::not_found("platform account"))?;
    Ok(PlatformView::from(&row))
}

pub(super) async fn list_platforms(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<PlatformView>>, AppError> {
    Ok(Json(db::platforms(&state.db).await?.iter().map(PlatformView::from).collect()))
}

#[derive(serde::Serialize)]
pub(super) struct OAuthClientView {
    configured: bool,
    client_id: Option<String>,
    /// Set by the server's configuration (flags or environment), not editable in the UI.
    from_config: bool,
    /// Whether accounts can also connect by redirect (the server has a public URL).
    redirect_flow: bool,
}

async fn oauth_client_view(state: &AppState) -> Result<OAuthClientView, AppError> {
    let client = state.platforms.oauth_client().await?;
    Ok(OAuthClientView {
        configured: client.is_some(),
        client_id: client.as_ref().map(|c| c.0.clone()),
        from_config: client.as_ref().is_some_and(|c| c.2),
        redirect_flow: state.platforms.config.public_url.is_some(),
    })
}

pub(super) async fn get_oauth_client(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<OAuthClientView>, AppError> {
    Ok(Json(oauth_client_view(&state).await?))
}

#[derive(Deserialize)]
pub(super) struct OAuthClientBody {
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

pub(super) async fn set_oauth_client(
    State(state): State<AppState>,
    _auth: Auth,
    ApiJson(body): ApiJson<OAuthClientBody>,
) -> Result<Json<OAuthClientView>, AppError> {
    state.platforms.set_oauth_client(&body.client_id, &body.client_secret).await?;
    Ok(Json(oauth_client_view(&state).await?))
}

#[derive(serde::Serialize)]
pub(super) struct DeviceFlowView {
    flow_id: String,
    user_code: String,
    verification_url: String,
    expires_in: u64,
}

pub(super) async fn start_device_flow(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<DeviceFlowView>, AppError> {
    let (flow_id, user_code, verification_url, expires_in) = state.platforms.start_device_flow().await?;
    Ok(Json(DeviceFlowView { flow_id, user_code, verification_url, expires_in }))
}

#[derive(serde::Serialize)]
pub(super) struct DeviceFlowStateView {
    /// `pending`, `connected`, `denied`, `expired` or `error`.
    state: &'static str,
    account: Option<PlatformView>,
    error: Option<String>,
}

pub(super) async fn device_flow_state(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(flow_id): ApiPath<String>,
) -> Result<Json<DeviceFlowStateView>, AppError> {
    let flow = state.platforms.device_flow(&flow_id).ok_or_else(|| AppError::not_found("device flow"))?;
    let view = |s, error: Option<String>| DeviceFlowStateView { state: s, account: None, error };
    Ok(Json(match flow {
        FlowState::Pending => view("pending", None),
        FlowState::Connected(id) => {
            DeviceFlowStateView { state: "connected", account: Some(platform_view(&state, id).await?), error: None }
        }
        FlowState::Denied => view("denied", Some("access was denied on Google's page".into())),
        FlowState::Expired => view("expired", Some("the code expired before it was approved; start again".into())),
        FlowState::Failed(e) => view("error", Some(e)),
    }))
}

#[derive(serde::Serialize)]
pub(super) struct AuthorizeView {
    url: String,
}

/// The consent page to send the browser to (authorization code + PKCE).
pub(super) async fn authorize(State(state): State<AppState>, _auth: Auth) -> Result<Json<AuthorizeView>, AppError> {
    Ok(Json(AuthorizeView { url: state.platforms.authorization_url().await? }))
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Google's redirect back. No session is needed (the session cookie does not travel on a
/// cross-site redirect): the single-use `state` the server issued is the authority.
pub(super) async fn oauth_callback(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Response {
    let outcome = match (q.code, q.state, q.error) {
        (_, _, Some(e)) => Err(oauth_error(&match e.as_str() {
            "access_denied" => multistreamer_core::platform::OAuthError::AccessDenied,
            _ => multistreamer_core::platform::OAuthError::Other { status: 400, error: e, description: String::new() },
        })),
        (Some(code), Some(st), None) => state.platforms.finish_code_flow(&code, &st).await,
        _ => Err(AppError::invalid("code", "the redirect carries no code")),
    };
    let target = match outcome {
        Ok(_) => "/#/settings?connected=youtube".to_string(),
        Err(e) => format!(
            "/#/settings?error={}",
            url::form_urlencoded::byte_serialize(e.message.as_bytes()).collect::<String>()
        ),
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response()
}

#[derive(Deserialize)]
pub(super) struct MtsLinkBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
}

pub(super) async fn connect_mtslink(
    State(state): State<AppState>,
    _auth: Auth,
    ApiJson(body): ApiJson<MtsLinkBody>,
) -> Result<(StatusCode, Json<PlatformView>), AppError> {
    let name = match body.name.trim() {
        "" => "webinar.ru".to_string(),
        n if n.chars().count() > 100 => return Err(AppError::invalid("name", "at most 100 characters")),
        n => n.to_string(),
    };
    if body.token.trim().is_empty() {
        return Err(AppError::invalid("token", "an API token is required"));
    }
    // it travels in a header: printable ASCII only
    if !body.token.trim().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid("token", "an API token is letters, digits and punctuation (no spaces)"));
    }
    let id = state.platforms.connect_mtslink(&name, &body.token).await?;
    Ok((StatusCode::CREATED, Json(platform_view(&state, id).await?)))
}

pub(super) async fn disconnect(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    state.platforms.disconnect(id).await?;
    state.engine.sync_stream(0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Serialize)]
pub(super) struct UpcomingView {
    remote_id: String,
    title: String,
    scheduled_start: Option<String>,
    state: String,
    watch_url: String,
}

/// The channel's upcoming broadcasts (to attach one instead of creating one).
pub(super) async fn upcoming(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<UpcomingView>>, AppError> {
    let (_, account) = state.platforms.account(id).await?;
    let Account::YouTube(yt) = account else {
        return Err(AppError::new(ErrorKind::FailedPrecondition, "only YouTube accounts list upcoming broadcasts"));
    };
    let list = state.platforms.youtube_outcome(id, yt.upcoming_broadcasts().await).await?;
    Ok(Json(
        list.into_iter()
            .map(|b| UpcomingView {
                watch_url: b.watch_url(),
                remote_id: b.id,
                title: b.title,
                scheduled_start: b.scheduled_start_time,
                state: b.life_cycle_status,
            })
            .collect(),
    ))
}

async fn broadcast_view(state: &AppState, b: &BroadcastRow) -> Result<BroadcastView, AppError> {
    let (kind, name) = match db::platform(&state.db, b.platform_id).await? {
        Some(p) => (p.kind, p.name),
        None => (String::new(), String::new()),
    };
    Ok(BroadcastView {
        id: b.id,
        stream_id: b.stream_id,
        platform_id: b.platform_id,
        platform: kind,
        platform_name: name,
        remote_id: b.remote_id.clone(),
        title: b.title.clone(),
        state: b.state.clone(),
        watch_url: b.watch_url.clone(),
        destination_id: b.destination_id,
        backup_destination_id: b.backup_destination_id,
        auto_live: b.auto_live,
        last_error: b.last_error.clone(),
        health: state.platforms.health(b.id),
        created_at: b.created_at,
    })
}

async fn load_broadcast(state: &AppState, id: i64) -> Result<BroadcastRow, AppError> {
    db::broadcast(&state.db, id).await?.ok_or_else(|| AppError::not_found("broadcast"))
}

/// A stream's broadcasts, as last reported (no call to the platform: the monitor polls).
pub(super) async fn list_broadcasts(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<BroadcastView>>, AppError> {
    super::streams::load_stream(&state, id).await?;
    let mut out = Vec::new();
    for b in db::broadcasts_of(&state.db, id).await? {
        out.push(broadcast_view(&state, &b).await?);
    }
    Ok(Json(out))
}

pub(super) async fn create_broadcast(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewBroadcastBody>,
) -> Result<(StatusCode, Json<BroadcastView>), AppError> {
    let stream = super::streams::load_stream(&state, id).await?;
    let bid = broadcasts::create(&state, &stream, body).await?;
    state.engine.sync_stream(id).await?;
    let b = load_broadcast(&state, bid).await?;
    Ok((StatusCode::CREATED, Json(broadcast_view(&state, &b).await?)))
}

pub(super) async fn get_broadcast(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BroadcastView>, AppError> {
    let b = load_broadcast(&state, id).await?;
    Ok(Json(broadcast_view(&state, &b).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastPatch {
    auto_live: Option<bool>,
    /// The RTMP URL (with key) the broadcast is fed at: an MTS Link room's.
    ingest_url: Option<String>,
}

pub(super) async fn update_broadcast(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<BroadcastPatch>,
) -> Result<Json<BroadcastView>, AppError> {
    let b = load_broadcast(&state, id).await?;
    if let Some(url) = &body.ingest_url {
        broadcasts::set_ingest_url(&state, &b, url).await?;
    }
    if let Some(auto) = body.auto_live {
        db::set_broadcast_auto_live(&state.db, id, auto).await?;
        state.engine.sync_stream(b.stream_id).await?;
    }
    let b = load_broadcast(&state, id).await?;
    Ok(Json(broadcast_view(&state, &b).await?))
}

#[derive(Deserialize)]
pub(super) struct TransitionBody {
    to: String,
}

pub(super) async fn transition(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<TransitionBody>,
) -> Result<Json<BroadcastView>, AppError> {
    let b = load_broadcast(&state, id).await?;
    broadcasts::transition(&state, &b, &body.to).await?;
    let b = load_broadcast(&state, id).await?;
    Ok(Json(broadcast_view(&state, &b).await?))
}

pub(super) async fn delete_broadcast(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    let b = load_broadcast(&state, id).await?;
    broadcasts::delete(&state, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}
