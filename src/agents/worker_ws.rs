//! The LiveKit Agents worker socket, `GET /agent`: a WebSocket of binary protobuf frames,
//! `WorkerMessage` in and `ServerMessage` out. The worker authenticates with an access token
//! carrying the `agent` grant (no identity), sends `register` first (within 10 s) and gets its id
//! back as the first frame; then it reports its status and load, answers availability requests,
//! and reports its jobs' status. WebSocket pings every 10 s keep the connection checked; a closed
//! socket unregisters the worker (its agents stay in their rooms).

use super::Agents;
use crate::metrics::Metrics;
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use parlor_signaling::protocol::proto;
use prost::Message as _;
use proto::server_message::Message as ServerMsg;
use proto::worker_message::Message as WorkerMsg;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// A worker must register within this long of connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Largest frame a worker may send.
const MAX_FRAME: usize = 256 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/agent", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or(q.get("access_token").map(String::as_str))
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "missing access token").into_response();
    };
    let claims = match state.keys.verify(token, state.clock.unix_secs()) {
        Ok(c) => c,
        Err(e) => return (StatusCode::UNAUTHORIZED, format!("invalid token: {e}")).into_response(),
    };
    if !claims.video().agent {
        return (StatusCode::UNAUTHORIZED, "token lacks the agent grant").into_response();
    }
    let Ok(ws) = ws else {
        return (StatusCode::NOT_FOUND, "the agent endpoint is a WebSocket").into_response();
    };
    let api_key = claims.iss.clone();
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            Metrics::inc(&state.metrics.websocket_connections);
            worker_session(socket, state.clone(), api_key).await;
            Metrics::dec(&state.metrics.websocket_connections);
        })
}

fn encode(m: ServerMsg) -> Message {
    Message::Binary(
        proto::ServerMessage { message: Some(m) }
            .encode_to_vec()
            .into(),
    )
}

async fn worker_session(mut ws: WebSocket, state: AppState, api_key: String) {
    let agents: Agents = state.agents.clone();
    let register = match tokio::time::timeout(REGISTER_TIMEOUT, first_register(&mut ws)).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(_) => {
            warn!("agent worker did not register within 10 s");
            return;
        }
    };
    if proto::JobType::try_from(register.r#type).is_err() || register.agent_name.len() > 256 {
        warn!(
            job_type = register.r#type,
            "agent worker registration refused"
        );
        return;
    }
    let (tx, mut rx) = mpsc::channel::<ServerMsg>(64);
    let Some(id) = agents.register(&register, api_key, tx) else {
        warn!("agent worker refused: too many workers");
        return;
    };
    info!(worker = %id, agent = %register.agent_name, version = %register.version,
        job_type = register.r#type, "agent worker registered");
    let reply = ServerMsg::Register(proto::RegisterWorkerResponse {
        worker_id: id.clone(),
        server_info: Some(proto::ServerInfo {
            edition: proto::server_info::Edition::Standard as i32,
            version: parlor_signaling::protocol::SERVER_VERSION.to_string(),
            protocol: parlor_signaling::protocol::PROTOCOL_VERSION,
            node_id: "parlor".into(),
            agent_protocol: 1,
            ..Default::default()
        }),
        ..Default::default()
    });
    if ws.send(encode(reply)).await.is_ok() {
        run(&mut ws, &state, &agents, &id, &mut rx).await;
    }
    agents.unregister(&id);
    info!(worker = %id, "agent worker gone");
}

/// The first frame, which must be a `register` (None: the socket ended or sent something else).
async fn first_register(ws: &mut WebSocket) -> Option<proto::RegisterWorkerRequest> {
    loop {
        match ws.recv().await? {
            Ok(Message::Binary(b)) => {
                return match proto::WorkerMessage::decode(b.as_ref()) {
                    Ok(proto::WorkerMessage {
                        message: Some(WorkerMsg::Register(r)),
                    }) => Some(r),
                    _ => {
                        warn!("agent worker's first message is not a register");
                        None
                    }
                };
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            _ => return None,
        }
    }
}

async fn run(
    ws: &mut WebSocket,
    state: &AppState,
    agents: &Agents,
    id: &str,
    rx: &mut mpsc::Receiver<ServerMsg>,
) {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                let _ = ws.send(Message::Close(None)).await;
                return;
            }
            out = rx.recv() => {
                let Some(m) = out else { return };
                if ws.send(encode(m)).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            msg = ws.recv() => {
                let b = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(_))) => {
                        debug!(worker = id, "text frame from an agent worker ignored");
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                };
                let Ok(m) = proto::WorkerMessage::decode(b.as_ref()) else {
                    warn!(worker = id, "undecodable message from an agent worker; closing");
                    Metrics::inc(&state.metrics.signal_errors);
                    return;
                };
                if !handle(ws, state, agents, id, m).await {
                    return;
                }
            }
        }
    }
}

/// One worker message; false ends the session.
async fn handle(
    ws: &mut WebSocket,
    state: &AppState,
    agents: &Agents,
    id: &str,
    m: proto::WorkerMessage,
) -> bool {
    match m.message {
        Some(WorkerMsg::UpdateWorker(u)) => agents.update_worker(id, &u),
        Some(WorkerMsg::Availability(a)) => agents.availability(id, a),
        Some(WorkerMsg::UpdateJob(u)) => agents.update_job(state, id, &u),
        Some(WorkerMsg::Ping(p)) => {
            let pong = ServerMsg::Pong(proto::WorkerPong {
                last_timestamp: p.timestamp,
                timestamp: state.clock.unix_ms(),
            });
            return ws.send(encode(pong)).await.is_ok();
        }
        // Job migration and simulated jobs are not supported (LiveKit's OSS server ignores
        // migrations too); a second register is a protocol error.
        Some(WorkerMsg::MigrateJob(_) | WorkerMsg::SimulateJob(_)) => {
            debug!(worker = id, "agent worker message not supported; ignored");
        }
        Some(WorkerMsg::Register(_)) | None => {
            warn!(
                worker = id,
                "unexpected message from an agent worker; closing"
            );
            return false;
        }
    }
    true
}
