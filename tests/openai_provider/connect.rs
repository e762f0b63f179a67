//! Connecting: keys, Azure, unreachable servers, TLS; junk and faults from the server; availability.

use super::*;

#[tokio::test]
async fn a_wrong_key_is_a_connect_error_with_the_status() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let cfg = OpenAiConfig {
        api_key: "sk-wrong".into(),
        ..config(&fake)
    };
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    let ProviderError::Connect(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("invalid_api_key"), "{msg}");
    assert!(!msg.contains("sk-wrong"), "the key leaked: {msg}");
    assert!(!fake.requests()[0].accepted);
}

#[tokio::test]
async fn azure_sends_the_api_key_header_and_keeps_a_model_in_the_url() {
    let fake = FakeServer::start(FakeOptions {
        azure: true,
        ..FakeOptions::default()
    })
    .await;
    let cfg = OpenAiConfig {
        url: format!(
            "{}?api-version=2025-08-28&deployment=rt&model=my-deployment",
            fake.url()
        ),
        azure_api_key_header: true,
        ..config(&fake)
    };
    let _conv = start_with(cfg, voice_settings(), Vec::new()).await;
    let req = &fake.requests()[0];
    assert_eq!(
        req.uri,
        "/v1/realtime?api-version=2025-08-28&deployment=rt&model=my-deployment"
    );
    assert_eq!(req.header("api-key"), Some("sk-test-fake"));
    assert_eq!(req.header("authorization"), None);
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_within_the_timeout() {
    // Nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = OpenAiConfig {
        url: format!("ws://127.0.0.1:{port}/v1/realtime"),
        api_key: "k".into(),
        connect_timeout_ms: 500,
        ..OpenAiConfig::default()
    };
    let t0 = Instant::now();
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // Accepts TCP, never answers the upgrade.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let cfg = OpenAiConfig {
        url: format!("ws://{addr}/v1/realtime"),
        connect_timeout_ms: 300,
        ..cfg
    };
    let t0 = Instant::now();
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    let elapsed = t0.elapsed();
    let ProviderError::Connect(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("300 ms"), "{msg}");
    assert!(
        msg.contains("?…") && !msg.contains("model="),
        "query redacted: {msg}"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

/// `wss://` builds the TLS client (rustls with its one crypto provider) without panicking; a peer
/// that is not a TLS server is a connect error.
#[tokio::test]
async fn a_wss_url_to_a_server_that_is_not_tls_is_a_connect_error() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _srv = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let cfg = OpenAiConfig {
        url: format!("wss://localhost:{}/v1/realtime", addr.port()),
        api_key: "k".into(),
        connect_timeout_ms: 2000,
        ..OpenAiConfig::default()
    };
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    let ProviderError::Connect(msg) = err else {
        panic!("{err:?}")
    };
    assert!(!msg.contains("no session within"), "failed fast: {msg}");
    assert!(
        msg.contains("corrupt message"),
        "the TLS handshake ran: {msg}"
    );
}

#[tokio::test]
async fn junk_from_the_server_is_skipped() {
    let fake = FakeServer::start(FakeOptions {
        junk_before_response: true,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    for _ in 0..2 {
        conv.input.send(Input::CreateResponse).await.unwrap();
        let outs = until_done(&mut conv).await;
        assert!(
            outs.iter().all(|o| !matches!(o, Output::Error { .. })),
            "{outs:?}"
        );
        assert_eq!(audio_of(&outs), expected_reply(10 * 2400));
        assert_eq!(done_of(&outs).0, ResponseStatus::Completed);
    }
}

async fn fatal_mid_response(fault: Fault) {
    let fake = FakeServer::start(FakeOptions {
        fault: Some(fault),
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    let mut audio = 0;
    let err = loop {
        match recv(&mut conv).await.expect("closed without an error") {
            Output::AudioDelta { pcm, .. } => audio += pcm.len(),
            e @ Output::Error { .. } => break e,
            Output::ResponseDone { .. } => panic!("the response completed"),
            _ => {}
        }
    };
    assert_eq!(audio, 3 * 2400, "the audio before the fault came through");
    let Output::Error { code, fatal, .. } = err else {
        unreachable!()
    };
    assert!(fatal);
    assert_eq!(code, "connection_lost");
    assert_eq!(
        recv(&mut conv).await,
        None,
        "the channel closes after a fatal error"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_response_is_a_fatal_error() {
    fatal_mid_response(Fault::CloseAfterChunks(3)).await;
}

#[tokio::test]
async fn a_corrupt_frame_mid_response_is_a_fatal_error() {
    fatal_mid_response(Fault::CorruptAfterChunks(3)).await;
}

#[tokio::test]
async fn without_a_key_the_provider_is_unavailable() {
    let cfg = OpenAiConfig {
        api_key: String::new(),
        api_key_env: "PARLOR_TEST_UNSET_OPENAI_KEY".into(),
        ..OpenAiConfig::default()
    };
    let p = OpenAiProvider::new(&cfg);
    assert_eq!(p.name(), "openai");
    let Availability::Unavailable { reason } = p.availability() else {
        panic!("available without a key")
    };
    assert!(reason.contains("PARLOR_TEST_UNSET_OPENAI_KEY"), "{reason}");
    let err = p.start(voice_settings(), Vec::new()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");

    let keyed = OpenAiProvider::new(&OpenAiConfig {
        api_key: "k".into(),
        ..cfg.clone()
    });
    assert_eq!(keyed.availability(), Availability::Available);

    let rt = parlor::realtime::config::RealtimeConfig {
        openai: cfg,
        ..Default::default()
    };
    let providers = parlor::realtime::build_providers(
        &rt,
        std::path::Path::new("/nonexistent"),
        parlor::clock::system(),
    );
    assert!(matches!(
        providers.availability("openai"),
        Availability::Unavailable { .. }
    ));
}

#[tokio::test]
async fn dropping_the_input_closes_the_connection_and_then_the_output() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let conv = start(&fake, voice_settings()).await;
    let Conversation { input, mut output } = conv;
    drop(input);
    let closed = tokio::time::timeout(Duration::from_secs(5), output.recv()).await;
    assert_eq!(closed.expect("output not closed"), None);
    for _ in 0..100 {
        if fake.closes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.closes(), 1, "a close frame, not a dropped socket");
}
