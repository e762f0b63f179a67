//! Token purposes (issue 14 item 1): a recording's download token opens that one file and nothing
//! else; access/join tokens (LiveKit's, with no purpose claim) do not open files and keep working for
//! `/rtc` and the API.

use crate::common::{TestDb, KEY, SECRET};
use crate::support::Srv;
use parlor::clock::Clock;
use parlor::store::RecordingRecord;
use parlor_signaling::{AccessToken, VideoGrant};
use serde_json::{json, Value};

/// A finished recording `id` of `call` started by `user`, with a file on disk.
async fn recording(s: &Srv, call: &str, id: &str, user: &str) {
    let state = &s.handle.state;
    let dir = state.config.storage.data_dir.join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    let rel = format!("{id}.webm");
    std::fs::write(dir.join(&rel), id.as_bytes()).unwrap();
    let rec = RecordingRecord {
        id: id.into(),
        call_id: call.into(),
        conversation_id: None,
        call_type: "audio".into(),
        started_by: user.into(),
        started_at: s.now_ms(),
        ended_at: None,
        duration_ms: None,
        status: "recording".into(),
        file_path: None,
        size_bytes: None,
        node: String::new(),
    };
    state.store.insert_recording(&rec).await.unwrap();
    state
        .store
        .finish_recording(id, "completed", 1000, Some(&rel), Some(id.len() as i64))
        .await
        .unwrap();
}

async fn with_bearer(
    s: &Srv,
    m: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s.client.request(m, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The HTTP status a WebSocket upgrade is answered with (101 when it opened).
async fn ws_status(url: String) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("websocket connect: {e}"),
    }
}

fn file_status_url(s: &Srv, id: &str, token: &str) -> String {
    s.url(&format!("/api/recordings/{id}/file?token={token}"))
}

#[tokio::test]
async fn download_token_opens_one_file_and_nothing_else() {
    let db = TestDb::sqlite();
    let s = Srv::start(&db).await;
    let call = s
        .post("/api/calls", "alice", json!({"call_type": "audio"}))
        .await
        .1["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    recording(&s, &call, "rec_a", "alice").await;
    recording(&s, &call, "rec_b", "alice").await;
    let url = s.get("/api/recordings/rec_a/download", "alice").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    let dl = url.split("token=").nth(1).unwrap().to_string();

    // It opens rec_a's file.
    let r = s.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"rec_a");
    // Not rec_b's.
    let r = s
        .client
        .get(file_status_url(&s, "rec_b", &dl))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // As a Bearer token it is refused by every API family.
    use reqwest::Method as M;
    let attempts: Vec<(M, String, Option<Value>)> = vec![
        (M::GET, "/api/calls".into(), None),
        (
            M::POST,
            "/api/calls".into(),
            Some(json!({"call_type": "audio"})),
        ),
        (M::GET, format!("/api/calls/{call}"), None),
        (
            M::POST,
            "/api/v1/chat/messages".into(),
            Some(json!({"to": "bob", "content": "hi"})),
        ),
        (M::GET, "/api/recordings".into(), None),
        (M::GET, "/api/recordings/rec_a/download".into(), None),
        (M::DELETE, "/api/recordings/rec_a".into(), None),
        (
            M::PUT,
            "/api/presence".into(),
            Some(json!({"status": "busy"})),
        ),
        (M::GET, "/api/signaling/ice-config".into(), None),
        (M::GET, "/api/rooms".into(), None),
    ];
    for (m, path, body) in attempts {
        let (status, v) = with_bearer(&s, m.clone(), &path, &dl, body).await;
        assert_eq!(status, 401, "{m} {path} accepted a download token: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{m} {path}: {v}");
    }
    // The presence socket (query and header) and the signal endpoint refuse it too.
    assert_eq!(
        ws_status(format!(
            "{}/api/presence/ws?access_token={dl}&device_id=d1",
            s.ws
        ))
        .await,
        401
    );
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("{}/api/presence/ws?device_id=d1", s.ws),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {dl}").parse().unwrap());
    let status = match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 401);
    let r = s
        .client
        .get(s.url(&format!("/rtc/validate?access_token={dl}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        ws_status(format!("{}/rtc?access_token={dl}", s.ws)).await,
        401
    );
    // The recording is still there (the delete above was refused).
    assert_eq!(s.get("/api/recordings/rec_a", "alice").await.0, 200);

    // An API token and a LiveKit join token (no purpose claim) do not open the file...
    let api = s.token("alice");
    let now = s.clock.unix_secs();
    let join = AccessToken::for_join(KEY, SECRET, "alice", VideoGrant::join("room-1"), now, 600);
    for t in [&api, &join] {
        let r = s
            .client
            .get(file_status_url(&s, "rec_a", t))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    }
    // ...and keep working for the API and /rtc as before.
    let (status, v) = with_bearer(&s, M::GET, "/api/calls", &join, None).await;
    assert_eq!(status, 200, "{v}");
    let r = s
        .client
        .get(s.url(&format!("/rtc/validate?access_token={join}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        ws_status(format!(
            "{}/api/presence/ws?access_token={join}&device_id=d1",
            s.ws
        ))
        .await,
        101
    );
    s.stop().await;
    db.drop_db().await;
}

/// A model session's authToken (purpose `model-session`) opens that session's WebSocket and nothing
/// else; access tokens do not open the session WebSocket.
#[tokio::test]
async fn model_session_token_opens_only_its_session_socket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let db = TestDb::sqlite();
    let s = Srv::start(&db).await;
    let (status, v) = s
        .post(
            "/api/realtime/sessions",
            "alice",
            json!({"model": "parlor-local"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_string();
    let url = v["data"]["connectionInfo"]["websocketUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let rt = v["data"]["connectionInfo"]["authToken"]
        .as_str()
        .unwrap()
        .to_string();
    let claims = parlor_signaling::AccessToken::decode_for(
        parlor_signaling::TokenPurpose::ModelSession,
        &rt,
        |_| Some(SECRET),
        s.clock.unix_secs(),
    )
    .unwrap();
    assert_eq!(claims.aud.as_deref(), Some("parlor:model-session"));
    assert_eq!(claims.sub, "alice");
    use reqwest::Method as M;
    let attempts: Vec<(M, String, Option<Value>)> = vec![
        (M::GET, "/api/realtime/sessions".into(), None),
        (
            M::POST,
            "/api/realtime/sessions".into(),
            Some(json!({"model": "parlor-local"})),
        ),
        (M::GET, format!("/api/realtime/sessions/{id}"), None),
        (M::POST, format!("/api/realtime/sessions/{id}/resume"), None),
        (M::GET, format!("/api/realtime/sessions/{id}/history"), None),
        (M::DELETE, format!("/api/realtime/sessions/{id}"), None),
        (M::GET, "/api/realtime/models".into(), None),
        (M::GET, "/api/realtime/stats".into(), None),
        (M::GET, "/api/calls".into(), None),
        (M::GET, "/api/recordings".into(), None),
        (M::GET, "/api/rooms".into(), None),
        (
            M::PUT,
            "/api/presence".into(),
            Some(json!({"status": "online"})),
        ),
    ];
    for (m, path, body) in attempts {
        let (status, v) = with_bearer(&s, m.clone(), &path, &rt, body).await;
        assert_eq!(
            status, 401,
            "{m} {path} accepted a model-session token: {v}"
        );
    }
    assert_eq!(
        ws_status(format!(
            "{}/api/presence/ws?access_token={rt}&device_id=d1",
            s.ws
        ))
        .await,
        401
    );
    assert_eq!(
        ws_status(format!("{}/rtc?access_token={rt}", s.ws)).await,
        401
    );
    let r = s
        .client
        .get(s.url(&format!("/rtc/validate?access_token={rt}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Access and join tokens do not open the session socket; the session token does.
    let now = s.clock.unix_secs();
    let join = AccessToken::for_join(KEY, SECRET, "alice", VideoGrant::join("room-1"), now, 600);
    for (token, ok) in [(s.token("alice"), false), (join, false), (rt.clone(), true)] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.send(Message::Text(
            json!({"type": "auth", "token": token}).to_string().into(),
        ))
        .await
        .unwrap();
        let first = loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
                _ => continue,
            }
        };
        if ok {
            assert_eq!(first["type"], "connected", "{first}");
        } else {
            assert_eq!(first["code"], "UNAUTHORIZED", "{first}");
        }
        let _ = ws.close(None).await;
    }
    s.stop().await;
    db.drop_db().await;
}
