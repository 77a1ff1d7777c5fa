//! `GET /ui`: the dashboard page and its built-in assets, served with their
//! content types, revalidation headers and a same-origin-only
//! Content-Security-Policy; the page loads nothing from anywhere else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

async fn app() -> TestApp {
    // The page needs no upstream; any URL will do.
    TestApp::start("http://127.0.0.1:9").await
}

fn url(app: &TestApp, path: &str) -> String {
    format!("http://{}{path}", app.addr)
}

fn assert_csp(response: &reqwest::Response) {
    let csp = response
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .expect("a Content-Security-Policy header")
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP {csp:?} lacks {directive:?}");
    }
    assert!(
        !csp.contains("unsafe-inline"),
        "CSP allows inline code: {csp}"
    );
    assert!(!csp.contains("unsafe-eval"), "CSP allows eval: {csp}");
    assert!(!csp.contains("http"), "CSP names another origin: {csp}");
}

/// Every `src=` and `href=` value in `html`.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_csp() {
    let app = app().await;
    let response = app.client.get(url(&app, "/ui")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_csp(&response);
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains("id=\"login-form\""),
        "the page has a sign-in form"
    );
    // Nothing inline for the CSP to have to allow.
    assert!(!html.contains("<script>"), "inline script in the page");
    assert!(!html.contains("style=\""), "inline style in the page");

    // `/ui/` is the same page.
    let response = app.client.get(url(&app, "/ui/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), html);
}

#[tokio::test]
async fn the_page_references_only_its_own_assets() {
    let app = app().await;
    let html = app
        .client
        .get(url(&app, "/ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refs = references(&html);
    let assets: Vec<&String> = refs.iter().filter(|r| !r.starts_with('#')).collect();
    assert!(
        assets.len() >= 3,
        "expected the stylesheet, the script and the icon: {refs:?}"
    );
    for reference in &assets {
        assert!(
            reference.starts_with("/ui/assets/") && !reference.starts_with("//"),
            "{reference:?} is not one of uno's own assets"
        );
        let response = app.client.get(url(&app, reference)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{reference}");
    }
    // The scripts import each other by relative path only, and fetch only
    // uno's own API.
    for script in ["/ui/assets/app.js", "/ui/assets/charts.js"] {
        let js = app
            .client
            .get(url(&app, script))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in js.lines().filter(|l| l.trim_start().starts_with("import ")) {
            assert!(line.contains("from './"), "{script}: {line}");
        }
        for forbidden in ["http://", "https://", "//cdn", "eval(", "innerHTML"] {
            let hits: Vec<&str> = js
                .lines()
                .filter(|l| l.contains(forbidden) && !l.contains("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{script} uses {forbidden:?}: {hits:?}");
        }
    }
}

#[tokio::test]
async fn assets_have_their_content_types_and_etags() {
    let app = app().await;
    for (path, content_type) in [
        ("/ui/assets/app.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/charts.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/style.css", "text/css; charset=utf-8"),
        ("/ui/assets/favicon.svg", "image/svg+xml"),
    ] {
        let response = app.client.get(url(&app, path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[CONTENT_TYPE], content_type, "{path}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache", "{path}");
        assert_csp(&response);
        let etag = response.headers()[ETAG].clone();
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");

        // Revalidation: the same ETag gets a 304 without a body.
        let again = app
            .client
            .get(url(&app, path))
            .header(IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[ETAG], etag, "{path}");
        assert!(again.bytes().await.unwrap().is_empty(), "{path}");

        // Another ETag gets the file.
        let stale = app
            .client
            .get(url(&app, path))
            .header(IF_NONE_MATCH, "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn unknown_assets_are_404() {
    let app = app().await;
    for path in [
        "/ui/assets/nope.js",
        "/ui/assets/index.html",
        "/ui/assets/..%2Fmod.rs",
        "/ui/assets/",
        "/ui/other",
    ] {
        let response = app.client.get(url(&app, path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_page_needs_no_key_but_shows_no_data_by_itself() {
    // The HTML itself holds no tenant, key or data: it is the same bytes for
    // everyone, and everything else comes from the admin API with the key.
    let app = app().await;
    let html = app
        .client
        .get(url(&app, "/ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"dashboard\" class=\"dashboard\" hidden"));
    assert!(!html.contains(common::KEY));
}
