//! WebSocket signaling: the LiveKit signal protocol on top of the media worker, in both versions:
//! v0 at `/rtc` (two peer connections, query parameters) and v1 at `/rtc/v1` (one peer connection,
//! a `join_request` parameter that may carry the client's first offer and AddTrack requests; see
//! `sfu::worker::single_pc`). One task per connection; it talks to the worker only through typed
//! commands.

use crate::error::KeepBody;
use crate::metrics::Metrics;
use crate::sfu::worker::{Cmd, JoinError, JoinReq, Out, Perms, SignalIn};
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use parlor_signaling::protocol::{self, leave_response, proto, CandidateInit, Target};
use parlor_signaling::Claims;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rtc", get(rtc))
        .route("/rtc/validate", get(validate))
        .route("/rtc/v1", get(rtc_v1))
        .route("/rtc/v1/validate", get(validate))
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.extensions_mut().insert(KeepBody);
    r
}

fn token_from(params: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = params.get("access_token") {
        return Some(t.clone());
    }
    let h = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Validate the join token: signature, expiry, roomJoin grant and a room name.
fn authorize(
    state: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Claims, (StatusCode, &'static str)> {
    let token =
        token_from(params, headers).ok_or((StatusCode::UNAUTHORIZED, "missing access token"))?;
    let claims = state
        .keys
        .verify_join(&token, state.clock.unix_secs())
        .map_err(|_| (StatusCode::UNAUTHORIZED, "invalid or expired access token"))?;
    let grant = claims.video();
    if !grant.room_join {
        return Err((StatusCode::FORBIDDEN, "token lacks the roomJoin grant"));
    }
    let room = grant.room.as_deref().unwrap_or("");
    if crate::api::rooms::validate_room_name(room).is_err() {
        return Err((StatusCode::FORBIDDEN, "token names no valid room"));
    }
    if claims.sub.is_empty() || claims.sub.len() > 256 {
        return Err((StatusCode::UNAUTHORIZED, "token has no valid identity"));
    }
    Ok(claims)
}

async fn validate(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut r = match authorize(&state, &params, &headers) {
        Ok(_) => text(StatusCode::OK, "success"),
        Err((status, msg)) => text(status, msg),
    };
    // livekit-client fetches this from the page's origin after a failed upgrade; without CORS the
    // fetch throws and the SDK reports a network error instead of the reason.
    r.headers_mut().insert(
        axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    r
}

/// What the client asked for when it connected.
struct Connect {
    params: HashMap<String, String>,
    /// v1: the decoded `join_request` (None: v0).
    v1: Option<proto::JoinRequest>,
}

impl Connect {
    fn auto_subscribe(&self) -> bool {
        match &self.v1 {
            Some(jr) => jr
                .connection_settings
                .as_ref()
                .is_none_or(|c| c.auto_subscribe),
            None => self
                .params
                .get("auto_subscribe")
                .is_none_or(|v| v != "0" && v != "false"),
        }
    }
    fn reconnect(&self) -> bool {
        match &self.v1 {
            Some(jr) => jr.reconnect,
            None => self
                .params
                .get("reconnect")
                .is_some_and(|v| v == "1" || v == "true"),
        }
    }
}

async fn rtc_v1(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let claims = match authorize(&state, &params, &headers) {
        Ok(c) => c,
        Err((status, msg)) => return text(status, msg),
    };
    let token = token_from(&params, &headers).unwrap_or_default();
    let connect = match connect_for(&state, params, true) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    upgrade(state, claims, connect, ws, token).await
}

/// What a connection asks for: v0 reads the query; v1 decodes its `join_request` (older v1 clients
/// put the parameters in the query, as v0 does).
fn connect_for(
    state: &AppState,
    params: HashMap<String, String>,
    v1: bool,
) -> Result<Connect, String> {
    if !v1 {
        return Ok(Connect { params, v1: None });
    }
    let limits = parlor_signaling::join_request::Limits {
        max_encoded: state
            .config
            .limits
            .max_signal_message_bytes
            .saturating_mul(2),
        max_decoded: state.config.limits.max_signal_message_bytes,
    };
    let jr = match params.get("join_request") {
        Some(p) => parlor_signaling::join_request::decode(p, limits).map_err(|e| {
            Metrics::inc(&state.metrics.signal_errors);
            warn!(error = %e, "bad v1 join_request");
            format!("invalid join_request: {e}")
        })?,
        None => proto::JoinRequest {
            connection_settings: Some(proto::ConnectionSettings {
                auto_subscribe: params
                    .get("auto_subscribe")
                    .is_none_or(|v| v != "0" && v != "false"),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    Ok(Connect {
        params,
        v1: Some(jr),
    })
}

async fn rtc(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let claims = match authorize(&state, &params, &headers) {
        Ok(c) => c,
        Err((status, msg)) => return text(status, msg),
    };
    let token = token_from(&params, &headers).unwrap_or_default();
    let connect = Connect { params, v1: None };
    upgrade(state, claims, connect, ws, token).await
}

async fn upgrade(
    state: AppState,
    claims: Claims,
    connect: Connect,
    ws: WebSocketUpgrade,
    token: String,
) -> Response {
    let max = state.config.limits.max_signal_message_bytes;
    let ws = ws.max_message_size(max).max_frame_size(max);
    // Multi-node mode: the room may live on another node; then this node only relays.
    let room = claims.video().room.unwrap_or_default();
    let open_here = state.sfu.room_worker(&room).is_some();
    match state.cluster.route(&room, open_here).await {
        Ok(crate::cluster::Route::Local) => {}
        Ok(crate::cluster::Route::Remote(owner)) => {
            let start = crate::cluster::relay::Start {
                token,
                params: connect.params,
                v1: connect.v1.is_some(),
            };
            let side = match state.cluster.open_relay(&owner, &start).await {
                Ok(side) => side,
                Err(e) => {
                    warn!(room = %room, node = %owner, error = %e, "cannot relay to the room's node");
                    return text(StatusCode::SERVICE_UNAVAILABLE, "room node unavailable");
                }
            };
            info!(room = %room, participant = %claims.sub, node = %owner, "relaying signal session to the room's node");
            let rate = state.config.limits.max_signal_messages_per_sec;
            return ws.on_upgrade(move |socket| async move {
                Metrics::inc(&state.metrics.websocket_connections);
                crate::cluster::edge::pump(socket, side, rate, state.shutdown.clone()).await;
                Metrics::dec(&state.metrics.websocket_connections);
            });
        }
        Err(e) => {
            warn!(room = %room, error = %e, "cannot place the room: cluster store unavailable");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster unavailable, retry",
            );
        }
    }
    ws.on_upgrade(move |socket| async move {
        Metrics::inc(&state.metrics.websocket_connections);
        count_session(&state, &connect);
        session(socket, state.clone(), claims, connect).await;
        Metrics::dec(&state.metrics.websocket_connections);
    })
}

fn count_session(state: &AppState, connect: &Connect) {
    Metrics::inc(if connect.v1.is_some() {
        &state.metrics.signal_sessions_v1
    } else {
        &state.metrics.signal_sessions_v0
    });
}

/// Run a session another node relays here (its client's WebSocket is on that node): authorized
/// again with this node's keys, then exactly as a local one.
pub(crate) async fn relayed(state: AppState, started: crate::cluster::relay::Started) {
    let crate::cluster::relay::Started {
        start,
        session: mut relayed,
    } = started;
    let mut headers = HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("Bearer {}", start.token)) {
        headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    let claims = match authorize(&state, &start.params, &headers) {
        Ok(c) => c,
        Err((_, msg)) => return relayed.close_with(1008, msg).await,
    };
    let connect = match connect_for(&state, start.params, start.v1) {
        Ok(c) => c,
        Err(e) => return relayed.close_with(1007, &e).await,
    };
    info!(participant = %claims.sub, edge = relayed.edge(), "relayed signal session");
    count_session(&state, &connect);
    session(relayed, state, claims, connect).await;
}

/// Run the sessions other nodes relay here, each in its own task.
pub fn spawn_relayed(state: AppState, mut starts: mpsc::Receiver<crate::cluster::relay::Started>) {
    tokio::spawn(async move {
        while let Some(started) = starts.recv().await {
            tokio::spawn(relayed(state.clone(), started));
        }
    });
}

/// A client frame, as a session sees it.
pub(crate) enum ClientFrame {
    Binary(bytes::Bytes),
    Text,
    Close,
    Control,
}

/// One end of a signal session: the client's WebSocket on this node, or a session another node
/// relays (`cluster::relay`).
pub(crate) trait SignalSocket: Send {
    /// The next client frame; None once the client is gone.
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<ClientFrame>> + Send;
    fn send_frame(&mut self, b: Vec<u8>) -> impl std::future::Future<Output = bool> + Send;
    fn close_with(
        &mut self,
        code: u16,
        reason: &str,
    ) -> impl std::future::Future<Output = ()> + Send;
    /// After a close: read what the client still sends until it answers (see `flood`).
    fn drain(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

impl SignalSocket for WebSocket {
    async fn next_frame(&mut self) -> Option<ClientFrame> {
        Some(match WebSocket::recv(self).await?.ok()? {
            Message::Binary(b) => ClientFrame::Binary(b),
            Message::Text(_) => ClientFrame::Text,
            Message::Close(_) => ClientFrame::Close,
            Message::Ping(_) | Message::Pong(_) => ClientFrame::Control,
        })
    }
    async fn send_frame(&mut self, b: Vec<u8>) -> bool {
        WebSocket::send(self, Message::Binary(b.into()))
            .await
            .is_ok()
    }
    async fn close_with(&mut self, code: u16, reason: &str) {
        let _ = WebSocket::send(
            self,
            Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            })),
        )
        .await;
    }
    async fn drain(&mut self) {
        crate::flood::drain_until_closed(self).await;
    }
}

impl SignalSocket for crate::cluster::relay::OwnerSide {
    async fn next_frame(&mut self) -> Option<ClientFrame> {
        match self.recv().await? {
            crate::cluster::relay::Frame::Binary(b) => Some(ClientFrame::Binary(b.into())),
            crate::cluster::relay::Frame::Close(..) => Some(ClientFrame::Close),
        }
    }
    async fn send_frame(&mut self, b: Vec<u8>) -> bool {
        self.send(&b).await
    }
    async fn close_with(&mut self, code: u16, reason: &str) {
        self.close(code, reason).await;
    }
    async fn drain(&mut self) {}
}

async fn send(ws: &mut impl SignalSocket, msg: Resp) -> bool {
    ws.send_frame(protocol::encode_response(msg)).await
}

async fn session(mut ws: impl SignalSocket, state: AppState, claims: Claims, mut connect: Connect) {
    let room = claims.video().room.unwrap_or_default();
    let identity = claims.sub.clone();
    // We do not support session resumption: ask for a full reconnect.
    if connect.reconnect() {
        send(
            &mut ws,
            leave_response(
                proto::DisconnectReason::StateMismatch,
                proto::leave_request::Action::Reconnect,
            ),
        )
        .await;
        ws.close_with(1000, "resume not supported").await;
        return;
    }
    let grant = claims.video();
    let (events_tx, mut events) = mpsc::channel::<Out>(512);
    // One room model: a stored room (`POST /api/rooms`) opens under its sid and limit.
    let open_as = crate::api::rooms::open_as(&state.store, &room).await;
    let kind = participant_kind(&claims);
    // LiveKit: a token's `roomConfig.agents` are dispatched when its join opens the room.
    if let Some(agents) = room_config_agents(&claims) {
        if state.sfu.room_worker(&room).is_none() {
            state.agents.room_config(&room, agents);
        }
    }
    let make_req = || JoinReq {
        room: room.clone(),
        identity: identity.clone(),
        name: claims.name.clone().unwrap_or_default(),
        metadata: claims.metadata.clone().unwrap_or_default(),
        attributes: claims
            .attributes
            .clone()
            .map(|a| a.into_iter().collect())
            .unwrap_or_default(),
        perms: Perms {
            can_publish: grant.can_publish(),
            can_subscribe: grant.can_subscribe(),
            can_publish_data: grant.can_publish_data(),
            can_update_metadata: grant.can_update_own_metadata.unwrap_or(false),
        },
        auto_subscribe: connect.auto_subscribe(),
        events: events_tx.clone(),
        kind,
        single_pc: connect.v1.is_some(),
        local: None,
        hidden: false,
        open_as: open_as.clone(),
    };
    let routed = crate::sfu::worker::route_join(
        &state.sfu,
        &state.workers,
        state.config.room.max_rooms,
        &room,
        make_req,
    )
    .await;
    let (joined, worker) = match routed {
        Ok(x) => x,
        Err(e @ (JoinError::ShuttingDown | JoinError::Timeout)) => {
            warn!(room = %room, participant = %identity, error = %e, "join failed");
            ws.close_with(1011, &e.to_string()).await;
            return;
        }
        Err(e) => {
            warn!(room = %room, participant = %identity, error = %e, "join refused");
            send(
                &mut ws,
                leave_response(
                    proto::DisconnectReason::JoinFailure,
                    proto::leave_request::Action::Disconnect,
                ),
            )
            .await;
            ws.close_with(1008, &e.to_string()).await;
            return;
        }
    };
    // Only the worker holds the session's event sender now: it closing means "removed".
    drop(events_tx);
    let pid = joined.pid;
    let mut join = joined.join;
    join.ice_servers = state.ice().ice_servers_proto(&identity);
    if !send(&mut ws, Resp::Join(join)).await {
        let _ = worker.tx.send(Cmd::Leave(pid)).await;
        return;
    }
    info!(room = %room, participant = %identity, v1 = connect.v1.is_some(), "signal session started");
    // v1: what the join request carried, in the order the client made it (tracks, then the offer).
    if let Some(jr) = connect.v1.take() {
        let first = jr
            .add_track_requests
            .into_iter()
            .map(SignalIn::AddTrack)
            .chain(jr.publisher_offer.map(SignalIn::Offer));
        for m in first {
            if worker.tx.send(Cmd::Signal(pid, Box::new(m))).await.is_err() {
                return;
            }
        }
    }

    let mut flood = crate::flood::FloodLimit::new(
        state.config.limits.max_signal_messages_per_sec,
        Instant::now(),
    );
    let ping_timeout = Duration::from_secs(20);
    let mut last_seen = Instant::now();
    let mut liveness = tokio::time::interval(Duration::from_secs(1));
    let shutdown = state.shutdown.clone();
    let mut close_reason: Option<(u16, &'static str)> = None;

    loop {
        tokio::select! {
            msg = ws.next_frame() => {
                let Some(msg) = msg else { break };
                last_seen = Instant::now();
                if !flood.admit(last_seen) {
                    Metrics::inc(&state.metrics.signal_errors);
                    warn!(room = %room, participant = %identity, "signal flood; closing");
                    close_reason = Some((crate::flood::CLOSE_CODE, "too many signal messages"));
                    break;
                }
                let bytes = match msg {
                    ClientFrame::Binary(b) => b,
                    ClientFrame::Close => break,
                    ClientFrame::Control => continue,
                    ClientFrame::Text => {
                        Metrics::inc(&state.metrics.signal_errors);
                        close_reason = Some((1003, "binary protobuf frames expected"));
                        break;
                    }
                };
                let req = match protocol::decode_request(&bytes, state.config.limits.max_signal_message_bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        Metrics::inc(&state.metrics.signal_errors);
                        warn!(room = %room, participant = %identity, error = %e, "bad signal message; closing");
                        close_reason = Some((1007, "malformed signal message"));
                        break;
                    }
                };
                let cmd = match incoming(req) {
                    Incoming::Forward(cmd) => Some(cmd),
                    Incoming::BadCandidate(e) => {
                        debug!(error = %e, "ignoring malformed trickle candidate");
                        Metrics::inc(&state.metrics.signal_errors);
                        None
                    }
                    Incoming::Leave => break,
                    Incoming::Ping => {
                        if !send(&mut ws, Resp::Pong(state.clock.unix_ms())).await { break }
                        None
                    }
                    Incoming::PingReq(p) => {
                        let pong = proto::Pong { last_ping_timestamp: p.timestamp, timestamp: state.clock.unix_ms() };
                        if !send(&mut ws, Resp::PongResp(pong)).await { break }
                        None
                    }
                    Incoming::Ignore => None,
                };
                if let Some(cmd) = cmd {
                    if worker.tx.send(Cmd::Signal(pid, Box::new(cmd))).await.is_err() {
                        break;
                    }
                }
            }
            out = events.recv() => match out {
                Some(Out::Signal(m)) => if !send(&mut ws, *m).await { break },
                Some(Out::Close(reason)) => { close_reason = Some((1000, reason)); break }
                None => { close_reason = Some((1000, "removed")); break }
            },
            _ = liveness.tick() => {
                if last_seen.elapsed() > ping_timeout {
                    close_reason = Some((1001, "ping timeout"));
                    break;
                }
            }
            _ = shutdown.cancelled() => {
                send(&mut ws, leave_response(proto::DisconnectReason::ServerShutdown, proto::leave_request::Action::Disconnect)).await;
                close_reason = Some((1001, "server shutting down"));
                break;
            }
        }
    }
    let _ = worker.tx.send(Cmd::Leave(pid)).await;
    if let Some((code, reason)) = close_reason {
        ws.close_with(code, reason).await;
        if code == crate::flood::CLOSE_CODE {
            // Unread flood data would reset the connection before the client sees the reason.
            ws.drain().await;
        }
    }
    info!(room = %room, participant = %identity, "signal session ended");
}

/// What the session does with one decoded client request.
pub(crate) enum Incoming {
    /// Hand to the media worker.
    Forward(SignalIn),
    /// A trickle candidate whose JSON does not parse (ignored, counted).
    BadCandidate(parlor_signaling::protocol::ProtocolError),
    Leave,
    /// Legacy ping: answer with the server time.
    Ping,
    PingReq(proto::Ping),
    /// Requests we do not act on.
    Ignore,
}

/// Map a decoded `SignalRequest` to what the session does with it.
pub(crate) fn incoming(req: Req) -> Incoming {
    match req {
        Req::Offer(sd) => Incoming::Forward(SignalIn::Offer(sd)),
        Req::Answer(sd) => Incoming::Forward(SignalIn::Answer(sd)),
        Req::Trickle(t) => match CandidateInit::parse(&t.candidate_init) {
            Ok(c) => Incoming::Forward(SignalIn::Trickle(Target::from_i32(t.target), c)),
            Err(e) => Incoming::BadCandidate(e),
        },
        Req::AddTrack(a) => Incoming::Forward(SignalIn::AddTrack(a)),
        Req::Mute(m) => Incoming::Forward(SignalIn::Mute(m)),
        Req::Subscription(s) => Incoming::Forward(SignalIn::Subscription(s)),
        Req::TrackSetting(s) => Incoming::Forward(SignalIn::TrackSetting(s)),
        Req::UpdateMetadata(m) => Incoming::Forward(SignalIn::UpdateMetadata(m)),
        Req::Leave(_) => Incoming::Leave,
        Req::Ping(_) => Incoming::Ping,
        Req::PingReq(p) => Incoming::PingReq(p),
        _ => Incoming::Ignore,
    }
}

/// The participant kind a token names (LiveKit's lower-case `kind` claim, or the `agent` grant).
fn participant_kind(claims: &Claims) -> proto::participant_info::Kind {
    use proto::participant_info::Kind;
    match claims.kind.as_deref() {
        Some("agent") => Kind::Agent,
        Some("egress") => Kind::Egress,
        Some("ingress") => Kind::Ingress,
        Some("sip") => Kind::Sip,
        _ if claims.video().agent => Kind::Agent,
        _ => Kind::Standard,
    }
}

/// The `roomConfig.agents` of a token, if it has any (a malformed `roomConfig` is ignored with a
/// warning: the join itself is not refused for it).
fn room_config_agents(claims: &Claims) -> Option<Vec<proto::RoomAgentDispatch>> {
    let v = claims.room_config.as_ref()?;
    match serde_json::from_value::<proto::RoomConfiguration>(v.clone()) {
        Ok(c) if !c.agents.is_empty() => Some(c.agents),
        Ok(_) => None,
        Err(e) => {
            warn!(participant = %claims.sub, error = %e, "token roomConfig ignored: not a RoomConfiguration");
            None
        }
    }
}
