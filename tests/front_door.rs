//! The front door over real HTTP: `/assets/` serves the pinned livekit-client bundle from the Parlor
//! home (versioned, cacheable) and says how to install it when missing; `/demo` and `/docs` are
//! self-contained pages (no external URL, narrow-window markup, favicon); the dev-only demo token.
//! The browser side (every non-loopback request blocked) is `tests/browser/front_door.mjs`, run by
//! `.ci/run` against the server the README's run command starts.

mod common;

use common::{TestDb, TestServer};
use parlor::home::{Home, Status, LIVEKIT_CLIENT};
use std::path::{Path, PathBuf};

/// A livekit-client package directory installed by `scripts/setup` (the default Parlor home) or by
/// the browser tests' `npm ci`. Missing: a failure under CI, a loud skip otherwise.
fn installed_package() -> Option<PathBuf> {
    let home = parlor::home::default_home(|k| std::env::var(k).ok());
    let candidates = [
        home.join("web/node_modules/livekit-client"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/livekit-client"),
    ];
    for c in &candidates {
        let Ok(text) = std::fs::read_to_string(c.join("package.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["version"] == LIVEKIT_CLIENT.version
            && c.join(LIVEKIT_CLIENT.path_in_package).is_file()
        {
            return Some(c.clone());
        }
    }
    let msg = format!(
        "livekit-client {} is not installed in {candidates:?}: run scripts/setup",
        LIVEKIT_CLIENT.version
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// A fresh Parlor home holding a copy of the real installed package.
fn home_with_bundle(pkg: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let dst = home.path().join("web/node_modules/livekit-client");
    std::fs::create_dir_all(dst.join("dist")).unwrap();
    std::fs::copy(pkg.join("package.json"), dst.join("package.json")).unwrap();
    std::fs::copy(
        pkg.join(LIVEKIT_CLIENT.path_in_package),
        dst.join(LIVEKIT_CLIENT.path_in_package),
    )
    .unwrap();
    home
}

async fn start_with_home(home: &Path, dev_keys: bool) -> (TestServer, TestDb) {
    let db = TestDb::sqlite();
    let home = home.display().to_string();
    let s = TestServer::start_with(&db, move |c| {
        c.server.home = home;
        if dev_keys {
            c.keys.clear();
        }
    })
    .await;
    (s, db)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// No `http://` or `https://` reference: the page loads nothing from another origin.
fn assert_no_external_urls(page: &str, what: &str) {
    for scheme in ["http://", "https://", "//cdn"] {
        assert!(
            !page.contains(scheme),
            "{what} references {scheme}: offline it breaks"
        );
    }
}

#[tokio::test]
async fn assets_are_served_from_the_home_versioned_and_cacheable() {
    let Some(pkg) = installed_package() else {
        return;
    };
    let home = home_with_bundle(&pkg);
    let (s, _db) = start_with_home(home.path(), false).await;
    let expected = std::fs::read(pkg.join(LIVEKIT_CLIENT.path_in_package)).unwrap();

    let r = s
        .client
        .get(s.url(&LIVEKIT_CLIENT.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/javascript"));
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), expected.len());
    assert!(
        body[..] == expected[..],
        "served bytes differ from the installed bundle"
    );
    assert!(String::from_utf8_lossy(&body).contains("LivekitClient"));

    // Unversioned: served, but revalidated.
    let r = s
        .client
        .get(s.url("/assets/livekit-client.umd.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-cache");

    for (path, code) in [
        (
            "/assets/livekit-client.umd.js?v=1.0.0",
            "asset_version_not_found",
        ),
        ("/assets/other.js", "asset_not_found"),
        ("/assets/..%2Fpackage.json", "asset_not_found"),
    ] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], code, "{path}: {v}");
    }

    // The start-up inventory sees it (this home holds the web assets only: no voice models).
    let found = Home::inspect(home.path().to_path_buf());
    assert!(
        found.missing().all(|c| c.name != LIVEKIT_CLIENT.package),
        "{:?}",
        found.report()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_missing_or_stale_bundle_names_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let (s, _db) = start_with_home(home.path(), false).await;
    let r = s
        .client
        .get(s.url(&LIVEKIT_CLIENT.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "asset_not_installed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scripts/setup"),
        "{v}"
    );
    // The demo page still loads and carries the reason for its on-page error.
    let page = s.client.get(s.url("/demo")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("data-bundle-missing=\"livekit-client not installed in"));
    assert!(page.contains("scripts/setup on the server"));
    s.stop().await;

    let report = Home::inspect(home.path().to_path_buf()).report().join("\n");
    assert!(report.contains("MISSING  livekit-client"), "{report}");
    assert!(
        report.contains(&format!(
            "PARLOR_HOME={} scripts/setup",
            home.path().display()
        )),
        "{report}"
    );

    // Another version installed: reported as such, not served.
    let dst = home.path().join("web/node_modules/livekit-client");
    std::fs::create_dir_all(dst.join("dist")).unwrap();
    std::fs::write(dst.join("package.json"), r#"{"version":"2.0.0"}"#).unwrap();
    std::fs::write(dst.join(LIVEKIT_CLIENT.path_in_package), "old").unwrap();
    let stale = LIVEKIT_CLIENT.inspect(home.path());
    assert_eq!(
        stale,
        Status::Missing {
            why: format!("version 2.0.0 installed, {} pinned", LIVEKIT_CLIENT.version)
        }
    );
}

#[tokio::test]
async fn demo_and_docs_pages_are_self_contained_and_fit_a_narrow_window() {
    let home = tempfile::tempdir().unwrap();
    let (s, _db) = start_with_home(home.path(), false).await;
    for path in ["/demo", "/docs"] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            header(&r, "content-type").starts_with("text/html"),
            "{path}"
        );
        let page = r.text().await.unwrap();
        assert_no_external_urls(&page, path);
        assert!(
            page.contains(
                r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
            ),
            "{path}: no viewport meta"
        );
        assert!(page.contains("box-sizing:border-box") && page.contains("flex-wrap:wrap"));
        assert!(
            page.contains(r#"<link rel="icon" href="/favicon.ico""#),
            "{path}"
        );
        assert!(
            page.contains(r#"role="alert""#),
            "{path}: no on-page error area"
        );
    }
    let demo = s.client.get(s.url("/demo")).send().await.unwrap();
    let demo = demo.text().await.unwrap();
    assert!(demo.contains(&format!(r#"<script src="{}""#, LIVEKIT_CLIENT.url())));
    // Configured keys: not dev mode.
    assert!(demo.contains(r#"data-dev="false""#));
    let docs = s.client.get(s.url("/docs")).send().await.unwrap();
    assert!(docs
        .text()
        .await
        .unwrap()
        .contains("fetch('/openapi.json')"));

    let icon = s.client.get(s.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(header(&icon, "content-type"), "image/svg+xml");
    assert!(icon.text().await.unwrap().starts_with("<svg"));
    s.stop().await;
}

#[tokio::test]
async fn demo_token_only_with_dev_keys() {
    let home = tempfile::tempdir().unwrap();
    // Keys configured: refused, even with a valid token.
    let (s, _db) = start_with_home(home.path(), false).await;
    let r = s
        .client
        .post(s.url("/api/dev/demo-token"))
        .bearer_auth(s.user_token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "dev_mode_only");
    s.stop().await;

    // Dev keys (none configured): a demo-room join token, with no body or a chosen identity.
    let (s, _db) = start_with_home(home.path(), true).await;
    let page = s.client.get(s.url("/demo")).send().await.unwrap();
    assert!(page.text().await.unwrap().contains(r#"data-dev="true""#));
    let now = common::now_unix();
    for (body, want) in [
        (None, None),
        (Some(r#"{"identity":"alice"}"#), Some("alice")),
    ] {
        let mut rb = s.client.post(s.url("/api/dev/demo-token"));
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["room"], "demo");
        let claims = s
            .handle
            .state
            .keys
            .verify(v["token"].as_str().unwrap(), now)
            .unwrap();
        let grant = claims.video();
        assert_eq!(grant.room.as_deref(), Some("demo"));
        assert!(grant.room_join && grant.can_publish() && grant.can_subscribe());
        assert!(!grant.room_create && !grant.room_admin);
        match want {
            Some(id) => assert_eq!(claims.sub, id),
            None => assert!(claims.sub.starts_with("guest-"), "{}", claims.sub),
        }
        assert_eq!(v["identity"], claims.sub.as_str());
    }
    for bad in [r#"{"identity":"a b"}"#, r#"{"room":"other"}"#, "{"] {
        let r = s
            .client
            .post(s.url("/api/dev/demo-token"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
    }
    s.stop().await;
}
