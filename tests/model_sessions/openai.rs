//! A model session on the `openai` provider, against the in-repo fake OpenAI Realtime server (the
//! real GA wire protocol, no key, no internet): a text turn is answered with the fake's deltas, the
//! usage of its `response.done` lands in the session's token usage and in the history.

use crate::common::openai_fake::{FakeOptions, FakeServer};
use crate::on_every_backend;
use crate::support::{assert_ok, Srv};
use serde_json::{json, Value};

async fn usage_lands_in_the_session(s: &Srv, fake: &FakeServer) {
    let d = s.create("alice", "gpt-realtime").await;
    let id = d["id"].as_str().unwrap().to_string();
    let url = d["connectionInfo"]["websocketUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let tok = d["connectionInfo"]["authToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut ws, _) = s.connect_auth(&url, &tok).await;
    ws.send(json!({"type": "message", "content": "hello there"}))
        .await;
    let mut deltas = String::new();
    let reply: Value = loop {
        let v = ws.recv().await;
        match v["type"].as_str().unwrap() {
            "delta" => deltas.push_str(v["content"].as_str().unwrap()),
            "message" => break v,
            _ => {}
        }
    };
    assert_eq!(reply["content"], "Hello from the fake.", "{reply}");
    assert_eq!(deltas, "Hello from the fake.");
    assert_eq!(
        reply["tokenCount"], 340,
        "the completion tokens of response.done: {reply}"
    );
    // The provider spoke GA to the fake: a text item, then response.create.
    let items = fake.events_of("conversation.item.create");
    assert_eq!(
        items.last().unwrap()["item"]["content"][0]["text"],
        "hello there"
    );
    assert!(!fake.events_of("response.create").is_empty());
    let got = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(
        got["tokenUsage"],
        json!({"prompt": 120, "completion": 340, "total": 460}),
        "{got}"
    );
    let h = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}/history"), "alice")
            .await,
        200,
    );
    // The history counts its messages' tokens: the reply's completion tokens plus the user
    // turn's estimate (the provider's 120 prompt tokens include context, so they stay on the
    // session's usage).
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["tokenCount"], 340, "{h}");
    let sum: i64 = msgs.iter().map(|m| m["tokenCount"].as_i64().unwrap()).sum();
    assert_eq!(h["summary"]["totalTokens"], sum, "{h}");
    ws.close().await;
}

#[tokio::test]
async fn openai_usage_from_response_done_lands_in_the_session() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let url = fake.url();
    on_every_backend!(
        |c: &mut parlor::config::Config| {
            c.realtime.openai.url = url.clone();
            c.realtime.openai.api_key = "sk-test-fake".into();
        },
        |s| usage_lands_in_the_session(s, &fake)
    );
}
