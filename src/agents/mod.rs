//! LiveKit Agents: the workers registered on `/agent` ([`worker_ws`]), each room's agent dispatches
//! and their jobs, and the dispatching itself (an AvailabilityRequest to the least-loaded matching
//! worker, the next one when it declines or does not answer in time, then a JobAssignment with a
//! join token for the agent participant).
//!
//! Dispatches come from AgentDispatchService.CreateDispatch, from CreateRoom's `agents`, from the
//! `roomConfig.agents` of the token whose join opens a room, or, for a room opened with none of
//! those while a worker without an agent name is registered, one automatic dispatch (LiveKit's
//! default). Each dispatch gets a room job (`JT_ROOM`) at once, a participant job (`JT_PARTICIPANT`)
//! for every member who joins and a publisher job (`JT_PUBLISHER`) for every member's first
//! published track — each only when a worker of that agent name and job type is registered.
//! Control-path state only (one mutex, never held across an await); the SFU's lifecycle events tell
//! it when rooms open and close, members join and publish, and agent participants leave.

pub mod worker_ws;

use crate::sfu::worker::{AdminOk, AdminOp};
use crate::state::AppState;
use parlor_signaling::protocol::proto;
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use proto::server_message::Message as ServerMsg;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// The model-catalogue provider of a voice assistant that is a LiveKit agent: an assistant call on
/// such a model dispatches the agent named by the model's `provider_model` into the call's room
/// instead of running a built-in model.
pub const PROVIDER: &str = "livekit-agent";

/// How long a worker has to answer an AvailabilityRequest before the job is offered to the next.
pub const AVAILABILITY_TIMEOUT: Duration = Duration::from_secs(5);
/// Agent join tokens are valid this long (LiveKit: 1 h).
const AGENT_TOKEN_TTL: u64 = 3600;
/// Most workers registered at once, and dispatches per room.
pub const MAX_WORKERS: usize = 256;
const MAX_DISPATCHES_PER_ROOM: usize = 32;
/// Rooms remembered with a pending `roomConfig` (a join that never opened its room leaves one).
const MAX_PENDING_CONFIGS: usize = 10_000;

/// Handle to the agents registry (cloneable, held in `AppState`).
#[derive(Clone, Default)]
pub struct Agents {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, Worker>,
    /// Registration order (ties of load go to the earlier worker).
    next_order: u64,
    /// Open rooms' dispatches (their `state.jobs` hold the jobs' Job protos).
    rooms: HashMap<String, Vec<proto::AgentDispatch>>,
    /// `roomConfig.agents` of a token whose join is about to open the room.
    pending: HashMap<String, Vec<proto::RoomAgentDispatch>>,
    /// (dispatch, member identity, job type) of the participant/publisher jobs launched.
    member_jobs: HashSet<(String, String, i32)>,
}

struct Worker {
    agent_name: String,
    /// LiveKit's deployment (1.3+ workers; empty otherwise): matched exactly, like the name.
    deployment: String,
    job_type: i32,
    status: i32,
    load: f32,
    order: u64,
    /// The API key the worker authenticated with: its agents' tokens are signed with its secret.
    api_key: String,
    permissions: proto::ParticipantPermission,
    tx: mpsc::Sender<ServerMsg>,
    /// Availability answers awaited, by job id.
    waiting: HashMap<String, oneshot::Sender<proto::AvailabilityResponse>>,
}

/// A worker as `/health`-style views and tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    pub id: String,
    pub agent_name: String,
    pub available: bool,
    pub load: f32,
}

fn now_ns(state: &AppState) -> i64 {
    state.clock.unix_ms().saturating_mul(1_000_000)
}

impl Agents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        let r = self.lock();
        let mut v: Vec<(u64, WorkerView)> = r
            .workers
            .iter()
            .map(|(id, w)| {
                let view = WorkerView {
                    id: id.clone(),
                    agent_name: w.agent_name.clone(),
                    available: w.status == proto::WorkerStatus::WsAvailable as i32,
                    load: w.load,
                };
                (w.order, view)
            })
            .collect();
        v.sort_by_key(|(o, _)| *o);
        v.into_iter().map(|(_, w)| w).collect()
    }

    /// Whether a worker of dispatch `d`'s agent (name and deployment) takes jobs of type `t`.
    fn has_worker_of(&self, d: &proto::AgentDispatch, t: proto::JobType) -> bool {
        self.lock().workers.values().any(|w| {
            w.agent_name == d.agent_name && w.deployment == d.deployment && w.job_type == t as i32
        })
    }

    /// Participant (and, when it publishes, publisher) jobs of dispatch `d` for member `p` (not an
    /// agent), each once and only when a worker of that type is registered.
    fn member_jobs(
        &self,
        state: &AppState,
        room_sid: &str,
        d: &proto::AgentDispatch,
        p: &proto::ParticipantInfo,
        publishes: bool,
    ) {
        if p.kind == proto::participant_info::Kind::Agent as i32 {
            return;
        }
        let mut types = vec![proto::JobType::JtParticipant];
        if publishes {
            types.push(proto::JobType::JtPublisher);
        }
        for t in types {
            if !self.has_worker_of(d, t) {
                continue;
            }
            let key = (d.id.clone(), p.identity.clone(), t as i32);
            if !self.lock().member_jobs.insert(key) {
                continue;
            }
            let mut d = d.clone();
            d.state = None;
            tokio::spawn(launch(
                state.clone(),
                room_sid.to_string(),
                d,
                Some((t, p.clone())),
            ));
        }
    }

    /// Member `identity` of `room` joined (`publishes: false`) or published its first track.
    pub fn member_event(&self, state: &AppState, info: &crate::sfu::EventInfo, publishes: bool) {
        let Some(p) = &info.participant else { return };
        let room = info.room.name.as_str();
        let dispatches = self.list(room, "");
        for d in &dispatches {
            self.member_jobs(state, &info.room.sid, d, p, publishes);
        }
    }

    /// Whether an available worker is registered for `agent_name`.
    pub fn has_worker(&self, agent_name: &str) -> bool {
        self.lock().workers.values().any(|w| {
            w.agent_name == agent_name && w.status == proto::WorkerStatus::WsAvailable as i32
        })
    }

    /// Register a worker; None when the registry is full.
    fn register(
        &self,
        req: &proto::RegisterWorkerRequest,
        api_key: String,
        tx: mpsc::Sender<ServerMsg>,
    ) -> Option<String> {
        let mut r = self.lock();
        if r.workers.len() >= MAX_WORKERS {
            return None;
        }
        let id = crate::ids::new_id("AW_");
        r.next_order += 1;
        let order = r.next_order;
        let permissions = req
            .allowed_permissions
            .clone()
            .unwrap_or(proto::ParticipantPermission {
                can_subscribe: true,
                can_publish: true,
                can_publish_data: true,
                can_update_metadata: true,
                ..Default::default()
            });
        r.workers.insert(
            id.clone(),
            Worker {
                agent_name: req.agent_name.clone(),
                deployment: req.deployment.clone(),
                job_type: req.r#type,
                status: proto::WorkerStatus::WsAvailable as i32,
                load: 0.0,
                order,
                api_key,
                permissions,
                tx,
                waiting: HashMap::new(),
            },
        );
        Some(id)
    }

    /// The worker's connection ended: it gets no more jobs (its running agents stay in their rooms).
    fn unregister(&self, id: &str) {
        self.lock().workers.remove(id);
    }

    fn update_worker(&self, id: &str, u: &proto::UpdateWorkerStatus) {
        if let Some(w) = self.lock().workers.get_mut(id) {
            if let Some(s) = u.status {
                w.status = s;
            }
            if u.load.is_finite() {
                w.load = u.load.clamp(0.0, 1.0);
            }
        }
    }

    fn availability(&self, id: &str, resp: proto::AvailabilityResponse) {
        let tx = self
            .lock()
            .workers
            .get_mut(id)
            .and_then(|w| w.waiting.remove(&resp.job_id));
        if let Some(tx) = tx {
            let _ = tx.send(resp);
        }
    }

    /// A worker reports a job's status; a final one ends the job.
    fn update_job(&self, state: &AppState, worker: &str, u: &proto::UpdateJobStatus) {
        let now = now_ns(state);
        let mut r = self.lock();
        for dispatches in r.rooms.values_mut() {
            for d in dispatches.iter_mut() {
                let Some(job) = d
                    .state
                    .as_mut()
                    .and_then(|s| s.jobs.iter_mut().find(|j| j.id == u.job_id))
                else {
                    continue;
                };
                let Some(js) = job.state.as_mut() else {
                    continue;
                };
                if js.worker_id != worker || js.ended_at != 0 {
                    return;
                }
                js.status = u.status;
                js.error = u.error.chars().take(1024).collect();
                js.updated_at = now;
                if is_final(u.status) {
                    js.ended_at = now;
                    info!(room = %d.room, job = %u.job_id, status = u.status, "agent job ended");
                }
                return;
            }
        }
    }

    /// Remember the `roomConfig.agents` of a join that may open `room` (applied when it opens).
    pub fn room_config(&self, room: &str, agents: Vec<proto::RoomAgentDispatch>) {
        let mut r = self.lock();
        if r.rooms.contains_key(room) {
            return;
        }
        if r.pending.len() >= MAX_PENDING_CONFIGS {
            r.pending.clear();
        }
        r.pending.insert(room.to_string(), agents);
    }

    /// The room's dispatches (one by id if `id` is not empty).
    pub fn list(&self, room: &str, id: &str) -> Vec<proto::AgentDispatch> {
        self.lock()
            .rooms
            .get(room)
            .map(|d| {
                d.iter()
                    .filter(|x| id.is_empty() || x.id == id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Add a dispatch to `room` and dispatch its job. Err: the room has too many.
    pub fn create_dispatch(
        &self,
        state: &AppState,
        room: &str,
        room_sid: &str,
        req: proto::RoomAgentDispatch,
    ) -> Result<proto::AgentDispatch, &'static str> {
        let d = proto::AgentDispatch {
            id: crate::ids::new_id("AD_"),
            agent_name: req.agent_name,
            room: room.to_string(),
            metadata: req.metadata,
            state: Some(proto::AgentDispatchState {
                jobs: Vec::new(),
                created_at: now_ns(state),
                deleted_at: 0,
            }),
            restart_policy: req.restart_policy,
            deployment: req.deployment,
            attributes: req.attributes,
        };
        {
            let mut r = self.lock();
            let list = r.rooms.entry(room.to_string()).or_default();
            if list.len() >= MAX_DISPATCHES_PER_ROOM {
                return Err("too many agent dispatches in this room");
            }
            list.push(d.clone());
        }
        info!(room, dispatch = %d.id, agent = %d.agent_name, "agent dispatch created");
        let (state, sid, dispatch) = (state.clone(), room_sid.to_string(), d.clone());
        tokio::spawn(async move {
            let agents = state.agents.clone();
            if agents.has_worker_of(&dispatch, proto::JobType::JtRoom) {
                launch(state.clone(), sid.clone(), dispatch.clone(), None).await;
            }
            // Members already in the room get their participant/publisher jobs too.
            let members = crate::sfu::room_participants(&state.sfu, &state.workers, &dispatch.room)
                .await
                .unwrap_or_default();
            for p in members {
                agents.member_jobs(&state, &sid, &dispatch, &p, !p.tracks.is_empty());
            }
        });
        Ok(d)
    }

    /// Remove a dispatch: its running jobs are terminated (the worker ends them; an agent still in
    /// the room after 3 s is removed).
    pub fn delete_dispatch(
        &self,
        state: &AppState,
        room: &str,
        id: &str,
    ) -> Option<proto::AgentDispatch> {
        let mut d = {
            let mut r = self.lock();
            let list = r.rooms.get_mut(room)?;
            let i = list.iter().position(|d| d.id == id)?;
            list.remove(i)
        };
        if let Some(s) = d.state.as_mut() {
            s.deleted_at = now_ns(state);
        }
        self.terminate_jobs(state, room, &d, true);
        Some(d)
    }

    /// JobTermination for every running job of `d`; with `evict`, agents that have not left 3 s
    /// later are removed from the room.
    fn terminate_jobs(&self, state: &AppState, room: &str, d: &proto::AgentDispatch, evict: bool) {
        let jobs = d.state.as_ref().map(|s| s.jobs.clone()).unwrap_or_default();
        for job in jobs {
            let Some(js) = job.state else { continue };
            if js.ended_at != 0 {
                continue;
            }
            let tx = self.lock().workers.get(&js.worker_id).map(|w| w.tx.clone());
            if let Some(tx) = tx {
                let _ = tx.try_send(ServerMsg::Termination(proto::JobTermination {
                    job_id: job.id.clone(),
                }));
            }
            if evict && !js.participant_identity.is_empty() {
                let (state, room, identity) =
                    (state.clone(), room.to_string(), js.participant_identity);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    crate::sfu::remove_participant(
                        &state.sfu,
                        &state.workers,
                        &room,
                        &identity,
                        "agent dispatch deleted",
                    )
                    .await;
                });
            }
        }
    }

    /// A room opened: its pending `roomConfig` agents (or the automatic dispatch) are dispatched,
    /// unless it already has dispatches (CreateRoom / CreateDispatch before the first join).
    pub fn room_opened(&self, state: &AppState, room: &str, room_sid: &str) {
        let wanted = {
            let mut r = self.lock();
            let pending = r.pending.remove(room);
            if r.rooms.contains_key(room) {
                return;
            }
            match pending {
                Some(a) if !a.is_empty() => a,
                _ if r.workers.values().any(|w| w.agent_name.is_empty()) => {
                    vec![proto::RoomAgentDispatch::default()]
                }
                _ => return,
            }
        };
        for a in wanted {
            if let Err(e) = self.create_dispatch(state, room, room_sid, a) {
                warn!(room, error = e, "agent dispatch refused");
            }
        }
    }

    /// A room closed: its running jobs are terminated and its dispatches forgotten.
    pub fn room_closed(&self, state: &AppState, room: &str) {
        let gone = {
            let mut r = self.lock();
            let gone = r.rooms.remove(room).unwrap_or_default();
            r.member_jobs
                .retain(|(d, _, _)| !gone.iter().any(|g| &g.id == d));
            gone
        };
        for d in &gone {
            self.terminate_jobs(state, room, d, false);
        }
    }

    /// A participant left `room`: if it was a job's agent, that job has ended.
    pub fn participant_left(&self, state: &AppState, room: &str, identity: &str) {
        let now = now_ns(state);
        let mut ended = None;
        {
            let mut r = self.lock();
            let Some(list) = r.rooms.get_mut(room) else {
                return;
            };
            for d in list.iter_mut() {
                for job in d.state.iter_mut().flat_map(|s| s.jobs.iter_mut()) {
                    let Some(js) = job.state.as_mut() else {
                        continue;
                    };
                    if js.participant_identity == identity && js.ended_at == 0 {
                        js.status = proto::JobStatus::JsFailed as i32;
                        js.error = "agent left the room".into();
                        js.ended_at = now;
                        js.updated_at = now;
                        ended = Some((job.id.clone(), js.worker_id.clone()));
                    }
                }
            }
        }
        // The worker may not know yet (LiveKit tells it too).
        if let Some((job_id, worker)) = ended {
            info!(room, participant = identity, job = %job_id, "agent left: job ended");
            let tx = self.lock().workers.get(&worker).map(|w| w.tx.clone());
            if let Some(tx) = tx {
                let _ = tx.try_send(ServerMsg::Termination(proto::JobTermination { job_id }));
            }
        }
    }

    /// Record `job` under its dispatch (replacing an earlier version of it).
    fn record_job(&self, room: &str, job: &proto::Job) {
        let mut r = self.lock();
        let Some(d) = r
            .rooms
            .get_mut(room)
            .and_then(|l| l.iter_mut().find(|d| d.id == job.dispatch_id))
        else {
            return;
        };
        let Some(s) = d.state.as_mut() else { return };
        match s.jobs.iter_mut().find(|j| j.id == job.id) {
            Some(j) => *j = job.clone(),
            None => s.jobs.push(job.clone()),
        }
    }

    /// The least-loaded available worker for `agent_name` and `deployment` not in `tried` (earliest on ties), with
    /// a channel for its availability answer to `job_id`.
    fn pick(
        &self,
        (agent_name, deployment): (&str, &str),
        job_type: proto::JobType,
        tried: &HashSet<String>,
        job_id: &str,
    ) -> Option<(
        String,
        mpsc::Sender<ServerMsg>,
        oneshot::Receiver<proto::AvailabilityResponse>,
    )> {
        let mut r = self.lock();
        let (id, _) = r
            .workers
            .iter()
            .filter(|(id, w)| {
                w.agent_name == agent_name
                    && w.deployment == deployment
                    && w.job_type == job_type as i32
                    && w.status == proto::WorkerStatus::WsAvailable as i32
                    && !tried.contains(*id)
            })
            .map(|(id, w)| (id.clone(), (w.load, w.order)))
            .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))?;
        let w = r.workers.get_mut(&id)?;
        let (tx, rx) = oneshot::channel();
        w.waiting.insert(job_id.to_string(), tx);
        Some((id, w.tx.clone(), rx))
    }

    /// The agent's join token: signed with the secret of the worker's API key.
    fn agent_token(
        &self,
        state: &AppState,
        worker: &str,
        room: &str,
        resp: &proto::AvailabilityResponse,
        identity: &str,
    ) -> Option<String> {
        let (api_key, perms, agent_name) = {
            let r = self.lock();
            let w = r.workers.get(worker)?;
            (
                w.api_key.clone(),
                w.permissions.clone(),
                w.agent_name.clone(),
            )
        };
        let secret = state.keys.secret(&api_key)?.to_string();
        let now = state.clock.unix_secs();
        let mut attributes: std::collections::BTreeMap<String, String> =
            resp.participant_attributes.clone().into_iter().collect();
        attributes.insert("lk.agent_name".into(), agent_name);
        let claims = Claims {
            iss: api_key,
            sub: identity.to_string(),
            nbf: now,
            exp: now + AGENT_TOKEN_TTL,
            name: (!resp.participant_name.is_empty()).then(|| resp.participant_name.clone()),
            metadata: (!resp.participant_metadata.is_empty())
                .then(|| resp.participant_metadata.clone()),
            video: Some(VideoGrant {
                room: Some(room.to_string()),
                room_join: true,
                can_publish: Some(perms.can_publish),
                can_subscribe: Some(perms.can_subscribe),
                can_publish_data: Some(perms.can_publish_data),
                hidden: perms.hidden,
                can_update_own_metadata: Some(perms.can_update_metadata),
                agent: true,
                ..Default::default()
            }),
            kind: Some("agent".into()),
            attributes: Some(attributes),
            ..Default::default()
        };
        Some(AccessToken::encode(&claims, &secret))
    }
}

fn is_final(status: i32) -> bool {
    status == proto::JobStatus::JsSuccess as i32 || status == proto::JobStatus::JsFailed as i32
}

/// Offer a job of dispatch `d` to workers, least loaded first, until one takes it: its room job, or
/// (`member`) a participant or publisher job for that member.
async fn launch(
    state: AppState,
    room_sid: String,
    d: proto::AgentDispatch,
    member: Option<(proto::JobType, proto::ParticipantInfo)>,
) {
    let agents = state.agents.clone();
    let room = d.room.clone();
    let job_type = member.as_ref().map_or(proto::JobType::JtRoom, |m| m.0);
    let mut job = proto::Job {
        id: crate::ids::new_id("AJ_"),
        dispatch_id: d.id.clone(),
        r#type: job_type as i32,
        participant: member.map(|m| m.1),
        room: Some(proto::Room {
            sid: room_sid,
            name: room.clone(),
            ..Default::default()
        }),
        metadata: d.metadata.clone(),
        agent_name: d.agent_name.clone(),
        deployment: d.deployment.clone(),
        attributes: d.attributes.clone(),
        ..Default::default()
    };
    let mut tried = HashSet::new();
    loop {
        let Some((worker, tx, answer)) =
            agents.pick((&d.agent_name, &d.deployment), job_type, &tried, &job.id)
        else {
            warn!(room = %room, agent = %d.agent_name, job = %job.id, tried = tried.len(),
                "no agent worker took the job");
            return;
        };
        tried.insert(worker.clone());
        let now = now_ns(&state);
        job.state = Some(proto::JobState {
            status: proto::JobStatus::JsPending as i32,
            started_at: now,
            updated_at: now,
            worker_id: worker.clone(),
            ..Default::default()
        });
        let offer = ServerMsg::Availability(proto::AvailabilityRequest {
            job: Some(job.clone()),
            resuming: false,
        });
        if tx.send(offer).await.is_err() {
            continue;
        }
        let resp = match tokio::time::timeout(AVAILABILITY_TIMEOUT, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => continue,
            Err(_) => {
                warn!(room = %room, worker = %worker, job = %job.id,
                    "agent worker did not answer the availability request; trying another");
                if let Some(w) = agents.lock().workers.get_mut(&worker) {
                    w.waiting.remove(&job.id);
                }
                continue;
            }
        };
        if resp.terminate {
            info!(room = %room, job = %job.id, "agent worker declined the job for good");
            return;
        }
        if !resp.available {
            continue;
        }
        let identity = if resp.participant_identity.is_empty() {
            format!("agent-{}", job.id)
        } else {
            resp.participant_identity.clone()
        };
        let Some(token) = agents.agent_token(&state, &worker, &room, &resp, &identity) else {
            warn!(worker = %worker, "the worker's API key is gone; not assigning");
            continue;
        };
        if let Some(js) = job.state.as_mut() {
            js.status = proto::JobStatus::JsRunning as i32;
            js.participant_identity = identity.clone();
            js.updated_at = now_ns(&state);
        }
        agents.record_job(&room, &job);
        let assignment = ServerMsg::Assignment(proto::JobAssignment {
            job: Some(job.clone()),
            url: None,
            token,
        });
        if tx.send(assignment).await.is_err() {
            continue;
        }
        info!(room = %room, worker = %worker, job = %job.id, participant = %identity,
            "agent job assigned");
        return;
    }
}

/// Follow the SFU's room lifecycle (rooms opening and closing, agents leaving) until shutdown.
pub fn spawn_event_consumer(state: &AppState) {
    let state = state.clone();
    let mut events = state.sfu.subscribe_events();
    tokio::spawn(async move {
        use crate::sfu::SfuEvent;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let ev = tokio::select! {
                _ = state.shutdown.cancelled() => break,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(SfuEvent::RoomCreated { room, info, .. }) => {
                    state.agents.room_opened(&state, &room, &info.room.sid);
                }
                Ok(SfuEvent::ParticipantJoined { info, .. }) => {
                    state.agents.member_event(&state, &info, false)
                }
                Ok(SfuEvent::TrackPublished { info, .. }) => {
                    state.agents.member_event(&state, &info, true)
                }
                Ok(SfuEvent::RoomClosed { room, .. }) => state.agents.room_closed(&state, &room),
                Ok(SfuEvent::ParticipantLeft { room, identity, .. }) => {
                    state.agents.participant_left(&state, &room, &identity)
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "agents missed room events (lagging)");
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// The sid of open room `room` (the stored room's, else the live room's).
pub async fn room_sid(state: &AppState, room: &str) -> String {
    if let Ok(r) = state.store.get_room(room).await {
        if r.closed_at.is_none() {
            return r.sid;
        }
    }
    match crate::sfu::room_admin(&state.sfu, &state.workers, room, AdminOp::Info).await {
        Ok(AdminOk::Room(r)) => r.sid,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
