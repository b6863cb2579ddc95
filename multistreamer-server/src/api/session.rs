//! Signing in and out, the signed-in user, password changes.

#[allow(unused_imports)]
use super::prelude::*;

#[derive(Deserialize)]
pub(super) struct LoginBody {
    username: String,
    password: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, AppError> {
    let ip = Some(peer.ip());
    state.login_limiter.check(ip, &body.username)?;
    let user = db::user_by_name(&state.db, &body.username).await?;
    let ok = match &user {
        Some((_, hash)) => auth::verify_password_off_thread(body.password.clone(), hash.clone()).await,
        None => {
            // spend the same time as a real check
            let _ = auth::verify_password_off_thread(body.password.clone(), state.dummy_hash.to_string()).await;
            false
        }
    };
    let Some((user_id, _)) = user.filter(|_| ok) else {
        state.login_limiter.failed(ip, &body.username);
        tracing::warn!(%peer, username = %body.username, "failed sign-in");
        return Err(AppError::new(ErrorKind::Unauthenticated, "wrong username or password"));
    };
    state.login_limiter.succeeded(&body.username);
    let sid = auth::random_hex(32)?;
    let csrf = auth::random_hex(32)?;
    db::create_session(&state.db, &sid, user_id, &csrf, db::now() + SESSION_TTL_S).await?;
    let cookie = format!("{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_TTL_S}");
    let mut resp = Json(LoginView { username: body.username, csrf_token: csrf }).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, header_value(&cookie)?);
    Ok(resp)
}

pub(super) async fn logout(State(state): State<AppState>, auth: Auth) -> Result<Response, AppError> {
    db::delete_session(&state.db, &auth.session_id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, header_value(&format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))?);
    Ok(resp)
}

pub(super) async fn me(auth: Auth) -> Json<LoginView> {
    Json(LoginView { username: auth.username, csrf_token: auth.csrf_token })
}

#[derive(Deserialize)]
pub(super) struct PasswordBody {
    current: String,
    new: String,
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, AppError> {
    let hash = db::user_hash(&state.db, auth.user_id).await?.ok_or_else(|| AppError::not_found("user"))?;
    if !auth::verify_password_off_thread(body.current.clone(), hash).await {
        return Err(AppError::invalid("current", "the current password is wrong"));
    }
    if body.new.chars().count() < 10 {
        return Err(AppError::invalid("new", "use at least 10 characters"));
    }
    db::set_password(&state.db, auth.user_id, &auth::hash_password_off_thread(body.new.clone()).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}
