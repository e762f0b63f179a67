//! Interop: a credential minted by parlor-turn is accepted by a real coturn `turnserver`
//! configured with the same static-auth-secret (the deployment where the embedded server is
//! disabled in favour of coturn). Needs the Debian package `coturn`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rtc::stun::message::*;
use tokio::net::UdpSocket;

struct Coturn {
    child: tokio::process::Child,
    dir: PathBuf,
    port: u16,
}

impl Coturn {
    async fn start(bin: &PathBuf, secret: &str) -> Coturn {
        for _attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("parlor-turn-coturn-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = tokio::process::Command::new(bin)
                .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log"])
                .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
                .arg(format!("--listening-port={port}"))
                .args(["--allow-loopback-peers", "--use-auth-secret"])
                .arg(format!("--static-auth-secret={secret}"))
                .arg(format!("--realm={REALM}"))
                .arg(format!(
                    "--pidfile={}",
                    dir.join("turnserver.pid").display()
                ))
                .arg(format!("--userdb={}", dir.join("turndb").display()))
                .arg(format!("--log-file={}", dir.join("turn.log").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut c = Coturn { child, dir, port };
            if c.wait_ready().await {
                return c;
            }
            c.stop().await;
        }
        panic!("coturn did not come up");
    }

    /// Poll with STUN Binding requests until coturn answers (bounded).
    async fn wait_ready(&mut self) -> bool {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut m = Message::new();
        m.build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
            .unwrap();
        let mut buf = [0u8; 1500];
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            sock.send_to(&m.raw, server).await.unwrap();
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
            {
                return true;
            }
        }
        false
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Coturn {
    /// Also on a failed assertion: kill coturn and remove its scratch directory.
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_minted_by_parlor_is_accepted_by_coturn() {
    let (Some(server_bin), Some(client_bin)) = (
        require_tool("turnserver", "coturn"),
        require_tool("turnutils_uclient", "coturn"),
    ) else {
        return;
    };
    let secret = "interop-shared-secret";
    let coturn = Coturn::start(&server_bin, secret).await;
    let validator = parlor_turn::CredentialValidator::new([secret, "older-secret"]).unwrap();
    let now = unix_now();

    let creds = validator.mint("interop-user", 600, now);
    let r = uclient(
        &client_bin,
        coturn.port,
        &creds.username,
        &creds.credential,
        &[],
        10,
    )
    .await;
    assert!(
        r.success,
        "coturn refused a parlor credential:\n{}",
        r.output
    );
    // -y without -c: RTP and RTCP pairs, two clients: 4 × 10 messages.
    assert_eq!(r.sent, 40, "{}", r.output);
    assert!(r.received > 0, "{}", r.output);

    // Same code path, negative controls: coturn really checks what we mint.
    let wrong = parlor_turn::mint(b"older-secret", "interop-user", 600, now);
    let r = uclient(
        &client_bin,
        coturn.port,
        &wrong.username,
        &wrong.credential,
        &["-c"],
        3,
    )
    .await;
    assert!(
        !r.success,
        "coturn accepted a credential of another secret:\n{}",
        r.output
    );
    let expired = validator.mint("interop-user", 60, now - 3600);
    let r = uclient(
        &client_bin,
        coturn.port,
        &expired.username,
        &expired.credential,
        &["-c"],
        3,
    )
    .await;
    assert!(
        !r.success,
        "coturn accepted an expired credential:\n{}",
        r.output
    );
    coturn.stop().await;
}
