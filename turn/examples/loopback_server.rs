//! Run the embedded TURN server on 127.0.0.1 (ephemeral ports, loopback peers allowed) and print
//! a freshly minted credential: handy for poking it with `turnutils_uclient`.
//!
//! `cargo run -p parlor-turn --example loopback_server -- [secret]`

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parlor_turn::{Clock, TurnConfig, TurnServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "example-secret".into());
    let clock: Arc<dyn Clock> = Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    });
    let cfg = TurnConfig::loopback("parlor.test", vec![secret]);
    let server = TurnServer::start(cfg, clock.clone()).await?;
    let c = server.credentials().mint("demo", 3600, clock.unix_secs());
    let a = server.local_addrs();
    println!("udp={} tcp={:?}", a.udp, a.tcp);
    println!("username={} credential={}", c.username, c.credential);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!("{:?}", server.metrics());
    }
}
