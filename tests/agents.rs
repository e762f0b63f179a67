//! LiveKit Agents against Parlor: a real `livekit-agents` worker (tests/python/lk_agent.py, run with
//! the agents CLI) registers on `/agent` and is dispatched into rooms both ways — by
//! AgentDispatchService.CreateDispatch and by the `roomConfig.agents` of the token whose join opens
//! the room; a participant (LiveKit's Python SDK, tests/python/lk_agent_listener.py) hears the
//! agent's 440 Hz tone and gets its data echo. A second worker of the same name that registers first
//! and never answers availability requests (a raw protobuf client here) does not block the dispatch:
//! after the availability timeout the job goes to the real worker. Stopping the worker (SIGINT, as
//! Ctrl+C) mid-job ends its jobs cleanly: the agents leave, the jobs are marked ended, the worker is
//! unregistered.

mod common;
#[path = "common/lk.rs"]
mod lk;
#[path = "common/twirp.rs"]
mod twirp;

use common::*;
use futures_util::{SinkExt, StreamExt};
use parlor_signaling::protocol::proto;
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use prost::Message as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use twirp::*;

const AGENT: &str = "tone-agent";
const DISPATCH: &str = "livekit.AgentDispatchService";

fn test_python() -> Option<PathBuf> {
    common::python::test_python("livekit.agents, livekit.rtc, numpy", "LiveKit Agents test")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A worker token, as the agents SDK mints it: the `agent` grant, no identity.
fn worker_token(agent: bool) -> String {
    let grant = VideoGrant {
        agent,
        ..Default::default()
    };
    AccessToken::for_join(KEY, SECRET, "", grant, now_unix(), 600)
}

/// A worker that registers under `AGENT` and then says nothing: it reports each availability request
/// it gets on the channel; aborting the task closes its socket.
async fn silent_worker(s: &TestServer) -> (mpsc::Receiver<String>, tokio::task::JoinHandle<()>) {
    let mut req = format!("{}/agent", s.ws).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", worker_token(true)).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let register = proto::WorkerMessage {
        message: Some(proto::worker_message::Message::Register(
            proto::RegisterWorkerRequest {
                agent_name: AGENT.into(),
                version: "silent".into(),
                ..Default::default()
            },
        )),
    };
    ws.send(WsMessage::Binary(register.encode_to_vec().into()))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let WsMessage::Binary(b) = m else { continue };
            match proto::ServerMessage::decode(b.as_ref()).map(|m| m.message) {
                Ok(Some(proto::server_message::Message::Availability(a))) => {
                    let _ = tx.send(a.job.map(|j| j.id).unwrap_or_default()).await;
                }
                Ok(Some(proto::server_message::Message::Register(r))) => {
                    let _ = tx.send(format!("registered {}", r.worker_id)).await;
                }
                _ => {}
            }
        }
    });
    (rx, task)
}

/// A listener participant: its JSON lines, and its stdin (dropping it lets the script finish).
struct Listener {
    lines: mpsc::Receiver<Value>,
    stdin: Option<tokio::process::ChildStdin>,
    _child: tokio::process::Child,
}

impl Listener {
    fn start(py: &Path, s: &TestServer, token: &str) -> Listener {
        Self::start_with(py, s, token, false)
    }

    /// With `publish`, the listener publishes a tone of its own.
    fn start_with(py: &Path, s: &TestServer, token: &str, publish: bool) -> Listener {
        let mut child = tokio::process::Command::new(py)
            .arg("-u")
            .arg(script("lk_agent_listener.py"))
            .args([&s.ws, token])
            .args(publish.then_some("publish"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python did not start");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v).await;
                }
            }
        });
        Listener {
            lines,
            stdin: Some(stdin),
            _child: child,
        }
    }

    /// The listener leaves its room.
    fn leave(&mut self) {
        self.stdin = None;
    }

    async fn next(&mut self, what: &str, secs: u64) -> Value {
        tokio::time::timeout(Duration::from_secs(secs), self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("listener: no {what} within {secs} s"))
            .unwrap_or_else(|| panic!("listener ended before {what}"))
    }
}

/// The listener heard the agent's tone and got its echo.
fn assert_heard(v: &Value) {
    assert_heard_from(v, AGENT)
}

/// The listener heard the tone of an agent named `name` and got its echo.
fn assert_heard_from(v: &Value, name: &str) {
    let h = &v["heard"];
    assert!(
        h["agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("agent-AJ_")),
        "{v}"
    );
    assert_eq!(
        h["kind"],
        proto::participant_info::Kind::Agent as i32,
        "{v}"
    );
    assert!(
        h["loud_frames"].as_u64().unwrap_or(0) > 50,
        "tone not heard: {v}"
    );
    let f = h["freq"].as_f64().unwrap_or(0.0);
    assert!((f - 440.0).abs() < 15.0, "not the 440 Hz tone: {v}");
    assert_eq!(
        (h["echo"].as_str(), h["topic"].as_str()),
        (Some("echo:ping"), Some("t1"))
    );
    assert_eq!(h["attributes"]["lk.agent_name"], name, "{v}");
}

/// The real worker: lk_agent.py under the agents CLI (`dev`, no reload), for room jobs.
fn start_worker(py: &Path, s: &TestServer) -> tokio::process::Child {
    start_worker_as(py, s, AGENT, "room")
}

/// The real worker registered as agent `name` for jobs of `job_type` (`room` or `publisher`).
fn start_worker_as(py: &Path, s: &TestServer, name: &str, job_type: &str) -> tokio::process::Child {
    tokio::process::Command::new(py)
        .arg(script("lk_agent.py"))
        .args(["dev", "--no-reload", "--log-level", "info"])
        .env("LIVEKIT_URL", &s.ws)
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .env("AGENT_NAME", name)
        .env("AGENT_TYPE", job_type)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("agent worker did not start")
}

/// Ctrl+C to the worker; it exits within 30 s.
async fn stop_worker(mut worker: tokio::process::Child) {
    let pid = worker.id().expect("worker pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(kill.is_ok_and(|s| s.success()), "kill -INT {pid}");
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("agent worker still running 30 s after SIGINT")
        .unwrap();
    println!("agent worker exited: {status}");
}

async fn wait_workers(s: &TestServer, n: usize, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while s.handle.state.agents.workers().len() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} agent workers registered, expected {n}: {:?}",
            s.handle.state.agents.workers().len(),
            s.handle.state.agents.workers()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn list(s: &TestServer, room: &str) -> proto::ListAgentDispatchResponse {
    let admin = admin_token(admin_grant(room));
    let req = proto::ListAgentDispatchRequest {
        room: room.into(),
        ..Default::default()
    };
    twirp_pb_at(s, DISPATCH, "ListDispatch", &admin, &req)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_worker_dispatched_both_ways_and_stopped_mid_job() {
    let Some(py) = test_python() else { return };
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;

    // /agent wants the agent grant.
    let r = s
        .client
        .get(s.url("/agent"))
        .bearer_auth(worker_token(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The silent worker registers first (ties of load go to the earlier worker), then the real one.
    let (mut silent, silent_task) = silent_worker(&s).await;
    let reg = tokio::time::timeout(Duration::from_secs(5), silent.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(reg.starts_with("registered AW_"), "{reg}");
    let worker = start_worker(&py, &s);
    wait_workers(&s, 2, 90).await;

    // 1. CreateDispatch: offered to the silent worker first, then (after its timeout) to the real one.
    let admin = admin_token(admin_grant("ag-1"));
    let create = proto::CreateAgentDispatchRequest {
        agent_name: AGENT.into(),
        room: "ag-1".into(),
        metadata: "job-meta".into(),
        ..Default::default()
    };
    let d: proto::AgentDispatch = twirp_pb_at(&s, DISPATCH, "CreateDispatch", &admin, &create)
        .await
        .unwrap();
    assert!(d.id.starts_with("AD_"), "{d:?}");
    let offered = tokio::time::timeout(Duration::from_secs(5), silent.recv())
        .await
        .expect("the silent worker was not offered the job first")
        .unwrap();
    assert!(offered.starts_with("AJ_"), "{offered}");
    let mut a = Listener::start(&py, &s, &s.token("alice", VideoGrant::join("ag-1")));
    let heard = a.next("tone and echo", 60).await;
    println!("CreateDispatch: {heard}");
    assert_heard(&heard);
    let l = list(&s, "ag-1").await;
    let job = &l.agent_dispatches[0].state.as_ref().unwrap().jobs[0];
    assert_eq!(job.id, offered, "the job the silent worker did not answer");
    let js = job.state.as_ref().unwrap();
    assert_eq!(js.participant_identity, format!("agent-{}", job.id));
    assert_eq!(js.ended_at, 0);
    assert_eq!(job.metadata, "job-meta");
    // A wrong room's admin may not read them; an unknown dispatch is not_found.
    let other = admin_token(admin_grant("elsewhere"));
    let req = proto::ListAgentDispatchRequest {
        room: "ag-1".into(),
        ..Default::default()
    };
    let err: Result<proto::ListAgentDispatchResponse, _> =
        twirp_pb_at(&s, DISPATCH, "ListDispatch", &other, &req).await;
    assert_eq!(err.unwrap_err().1["code"], "permission_denied");
    let del = proto::DeleteAgentDispatchRequest {
        dispatch_id: "AD_nope".into(),
        room: "ag-1".into(),
    };
    let err: Result<proto::AgentDispatch, _> =
        twirp_pb_at(&s, DISPATCH, "DeleteDispatch", &admin, &del).await;
    assert_eq!(err.unwrap_err().1["code"], "not_found");
    // A worker whose socket closes is unregistered.
    silent_task.abort();
    drop(silent);
    wait_workers(&s, 1, 10).await;

    // 2. The token's roomConfig: bob's join opens ag-2 and dispatches the agent into it.
    let claims = Claims {
        iss: KEY.into(),
        sub: "bob".into(),
        nbf: now_unix(),
        exp: now_unix() + 600,
        video: Some(VideoGrant::join("ag-2")),
        room_config: Some(serde_json::json!({ "agents": [{ "agentName": AGENT }] })),
        ..Default::default()
    };
    let mut b = Listener::start(&py, &s, &AccessToken::encode(&claims, SECRET));
    let heard = b.next("tone and echo", 60).await;
    println!("roomConfig: {heard}");
    assert_heard(&heard);
    assert_eq!(list(&s, "ag-2").await.agent_dispatches.len(), 1);

    // 3. Ctrl+C on the worker mid-job: both agents leave, their jobs end, the worker is gone.
    let stopped = tokio::spawn(stop_worker(worker));
    for (l, room) in [(&mut a, "ag-1"), (&mut b, "ag-2")] {
        let left = l.next("the agent's leave", 30).await;
        assert!(left["agent_left"].as_str().is_some(), "{room}: {left}");
    }
    stopped.await.unwrap();
    wait_workers(&s, 0, 10).await;
    // The listeners are still in their rooms (they wait for stdin), so the rooms and their
    // dispatches are still there: each job is marked ended.
    for room in ["ag-1", "ag-2"] {
        let l = list(&s, room).await;
        assert_eq!(l.agent_dispatches.len(), 1, "{room}");
        let jobs = &l.agent_dispatches[0].state.as_ref().unwrap().jobs;
        assert_eq!(jobs.len(), 1, "{room}");
        let js = jobs[0].state.as_ref().unwrap();
        assert!(
            js.ended_at > 0,
            "{room}: job {} not ended: {js:?}",
            jobs[0].id
        );
    }
    drop((a, b));
    s.stop().await;
}

/// A token for the product APIs (accounts, assistants, calls) of API key KEY.
fn ops_token() -> String {
    let claims = Claims {
        iss: KEY.into(),
        sub: "ops".into(),
        nbf: now_unix() - 1,
        exp: now_unix() + 3600,
        video: Some(VideoGrant {
            room_admin: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    AccessToken::encode(&claims, SECRET)
}

/// POST `body` to `path`: the status and the JSON answer.
async fn post(s: &TestServer, path: &str, bearer: &str, body: Value) -> (u16, Value) {
    let r = s
        .client
        .post(s.url(path))
        .bearer_auth(bearer)
        .header("origin", "https://shop.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A voice assistant whose model is a LiveKit agent: its embedded caller is answered by the team's
/// own agent (the tone and the echo), not a built-in model; while no worker of that name is
/// registered its embed tokens are refused (503 MODEL_NOT_AVAILABLE); the caller hanging up ends
/// the agent's job and completes the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assistant_can_be_a_livekit_agent() {
    let Some(py) = test_python() else { return };
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.realtime
            .models
            .push(parlor::realtime::config::ModelConfig {
                id: "support-agent".into(),
                name: "Support agent (LiveKit Agents)".into(),
                provider: "livekit-agent".into(),
                provider_model: AGENT.into(),
                ..Default::default()
            });
    })
    .await;
    let ops = ops_token();
    let (st, a) = post(
        &s,
        "/api/v1/assistants",
        &ops,
        serde_json::json!({ "name": "Support", "model": "support-agent" }),
    )
    .await;
    assert_eq!(st, 201, "{a}");
    let (st, k) = post(
        &s,
        "/api/v1/public-keys",
        &ops,
        serde_json::json!({ "allowedOrigins": ["https://shop.example"] }),
    )
    .await;
    assert!(st < 300, "{k}");
    let key = k["data"]["key"].as_str().unwrap().to_string();
    let body = serde_json::json!({ "assistantId": a["data"]["id"] });
    let (st, err) = post(&s, "/api/v1/embed/token", &key, body.clone()).await;
    assert_eq!(st, 503, "{err}");
    assert_eq!(err["error"]["code"], "MODEL_NOT_AVAILABLE", "{err}");

    let worker = start_worker(&py, &s);
    wait_workers(&s, 1, 90).await;
    let (st, t) = post(&s, "/api/v1/embed/token", &key, body).await;
    assert_eq!(st, 200, "{t}");
    let call = t["data"]["callId"].as_str().unwrap().to_string();
    let mut caller = Listener::start(&py, &s, t["data"]["token"].as_str().unwrap());
    let heard = caller.next("tone and echo", 60).await;
    println!("assistant as a LiveKit agent: {heard}");
    assert_heard(&heard);
    assert_eq!(s.handle.state.agents.list(&call, "").len(), 1);

    // The caller hangs up: the dispatch goes, the agent leaves, the call completes.
    caller.leave();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = s
            .client
            .get(s.url(&format!("/api/v1/calls/{call}")))
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["data"]["status"] == "completed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call not completed 20 s after the caller left: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(s.handle.state.sfu.participants(&call).is_empty());
    assert_eq!(s.handle.state.agents.workers().len(), 1, "the worker stays");
    stop_worker(worker).await;
    s.stop().await;
}

/// Publisher jobs: a worker registered for `JT_PUBLISHER` gets one job per publishing member of a
/// room whose dispatch (here CreateRoom's `agents`) names it, with that member as the job's
/// participant; a member who only listens gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_jobs_follow_each_publishing_member() {
    let Some(py) = test_python() else { return };
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let worker = start_worker_as(&py, &s, "pub-agent", "publisher");
    wait_workers(&s, 1, 90).await;
    let creator = admin_token(create_grant());
    let room: proto::Room = twirp_pb(
        &s,
        "CreateRoom",
        &creator,
        &proto::CreateRoomRequest {
            name: "ag-pub".into(),
            agents: vec![proto::RoomAgentDispatch {
                agent_name: "pub-agent".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(room.sid.starts_with("RM_"));
    // Nobody publishes yet: no job.
    let mut quiet = Listener::start(&py, &s, &s.token("quiet", VideoGrant::join("ag-pub")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let l = list(&s, "ag-pub").await;
    assert_eq!(l.agent_dispatches.len(), 1);
    assert!(
        l.agent_dispatches[0]
            .state
            .as_ref()
            .unwrap()
            .jobs
            .is_empty(),
        "{l:?}"
    );
    // carol publishes: a publisher job for her; both listeners hear the agent.
    let mut carol =
        Listener::start_with(&py, &s, &s.token("carol", VideoGrant::join("ag-pub")), true);
    for l in [&mut carol, &mut quiet] {
        let heard = l.next("tone and echo", 60).await;
        println!("publisher job: {heard}");
        assert_heard_from(&heard, "pub-agent");
        assert_eq!(
            heard["heard"]["attributes"]["for_identity"], "carol",
            "{heard}"
        );
    }
    let l = list(&s, "ag-pub").await;
    let jobs = &l.agent_dispatches[0].state.as_ref().unwrap().jobs;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].r#type, proto::JobType::JtPublisher as i32);
    assert_eq!(jobs[0].participant.as_ref().unwrap().identity, "carol");
    quiet.leave();
    carol.leave();
    stop_worker(worker).await;
    s.stop().await;
}
