//! The controller's web UI: three static files (`ui/index.html`, `ui/app.js`,
//! `ui/style.css`) compiled into the binary and served under `/ui`.
//!
//! Contract:
//! - **No data, no token.** The files are the same for everyone and carry no data, so
//!   they are served without the API token (like `GET /health`). Every piece of data the
//!   page shows comes from the ordinary API endpoints with the ordinary token check
//!   (`X-ZT1-Auth`); the UI has no endpoint of its own. The `Host` check of
//!   [`super::router`] applies to these files too.
//! - **The token travels in the URL fragment.** `skylan controller ui` prints
//!   `http://127.0.0.1:<api port>/ui/#token=<token>`; a fragment is never sent to a
//!   server, so the token is in no request line or log. The page moves it into
//!   `sessionStorage` (gone when the tab closes) and removes it from the address bar.
//! - **Security headers** on every file: a Content-Security-Policy that allows only
//!   this origin's own scripts, styles and API (no inline script or style, no framing,
//!   no form posts, no `<base>`), `X-Frame-Options: DENY`, `Referrer-Policy:
//!   no-referrer`, `X-Content-Type-Options: nosniff`, and `Cache-Control: no-cache` so a
//!   new binary's files are picked up at once. The script puts data into the page only
//!   as text (`textContent`, form values), never as markup.
//! - **Paths:** `GET /ui` and `GET /ui/` answer the page; `GET /ui/app.js` and
//!   `GET /ui/style.css` its script and style. Anything else under `/ui/` is the API's
//!   usual JSON 404.
//!
//! There is no build step: edit the files and rebuild the binary.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
const INDEX_HTML: &str = include_str!("ui/index.html");
/// The page's script (all of its behaviour).
const APP_JS: &str = include_str!("ui/app.js");
/// The page's style sheet.
const STYLE_CSS: &str = include_str!("ui/style.css");

/// What the page may load and run: only files and API calls of this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The UI's routes, to be merged into [`super::router`] outside the token check.
pub fn routes() -> Router {
    let page = get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) });
    Router::new()
        .route("/ui", page.clone())
        .route("/ui/", page)
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// One static file with its type and the security headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_path(path: &str) -> Response {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        tower_service::Service::call(&mut routes(), request)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_security_headers() {
        for (path, kind) in [
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let response = get_path(path).await;
            assert_eq!(response.status(), 200, "{path}");
            let h = response.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind));
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_the_script_no_markup_sinks() {
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js" defer></script>"#));
        for inline in ["<script>", "style=", "onclick", "onload", "javascript:"] {
            assert!(!INDEX_HTML.contains(inline), "index.html has {inline}");
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
