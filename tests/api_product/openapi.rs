//! `/openapi.json` describes every route the server crate registers, and every described operation
//! is served.

use crate::on_every_backend;
use crate::support::Srv;
use serde_json::Value;
use std::collections::BTreeSet;

/// (METHOD, path) of every `.route("path", method(handler)...)` in the server crate's sources.
fn registered_routes() -> BTreeSet<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Every source file of the server crate (subsystems register routes in their own folders).
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().and_then(|e| e.to_str()) == Some("rs") {
                files.push(p);
            }
        }
    }
    let mut out = BTreeSet::new();
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let chunks: Vec<&str> = src.split(".route(").skip(1).collect();
        for chunk in chunks {
            let chunk = chunk.trim_start();
            let Some(rest) = chunk.strip_prefix('"') else {
                continue;
            };
            let end = rest.find('"').unwrap();
            let route = &rest[..end];
            // The method router: up to the end of this `.route(...)` call (balanced parens).
            let mut depth = 1;
            let mut stop = rest.len();
            for (i, c) in rest[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            stop = end + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[end..stop];
            let mut found = false;
            for m in ["get", "post", "put", "delete", "patch", "options"] {
                let needle = format!("{m}(");
                let hit = methods.match_indices(&needle).any(|(i, _)| {
                    i == 0 || {
                        let prev = methods.as_bytes()[i - 1];
                        !(prev.is_ascii_alphanumeric() || prev == b'_')
                    }
                });
                if hit {
                    out.insert((m.to_string(), route.to_string()));
                    found = true;
                }
            }
            assert!(
                found,
                "cannot read the methods of route {route} in {path:?}"
            );
        }
    }
    out
}

async fn openapi(s: &Srv) {
    let r = s
        .req(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(r.0, 200);
    let doc = r.1;
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["servers"][0]["url"], s.http.as_str());
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let registered = registered_routes();
    assert!(registered.len() >= 30, "{registered:?}");
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(extra.is_empty(), "documented but not registered: {extra:?}");

    // Every operation has a summary, tags and responses; every $ref resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap().to_string());
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    for (method, path) in &documented {
        let op = &paths[path][method];
        assert!(op["summary"].is_string(), "{method} {path}");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        // Path parameters are declared.
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(|c| c == '{' || c == '}');
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {path}: path parameter {name} undeclared"
            );
        }
        // The operation is served: no router 404/405 (handlers' own 404s carry specific codes).
        let url = path.replace('{', "x").replace('}', "");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = s
            .client
            .request(m, s.url(&url))
            .bearer_auth(s.token("probe"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}: {text}");
        assert!(
            !(status == 404 && text.contains("no such route")),
            "{method} {path} is documented but not routed"
        );
        assert!(status < 500, "{method} {path}: {status} {text}");
        // Documented status codes include the one we got.
        assert!(
            op["responses"].get(status.to_string()).is_some(),
            "{method} {path}: status {status} not documented: {text}"
        );
    }
}

#[tokio::test]
async fn openapi_describes_every_route() {
    on_every_backend!(openapi);
}
