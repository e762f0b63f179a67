//! Outgoing webhooks: every event is stored as one delivery per configured URL (a persisted queue,
//! so a restart does not lose them), POSTed, retried with exponential backoff on failure, and
//! logged (`webhook_deliveries`). Two formats share the queue:
//!
//! - Parlor's product events (`[webhooks] urls`): headers `X-Parlor-Event`, `X-Parlor-Delivery`
//!   (same on every attempt of a delivery), `X-Parlor-Timestamp` (unix seconds of the attempt) and
//!   `X-Parlor-Signature: sha256=<hex>` over `"{timestamp}.{body}"`, so a receiver can reject stale
//!   replays. Body: `{"id": "evt_…", "event": "recording.completed", "created_at": "…Z", "data": {…}}`.
//! - LiveKit's room events (`[webhooks] livekit_urls`, [`livekit`]): a `livekit.WebhookEvent` in
//!   proto3 JSON, signed as LiveKit signs them (a JWT in `Authorization`, minted per attempt).
//!   Deliveries of one room to one URL go out in the order the events happened, one at a time.
//!
//! The queue's order is a sequence number this module assigns under one lock, strictly increasing
//! across restarts (it continues from the highest stored one).
//!
//! Several nodes sharing one database (multi-node mode) share the queue: every node's dispatcher
//! reads the due deliveries, and each delivery is claimed (a conditional update of its next attempt
//! time) before it is attempted, so it is POSTed by one node. An event itself is queued once by the
//! node where it happened (the node of the call's room).

pub mod livekit;

use crate::clock::SharedClock;
use crate::store::{Delivery, Store};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Longest wait between two attempts of one delivery.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// Deliveries attempted per pass of the dispatcher.
const BATCH: i64 = 32;
/// A claimed delivery is held this long beyond its attempt's timeout.
const CLAIM_MARGIN_MS: i64 = 5_000;

/// `sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Delay before attempt `attempts + 1` after `attempts` failures: 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    (1000i64 << exp).min(MAX_BACKOFF_MS)
}

/// Handle to the webhook queue (cloneable; a no-op when no URL is configured).
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: SharedClock,
    urls: Vec<String>,
    secret: String,
    /// Receivers of the LiveKit-format events.
    livekit_urls: Vec<String>,
    /// The API key LiveKit-format deliveries are signed with (None: no key configured).
    livekit_signer: Option<livekit::Signer>,
    max_attempts: i64,
    /// How long a claimed delivery is held for its attempt (the attempt's timeout and a margin)
    /// before another dispatcher may take it again.
    claim_ms: i64,
    client: reqwest::Client,
    notify: Notify,
    /// The last `seq` given to a delivery (None: not read from the store yet). Held while a batch
    /// of deliveries is inserted, so queue order is insertion order.
    last_seq: Mutex<Option<i64>>,
}

/// How an attempt of a delivery is signed and sent (`webhook_deliveries.format`).
pub const FORMAT_PARLOR: &str = "parlor";
/// See [`livekit`].
pub const FORMAT_LIVEKIT: &str = "livekit";

impl Webhooks {
    /// `secret` signs Parlor's events; `livekit_signer` ([`livekit::Signer::from_config`]) the
    /// LiveKit-format ones.
    pub fn new(
        store: Store,
        clock: SharedClock,
        cfg: &crate::config::WebhooksConfig,
        secret: String,
        livekit_signer: Option<livekit::Signer>,
    ) -> Webhooks {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Webhooks {
            inner: Arc::new(Inner {
                store,
                clock,
                urls: cfg.urls.clone(),
                secret,
                livekit_urls: cfg.livekit_urls.clone(),
                livekit_signer,
                max_attempts: i64::from(cfg.max_attempts.max(1)),
                claim_ms: i64::try_from(cfg.timeout_secs.max(1))
                    .unwrap_or(i64::MAX / 2_000)
                    .saturating_mul(1000)
                    .saturating_add(CLAIM_MARGIN_MS),
                client,
                notify: Notify::new(),
                last_seq: Mutex::new(None),
            }),
        }
    }

    /// Parlor's product events are on (`[webhooks] urls`).
    pub fn enabled(&self) -> bool {
        !self.inner.urls.is_empty()
    }

    /// LiveKit-format events are on (`[webhooks] livekit_urls`).
    pub fn livekit_enabled(&self) -> bool {
        !self.inner.livekit_urls.is_empty()
    }

    /// Queue `event` with `data` for every configured URL. Never fails the caller: a storage error
    /// is logged.
    pub async fn emit(&self, event: &str, data: Value) {
        if !self.enabled() {
            return;
        }
        let now = self.inner.clock.unix_ms();
        let event_id = crate::ids::new_id("evt_");
        let payload = json!({
            "id": event_id,
            "event": event,
            "created_at": crate::timefmt::rfc3339_ms(now),
            "data": data,
        })
        .to_string();
        let q = Queued {
            format: FORMAT_PARLOR,
            ordering_key: "",
            event,
            event_id: &event_id,
            payload,
        };
        self.enqueue(&self.inner.urls, q).await;
    }

    /// Queue a LiveKit-format event (its JSON body made by [`livekit`]) for every LiveKit URL,
    /// ordered after every earlier event of `room`.
    pub(crate) async fn emit_livekit(&self, room: &str, event: &str, event_id: &str, body: String) {
        if !self.livekit_enabled() {
            return;
        }
        let q = Queued {
            format: FORMAT_LIVEKIT,
            ordering_key: room,
            event,
            event_id,
            payload: body,
        };
        self.enqueue(&self.inner.livekit_urls, q).await;
    }

    /// One delivery of `q` per URL, at the end of the queue. A storage error is logged.
    async fn enqueue(&self, urls: &[String], q: Queued<'_>) {
        let i = &self.inner;
        let mut last = i.last_seq.lock().await;
        let mut seq = match *last {
            Some(s) => s,
            None => match i.store.max_delivery_seq().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(event = q.event, error = %e, "cannot read the webhook queue: event dropped");
                    return;
                }
            },
        };
        let now = i.clock.unix_ms();
        for url in urls {
            // Microseconds-like from the clock, but always after the previous one.
            seq = (now.saturating_mul(1000)).max(seq + 1);
            let d = Delivery {
                id: crate::ids::new_id("whd_"),
                event_id: q.event_id.to_string(),
                event: q.event.to_string(),
                url: url.clone(),
                payload: q.payload.clone(),
                status: "pending".into(),
                attempts: 0,
                next_attempt_at: now,
                last_status: None,
                last_error: None,
                created_at: now,
                delivered_at: None,
                format: q.format.to_string(),
                ordering_key: q.ordering_key.to_string(),
                seq,
            };
            if let Err(e) = i.store.insert_delivery(&d).await {
                warn!(event = q.event, url = %url, error = %e, "cannot queue webhook");
            }
        }
        *last = Some(seq);
        drop(last);
        i.notify.notify_one();
    }

    /// Run the dispatcher until `shutdown`: attempts due deliveries, then sleeps until the next one
    /// is due (or a new event arrives).
    pub fn spawn_dispatcher(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if !this.enabled() && !this.livekit_enabled() {
                return;
            }
            loop {
                let now = this.inner.clock.unix_ms();
                let due = match this.inner.store.due_deliveries(now, BATCH).await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(error = %e, "reading webhook queue");
                        Vec::new()
                    }
                };
                let busy = !due.is_empty();
                for d in due {
                    // Another node's dispatcher may have read the same row: one claim wins.
                    let lease = this.inner.clock.unix_ms() + this.inner.claim_ms;
                    match this
                        .inner
                        .store
                        .claim_delivery(&d.id, d.next_attempt_at, lease)
                        .await
                    {
                        Ok(true) => this.attempt(d).await,
                        Ok(false) => {}
                        Err(e) => warn!(error = %e, "claiming a webhook delivery"),
                    }
                }
                if busy {
                    continue;
                }
                let wait = match this.inner.store.next_delivery_at().await {
                    Ok(Some(at)) => (at - this.inner.clock.unix_ms()).clamp(10, 60_000),
                    _ => 60_000,
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = this.inner.notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                }
            }
        })
    }

    /// The request of one attempt of `d`, signed for its format at `ts` (unix seconds).
    fn request(&self, d: &Delivery, ts: u64) -> Result<reqwest::RequestBuilder, String> {
        let i = &self.inner;
        let rb = i
            .client
            .post(&d.url)
            .header("User-Agent", concat!("parlor/", env!("CARGO_PKG_VERSION")));
        let rb = match d.format.as_str() {
            FORMAT_PARLOR => rb
                .header("Content-Type", "application/json")
                .header("X-Parlor-Event", &d.event)
                .header("X-Parlor-Delivery", &d.id)
                .header("X-Parlor-Timestamp", ts.to_string())
                .header(
                    "X-Parlor-Signature",
                    sign(&i.secret, ts as i64, d.payload.as_bytes()),
                ),
            FORMAT_LIVEKIT => {
                let signer = i
                    .livekit_signer
                    .as_ref()
                    .ok_or("no API key to sign LiveKit webhooks with")?;
                rb.header("Content-Type", livekit::CONTENT_TYPE)
                    .header("Authorization", signer.token(d.payload.as_bytes(), ts))
            }
            other => return Err(format!("unknown webhook format {other:?}")),
        };
        Ok(rb.body(d.payload.clone()))
    }

    async fn attempt(&self, d: Delivery) {
        let i = &self.inner;
        let ts = i.clock.unix_secs();
        let res = match self.request(&d, ts) {
            Ok(rb) => rb.send().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let attempts = d.attempts + 1;
        let now = i.clock.unix_ms();
        let (code, error) = match res {
            Ok(r) if r.status().is_success() => {
                debug!(event = %d.event, url = %d.url, attempts, "webhook delivered");
                let code = Some(i64::from(r.status().as_u16()));
                if let Err(e) = i
                    .store
                    .record_attempt(&d.id, "delivered", attempts, now, code, None, Some(now))
                    .await
                {
                    warn!(error = %e, "recording webhook delivery");
                }
                return;
            }
            Ok(r) => (
                Some(i64::from(r.status().as_u16())),
                format!("HTTP {}", r.status()),
            ),
            Err(e) => (None, e),
        };
        let (status, next) = if attempts >= i.max_attempts {
            warn!(event = %d.event, url = %d.url, attempts, error = %error, "webhook failed");
            ("failed", now)
        } else {
            info!(event = %d.event, url = %d.url, attempts, error = %error, "webhook will be retried");
            ("pending", now + backoff_ms(attempts))
        };
        if let Err(e) = i
            .store
            .record_attempt(&d.id, status, attempts, next, code, Some(&error), None)
            .await
        {
            warn!(error = %e, "recording webhook attempt");
        }
    }
}

/// What `enqueue` stores once per URL.
struct Queued<'a> {
    format: &'static str,
    ordering_key: &'a str,
    event: &'a str,
    event_id: &'a str,
    payload: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'whsec',b'1700000000.{\"a\":1}',hashlib.sha256).hexdigest())"
        assert_eq!(
            sign("whsec", 1_700_000_000, br#"{"a":1}"#),
            "sha256=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(0), 1000);
    }
}
