//! A local webhook receiver: collects every delivery, and checks Parlor's signature
//! (`X-Parlor-Signature: sha256=HMAC-SHA256(secret, "{X-Parlor-Timestamp}.{body}")`).

use axum::http::HeaderMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Receiver {
    /// The URL to configure as `webhooks.urls`.
    pub url: String,
    seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let seen: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post({
                let seen = seen.clone();
                move |h: HeaderMap, body: String| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((h, body));
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Receiver { url, seen }
    }

    /// The first delivery of `event` (within 15 s), its signature checked with `secret`: its JSON.
    #[allow(dead_code)]
    pub async fn signed_event(&self, event: &str, secret: &str) -> serde_json::Value {
        self.signed_event_where(event, secret, |_| true).await
    }

    /// The first delivery of `event` (within 15 s) whose JSON `keep` accepts, its signature
    /// checked with `secret`: its JSON.
    pub async fn signed_event_where(
        &self,
        event: &str,
        secret: &str,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        use hmac::{Hmac, Mac};
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self.seen.lock().unwrap().iter().find_map(|(h, b)| {
                let body = serde_json::from_str(b).unwrap_or(serde_json::Value::Null);
                (h["x-parlor-event"] == event && keep(&body)).then(|| (h.clone(), b.clone()))
            });
            if let Some((h, b)) = found {
                let ts = h["x-parlor-timestamp"].to_str().unwrap();
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(format!("{ts}.{b}").as_bytes());
                let want: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect();
                assert_eq!(
                    h["x-parlor-signature"].to_str().unwrap(),
                    format!("sha256={want}"),
                    "{event}: bad signature"
                );
                return serde_json::from_str(&b).unwrap();
            }
            assert!(Instant::now() < deadline, "no {event} webhook");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The JSON bodies of every `event` delivered so far that `keep` accepts.
    #[allow(dead_code)]
    pub fn events(
        &self,
        event: &str,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(h, _)| h["x-parlor-event"] == event)
            .filter_map(|(_, b)| serde_json::from_str(b).ok())
            .filter(|v| keep(v))
            .collect()
    }
}
