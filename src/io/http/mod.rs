//! The local HTTP API: one server for the node's endpoints and the controller's.
//!
//! What this module owns, for every endpoint:
//! - **Serving.** [`serve`] takes an already bound `tokio::net::TcpListener` (tests
//!   bind port 0) and a shutdown future, and serves a router until the future resolves,
//!   finishing requests in flight (mini-redis style). It has header, body and
//!   write-stall timeouts and a connection cap, so a slow or idle client cannot hold
//!   the API ([`server`]).
//! - **Authentication.** [`router`] puts every protected route behind the token from
//!   `authtoken.secret`, sent as `X-ZT1-Auth: <token>` or `Authorization: Bearer
//!   <token>` and compared in constant time. `GET /health` and the web UI's static
//!   files ([`ui`], under `/ui`; they hold no data) need no token.
//! - **DNS-rebinding defence.** Requests whose `Host` header names anything but a
//!   loopback host (`localhost`, `*.localhost`, 127.0.0.0/8, `::1`, plus any names in
//!   [`ApiConfig::extra_hosts`]) are refused with 403, before authentication. Requests
//!   without a `Host` header (HTTP/1.0 tools) are allowed: browsers always send one.
//! - **Body size and time limits.** Bodies over [`ApiConfig::body_limit`] (default
//!   1 MiB) are refused with 413; a body that has not arrived within
//!   [`ApiConfig::body_timeout`] (default 30 s) with 408.
//! - **Errors.** [`ApiError`] is the single mapping from failures to an HTTP status and
//!   a `{"error": "..."}` body; unknown paths and methods answer in the same shape.
//!
//! Endpoint groups are plain `axum::Router`s merged under [`router`]: the node's
//! ([`node::routes`]: `/status`, `/peer`, `/network`, `/moon`, `/metrics`, ..., which ask the node
//! driver over its channel) and, on a node that runs a controller, the controller's
//! ([`controller::routes`]). The daemon passes `node_routes.merge(controller_routes)` as
//! `protected`.
//!
//! This is I/O code: it reads the wall clock (for the controller's `now`) and OS
//! randomness (for tokens).

pub mod controller;
pub mod metrics;
pub mod moon;
pub mod node;
pub mod root;
pub mod server;
pub mod ui;

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

pub use self::server::{ServerLimits, serve, serve_with};
use crate::controller::ControllerError;

/// Default largest request body (1 MiB: a network with a full 1024-entry rule table
/// fits several times over).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default time a request body has to arrive (1 MiB over loopback takes milliseconds).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The file in the home directory that holds the API token.
pub const TOKEN_FILE: &str = "authtoken.secret";

/// The secret token that authorizes API requests. Never printed.
#[derive(Clone)]
pub struct AuthToken(Arc<zeroize::Zeroizing<String>>);

impl AuthToken {
    /// Wraps a token string (surrounding whitespace is ignored).
    pub fn new(token: &str) -> Self {
        AuthToken(Arc::new(zeroize::Zeroizing::new(token.trim().to_string())))
    }

    /// A fresh random token: 24 lowercase letters and digits (about 124 bits).
    pub fn generate() -> Self {
        use rand_core::{OsRng, RngCore};
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut raw = [0u8; 24];
        OsRng.fill_bytes(&mut raw);
        // 256 % 36 != 0, so reject bytes above the largest multiple of 36 to stay uniform.
        let mut token = String::with_capacity(24);
        let mut i = 0;
        while token.len() < 24 {
            if i == raw.len() {
                OsRng.fill_bytes(&mut raw);
                i = 0;
            }
            let b = raw[i];
            i += 1;
            if b < 252 {
                token.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
        AuthToken::new(&token)
    }

    /// The token text (for writing the file and for clients).
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        !ours.is_empty() && bool::from(ours.ct_eq(presented))
    }
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(..)")
    }
}

/// What a reader of the token could do (for [`super::home::protect_secret`]).
const TOKEN_EXPOSED: &str = "anyone who read it could use the local API (join and leave networks, and run this node's controller); to get a new token, delete authtoken.secret and restart";

/// Reads `home/authtoken.secret`, creating it (mode 0600, random token) if missing. An
/// existing token file with a wider mode is tightened to 0600 with a warning.
pub fn load_or_create_token(home: &Path) -> io::Result<AuthToken> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let path = home.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            super::home::protect_secret(&path, TOKEN_EXPOSED)
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
            return Ok(AuthToken::new(&text));
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is empty; delete it to get a new token", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    }
    std::fs::create_dir_all(home)?;
    let token = AuthToken::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.expose().as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The token every protected request must present.
    pub token: AuthToken,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Longest time a request body may take to arrive (then 408).
    pub body_timeout: Duration,
    /// Extra `Host` names accepted besides loopback ones (for deployments that expose
    /// the API under a name on purpose). Compared case-insensitively, without port.
    pub extra_hosts: Vec<String>,
}

impl ApiConfig {
    /// Defaults: 1 MiB bodies arriving within 30 s, loopback hosts only.
    pub fn new(token: AuthToken) -> Self {
        ApiConfig {
            token,
            body_limit: DEFAULT_BODY_LIMIT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            extra_hosts: Vec::new(),
        }
    }
}

/// The whole API: `GET /health` and the web UI's files ([`ui::routes`]) without
/// authentication, `protected` behind the token,
/// the `Host` check and body limit on everything, JSON errors for unknown paths and
/// methods.
pub fn router(config: ApiConfig, protected: Router) -> Router {
    let config = Arc::new(config);
    let protected = protected.route_layer(middleware::from_fn_with_state(
        config.clone(),
        require_token,
    ));
    Router::new()
        .route("/health", get(health))
        .merge(ui::routes())
        .merge(protected)
        .fallback(unknown_path)
        .method_not_allowed_fallback(unknown_method)
        .layer(middleware::from_fn_with_state(config.clone(), check_host))
        .layer(DefaultBodyLimit::max(config.body_limit))
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn unknown_path(req: Request) -> ApiError {
    ApiError::NotFound(format!("no endpoint {} {}", req.method(), req.uri().path()))
}

async fn unknown_method(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not supported on {}",
        req.method(),
        req.uri().path()
    ))
}

async fn require_token(
    State(config): State<Arc<ApiConfig>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = req.headers();
    let presented = headers.get("x-zt1-auth").map(|v| v.as_bytes()).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    });
    match presented {
        Some(token) if config.token.matches(token.trim_ascii()) => Ok(next.run(req).await),
        Some(_) => Err(ApiError::Unauthorized(
            "the API token is wrong; use the one in authtoken.secret in the home directory",
        )),
        None => Err(ApiError::Unauthorized(
            "an API token is required: send X-ZT1-Auth: <token> or Authorization: Bearer <token> (the token is in authtoken.secret in the home directory)",
        )),
    }
}

async fn check_host(
    State(config): State<Arc<ApiConfig>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    req.extensions_mut().insert(BodyRules {
        limit: config.body_limit,
        timeout: config.body_timeout,
    });
    if let Some(host) = req.headers().get(header::HOST) {
        let host = host.to_str().unwrap_or_default();
        if !host_allowed(host, &config.extra_hosts) {
            return Err(ApiError::ForbiddenHost(host.chars().take(100).collect()));
        }
    }
    Ok(next.run(req).await)
}

/// Whether a `Host` header value names a loopback host (or an explicitly allowed one).
fn host_allowed(host: &str, extra: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') => {
                if !port.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
                name
            }
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    extra.iter().any(|h| h.eq_ignore_ascii_case(&name))
}

/// Every way an API request can fail, mapped to one status code and a JSON body
/// `{"error": "<what went wrong and what to do>"}`, here and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (body, path, field).
    #[error("{0}")]
    BadRequest(String),
    /// 400: rules source that does not compile; the body adds `line`, `column` (1-based)
    /// and `message` beside `error`, for editors.
    #[error("rulesSource line {line}, column {column}: {message}")]
    Rules {
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The compiler's message.
        message: String,
    },
    /// 401: no token or a wrong one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the `Host` header is not a loopback name.
    #[error(
        "Host {0:?} is not a loopback name; the API answers only requests addressed to localhost, 127.0.0.1 or [::1] (this blocks DNS-rebinding attacks from web pages)"
    )]
    ForbiddenHost(String),
    /// 404: no such endpoint or record.
    #[error("{0}")]
    NotFound(String),
    /// 405: the endpoint exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: conflicts with another record.
    #[error("{0}")]
    Conflict(String),
    /// 408: the body did not arrive in time.
    #[error("the request body did not arrive within {0:?}; send it all at once")]
    RequestTimeout(Duration),
    /// 413: body over the limit.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 500: an internal failure (database, task).
    #[error("{0}")]
    Internal(String),
    /// 503: temporarily impossible.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Rules { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenHost(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        let msg = e.to_string();
        match e {
            ControllerError::NotFound { .. } => ApiError::NotFound(msg),
            ControllerError::Rules {
                line,
                column,
                message,
            } => ApiError::Rules {
                line,
                column,
                message,
            },
            ControllerError::BadField { .. } | ControllerError::BadRequest(_) => {
                ApiError::BadRequest(msg)
            }
            ControllerError::Conflict(_) => ApiError::Conflict(msg),
            ControllerError::PoolExhausted(_) => {
                tracing::error!(error = %msg, "address pool exhausted");
                ApiError::Conflict(msg)
            }
            ControllerError::Exhausted(_) => ApiError::Unavailable(msg),
            ControllerError::Storage { .. } | ControllerError::DamagedDatabase { .. } => {
                tracing::error!(error = %msg, "controller storage failure");
                ApiError::Internal(msg)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.to_string()});
        if let ApiError::Rules {
            line,
            column,
            message,
        } = &self
        {
            body["line"] = json!(line);
            body["column"] = json!(column);
            body["message"] = json!(message);
        }
        (self.status(), axum::Json(body)).into_response()
    }
}

/// A request body that must be a JSON object. An empty body counts as `{}` (ZeroTier
/// scripts POST with `-d ''`). The `Content-Type` is not checked: `curl -d` sends a
/// form type, and ZeroTier accepts that.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonObject(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(other) => Err(ApiError::BadRequest(format!(
                "the body must be a JSON object, got {}",
                match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                }
            ))),
            Err(e) => Err(ApiError::BadRequest(format!(
                "the body is not valid JSON: {e}"
            ))),
        }
    }
}

/// A request body read as UTF-8 text (rules source), under the same size and time
/// limits as [`JsonObject`].
pub struct TextBody(pub String);

impl<S: Send + Sync> FromRequest<S> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(TextBody)
            .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8 text: {e}")))
    }
}

/// Reads a whole request body within the configured size and time limits.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let rules = req
        .extensions()
        .get::<BodyRules>()
        .copied()
        .unwrap_or(BodyRules {
            limit: DEFAULT_BODY_LIMIT,
            timeout: DEFAULT_BODY_TIMEOUT,
        });
    let read = tokio::time::timeout(rules.timeout, Bytes::from_request(req, state));
    read.await
        .map_err(|_| ApiError::RequestTimeout(rules.timeout))?
        .map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(rules.limit)
            } else {
                ApiError::BadRequest(format!("could not read the request body: {rej}"))
            }
        })
}

/// The configured body limits, made visible to the body extractor.
#[derive(Clone, Copy, Debug)]
struct BodyRules {
    limit: usize,
    timeout: Duration,
}

/// Adds a response header listing body fields that were ignored.
fn with_ignored(mut resp: Response, ignored: &[String]) -> Response {
    if !ignored.is_empty()
        && let Ok(v) = ignored.join(", ").parse()
    {
        resp.headers_mut().insert("skylan-ignored-fields", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_allowed_and_others_refused() {
        for ok in [
            "localhost",
            "localhost:9993",
            "LOCALHOST.",
            "api.localhost:1",
            "127.0.0.1",
            "127.0.0.1:9993",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9993",
            "::1",
        ] {
            assert!(host_allowed(ok, &[]), "{ok} should be allowed");
        }
        for bad in [
            "evil.example",
            "evil.example:9993",
            "198.51.100.7:9993",
            "localhost.evil.example",
            "[2001:db8::1]:9993",
            "127.0.0.1:99x3",
            "[::1",
            "",
        ] {
            assert!(!host_allowed(bad, &[]), "{bad} should be refused");
        }
        assert!(host_allowed("ctl.lab:9993", &["ctl.lab".into()]));
    }

    #[test]
    fn tokens_compare_exactly() {
        let t = AuthToken::new(" abc123\n");
        assert!(t.matches(b"abc123"));
        assert!(!t.matches(b"abc12"));
        assert!(!t.matches(b"abc1234"));
        assert!(!t.matches(b""));
        assert!(!AuthToken::new("").matches(b""));
        assert_eq!(format!("{t:?}"), "AuthToken(..)");
    }

    #[test]
    fn generated_tokens_are_24_alphanumerics_and_differ() {
        let a = AuthToken::generate();
        let b = AuthToken::generate();
        assert_eq!(a.expose().len(), 24);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn token_file_is_created_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_token(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a.expose(), b.expose());
        // A token file others can read is made private again.
        let path = dir.path().join(TOKEN_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let c = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a.expose(), c.expose());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn controller_errors_map_to_statuses() {
        let cases = [
            (
                ControllerError::NotFound { what: "x".into() },
                StatusCode::NOT_FOUND,
            ),
            (
                ControllerError::field("mtu", "bad"),
                StatusCode::BAD_REQUEST,
            ),
            (ControllerError::Conflict("x".into()), StatusCode::CONFLICT),
            (
                ControllerError::PoolExhausted("x".into()),
                StatusCode::CONFLICT,
            ),
            (
                ControllerError::storage("x", "y"),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e).status(), status);
        }
    }
}
