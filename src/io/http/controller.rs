//! The controller's HTTP endpoints, in ZeroTier's self-hosted controller shape.
//!
//! | method + path | does |
//! | --- | --- |
//! | `GET /controller` | `{"controller": true, "apiVersion": 4, "clock": <ms>, "databaseReady": true}` |
//! | `GET /controller/network` | `["<nwid>", ...]` |
//! | `POST /controller/network` | create with a random unused number; body = network fields |
//! | `POST /controller/network/<address>______` | the same (ZeroTier's older form); `<address>` must be this controller's |
//! | `GET\|POST\|DELETE /controller/network/<nwid>` | read / create-or-partially-update / delete (returns the deleted object) |
//! | `GET /controller/network/<nwid>/member` | `{"<address>": <revision>, ...}` |
//! | `GET\|POST\|DELETE /controller/network/<nwid>/member/<address>` | read / create-or-partially-update / delete |
//! | `GET /unstable/controller/network` | `{"data": [network + "meta"], "meta": {"networkCount"}}` |
//! | `GET /unstable/controller/network/<nwid>/member` | `{"data": [member, ...], "meta": {"totalCount", "authorizedCount"}}` |
//! | `GET /controller/audit?after=<seq>&limit=<n>&network=<nwid>` | audit entries, oldest first (skylan extension) |
//! | `POST /controller/apply[?dryRun=true]` | body = a desired state (`controller::declare::Desired`): makes the controller's networks so in one transaction, or with `dryRun` only says what would change; answers the `Plan` (skylan extension, for `skylan controller plan\|apply`) |
//! | `POST /controller/rules/compile` | body = rules source text; compiles without saving: `{"rules", "capabilities", "tags", "origins", "warnings"}`, or a 400 with `line`, `column`, `message` (skylan extension, for editors) |
//!
//! Two changes must be confirmed with a query flag, because one careless call could
//! otherwise cut members off (`controller::Deliberate`): a new route that replaces the
//! members' default route (`0.0.0.0/0`, `::/0` and their halves) needs
//! `?allowDefaultRoute=true` on the network POST, and a new member address outside every
//! `ipAssignmentPools` range needs `?allowOutsidePools=true` on the member POST. Without
//! the flag such a change is a 400 naming the field and the flag; nothing changes.
//!
//! `PUT` is accepted wherever `POST` is, and every path also answers with a trailing
//! slash (ZeroTier's documentation uses both). Creation and update answer 200 with the
//! stored object, as ZeroTier does. Body fields skylan ignored (unknown or unsupported)
//! are listed in the `Skylan-Ignored-Fields` response header.
//!
//! Each handler reads the clock (`now`, Unix time) and runs the controller operation on
//! the blocking pool (the store fsyncs). The actor recorded in the audit log is
//! `api <client ip:port>`.
//!
//! [`open`] opens the controller database in `<home>/controller.d/` (making it only
//! when there is none, and refusing a damaged one); the node driver subscribes to its
//! changes to push fresh configs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path as UrlPath, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, JsonObject, TextBody, with_ignored};
use crate::controller::declare::Desired;
use crate::controller::{Controller, ControllerError, Deliberate, Member, RedbStore, Store};
use crate::io::home;
use crate::io::postgres::PgStore;
use crate::types::{NetworkId, NodeAddress, UnixTime};

/// The API version `GET /controller` reports (ZeroTier's current one).
pub const API_VERSION: u32 = 4;
/// Directory of the controller database inside the home directory.
pub const CONTROLLER_DIR: &str = "controller.d";

/// Reads the current wall-clock time for the controller.
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The system clock as Unix time (the one place the wall clock is read).
pub fn wall_clock() -> UnixTime {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UnixTime::from_micros(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
}

/// Where the controller keeps its networks and members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ControllerDb {
    /// The embedded database in `<home>/controller.d/` (the default).
    #[default]
    Embedded,
    /// A PostgreSQL database (`--controller-db postgres://...`), which several
    /// controller processes with the same identity can share: one serves, the others
    /// stand by (see [`crate::io::postgres`]).
    Postgres(String),
}

/// Opens the controller of node `address` with its database in
/// `home/controller.d/controller.redb`, seeding its network-number RNG from the OS.
///
/// - No database file yet: a new, empty one is made with mode 0600 (initialized under
///   a temporary name and renamed into place, so a crash never leaves a half-made one).
/// - An empty (0-byte), foreign, damaged or unreadable file: refused with
///   [`ControllerError::DamagedDatabase`], which names the file and what to do. It is
///   left as it is and never replaced by an empty controller.
/// - A database file with a wider mode than 0600 is tightened with a warning
///   ([`home::protect_secret`]).
///
/// With `database` = [`ControllerDb::Postgres`] the store is PostgreSQL instead
/// ([`PgStore::open`]): this blocks until this process holds the controller's lock
/// there, so call it on a blocking thread.
pub fn open(
    home: &Path,
    address: NodeAddress,
    database: &ControllerDb,
) -> Result<Controller, ControllerError> {
    use rand_core::{OsRng, RngCore};
    let store: Box<dyn Store> = match database {
        ControllerDb::Embedded => {
            let dir = home.join(CONTROLLER_DIR);
            create_private_dir(&dir).map_err(|e| {
                ControllerError::storage(
                    "creating the controller directory",
                    format!("{}: {e}", dir.display()),
                )
            })?;
            Box::new(open_store(&dir.join(RedbStore::FILE_NAME))?)
        }
        ControllerDb::Postgres(url) => Box::new(PgStore::open(url, address)?),
    };
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let controller = Controller::new(store, address, seed);
    controller.set_rules_compiler(Arc::new(crate::controller::rules::RulesLanguage));
    Ok(controller)
}

/// What a reader of the database file could learn (for [`home::protect_secret`]).
const DATABASE_EXPOSED: &str = "it holds every network and member of this controller (member identities, addresses, rules), but no keys";

/// Opens the database at `path`, or makes a new one when there is no file at all; see
/// [`open`].
fn open_store(path: &Path) -> Result<RedbStore, ControllerError> {
    let damaged = |problem: String| ControllerError::DamagedDatabase {
        path: path.display().to_string(),
        problem,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create_store(path),
        Err(e) => return Err(damaged(format!("cannot be examined ({e})"))),
        Ok(m) if !m.is_file() => return Err(damaged("is not a regular file".into())),
        Ok(m) if m.len() == 0 => {
            return Err(damaged(
                "is empty (0 bytes): it was truncated or overwritten".into(),
            ));
        }
        Ok(_) => {}
    }
    home::protect_secret(path, DATABASE_EXPOSED)
        .map_err(|e| ControllerError::storage("opening the controller database", e))?;
    RedbStore::open(path)
}

/// Makes a new, empty database at `path` (mode 0600): initialized as `<path>.new`, then
/// renamed into place and the directory synced.
fn create_store(path: &Path) -> Result<RedbStore, ControllerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let ctx = "creating the controller database";
    let io = |what: &Path, e: std::io::Error| {
        ControllerError::storage(ctx, format!("{}: {e}", what.display()))
    };
    let tmp = path.with_extension("redb.new");
    // A leftover of a creation that crashed holds no data: begin it again.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp, e)),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    drop(RedbStore::create(&tmp)?);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    tracing::info!(file = %path.display(), "created a new, empty controller database");
    RedbStore::open(path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[derive(Clone)]
struct Ctx {
    controller: Arc<Controller>,
    clock: Clock,
}

/// The controller endpoints (to be merged under [`super::router`], which adds the
/// token check). `clock` gives `now` (use [`wall_clock`] outside tests).
pub fn routes(controller: Arc<Controller>, clock: Clock) -> Router {
    let ctx = Ctx { controller, clock };
    let mut r = Router::new();
    let endpoints: [(&str, MethodRouter<Ctx>); 10] = [
        ("/controller", get(status)),
        (
            "/controller/network",
            get(list_networks).post(create_network).put(create_network),
        ),
        (
            "/controller/network/{nwid}",
            get(get_network)
                .post(post_network)
                .put(post_network)
                .delete(delete_network),
        ),
        ("/controller/network/{nwid}/member", get(list_members)),
        (
            "/controller/network/{nwid}/member/{address}",
            get(get_member)
                .post(post_member)
                .put(post_member)
                .delete(delete_member),
        ),
        ("/controller/audit", get(audit)),
        ("/controller/apply", post(apply)),
        ("/controller/rules/compile", post(compile_rules)),
        ("/unstable/controller/network", get(unstable_networks)),
        (
            "/unstable/controller/network/{nwid}/member",
            get(unstable_members),
        ),
    ];
    for (path, handler) in endpoints {
        r = r
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    r.with_state(ctx)
}

/// What a node without a controller answers on every controller path: 404 saying so
/// and how to start one, instead of the generic "no endpoint" (merged in place of
/// [`routes`]; the token check still comes first).
pub fn absent() -> Router {
    let answer = any(|| async {
        ApiError::NotFound(
            "this node runs no network controller; start it with `skylan node --controller`".into(),
        )
    });
    [
        "/controller",
        "/controller/{*rest}",
        "/unstable/controller/{*rest}",
    ]
    .into_iter()
    .fold(Router::new(), |r, path| r.route(path, answer.clone()))
}

/// Who made a request, for the audit log.
struct Actor(String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Actor(
            match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(peer)) => format!("api {peer}"),
                None => "api".to_string(),
            },
        ))
    }
}

/// Runs a blocking controller operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControllerError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::Internal(format!("controller task failed: {e}"))),
    }
}

/// The confirmations in a request's query: `allowDefaultRoute` and `allowOutsidePools`,
/// each `true`/`1` or `false`/`0` (a bare name means true). Other parameters are
/// ignored; a flag with another value is a 400.
fn deliberate(query: Option<&str>) -> Result<Deliberate, ApiError> {
    let mut out = Deliberate::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, "true"));
        let flag = match name {
            "allowDefaultRoute" => &mut out.default_route,
            "allowOutsidePools" => &mut out.outside_pools,
            _ => continue,
        };
        *flag = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "query flag {name}={other:?}: expected true or false"
                )));
            }
        };
    }
    Ok(out)
}

fn parse_nwid(s: &str) -> Result<NetworkId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::BadRequest(format!("bad network ID in path: {e}")))
}

fn parse_address(s: &str) -> Result<NodeAddress, ApiError> {
    s.parse()
        .map_err(|e| ApiError::BadRequest(format!("bad member address in path: {e}")))
}

fn json_response(v: Value) -> Response {
    axum::Json(v).into_response()
}

async fn status(State(ctx): State<Ctx>) -> Response {
    let clock = (ctx.clock)().as_micros() / 1000;
    json_response(json!({
        "controller": true,
        "apiVersion": API_VERSION,
        "clock": clock,
        "databaseReady": true,
    }))
}

async fn list_networks(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    let c = ctx.controller.clone();
    let ids = blocking(move || c.networks()).await?;
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Ok(json_response(json!(ids)))
}

async fn create_network(
    State(ctx): State<Ctx>,
    actor: Actor,
    RawQuery(query): RawQuery,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let deliberate = deliberate(query.as_deref())?;
    let now = (ctx.clock)();
    let c = ctx.controller.clone();
    let saved = blocking(move || c.create_network_with(&body, deliberate, &actor.0, now)).await?;
    Ok(with_ignored(
        json_response(saved.record.to_api_json()),
        &saved.ignored,
    ))
}

async fn get_network(
    State(ctx): State<Ctx>,
    UrlPath(nwid): UrlPath<String>,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let c = ctx.controller.clone();
    let net = blocking(move || c.network(nwid)).await?;
    Ok(json_response(net.to_api_json()))
}

async fn post_network(
    State(ctx): State<Ctx>,
    actor: Actor,
    UrlPath(nwid): UrlPath<String>,
    RawQuery(query): RawQuery,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let deliberate = deliberate(query.as_deref())?;
    let now = (ctx.clock)();
    let c = ctx.controller.clone();
    // `<controller address>______`: create with a random unused number.
    if let Some(prefix) = nwid.strip_suffix("______")
        && prefix.len() == 10
    {
        let address = parse_address(prefix)?;
        if address != c.address() {
            return Err(ApiError::BadRequest(format!(
                "{address} is not this controller's address; use {}______",
                c.address()
            )));
        }
        let saved =
            blocking(move || c.create_network_with(&body, deliberate, &actor.0, now)).await?;
        return Ok(with_ignored(
            json_response(saved.record.to_api_json()),
            &saved.ignored,
        ));
    }
    let nwid = parse_nwid(&nwid)?;
    let saved =
        blocking(move || c.post_network_with(nwid, &body, deliberate, &actor.0, now)).await?;
    Ok(with_ignored(
        json_response(saved.record.to_api_json()),
        &saved.ignored,
    ))
}

async fn delete_network(
    State(ctx): State<Ctx>,
    actor: Actor,
    UrlPath(nwid): UrlPath<String>,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let now = (ctx.clock)();
    let c = ctx.controller.clone();
    let net = blocking(move || c.delete_network(nwid, &actor.0, now)).await?;
    Ok(json_response(net.to_api_json()))
}

#[derive(Deserialize)]
struct MembersQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// Most members one page of `GET .../member?limit=` lists.
const MAX_MEMBER_PAGE: usize = 10_000;

/// ZeroTier's `{address: revision}` map of a network's members. With `?limit=N` (and
/// `&after=ADDRESS` for the next page) it lists one page, by address, and names the
/// last address in `X-Next-After` when more follow.
async fn list_members(
    State(ctx): State<Ctx>,
    UrlPath(nwid): UrlPath<String>,
    Query(q): Query<MembersQuery>,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let after = q.after.as_deref().map(parse_address).transpose()?;
    let c = ctx.controller.clone();
    let Some(limit) = q.limit else {
        let members = blocking(move || c.members_after(nwid, after, usize::MAX)).await?;
        return Ok(json_response(member_map(&members)));
    };
    let limit = limit.clamp(1, MAX_MEMBER_PAGE);
    // One more than asked tells whether another page follows.
    let mut members = blocking(move || c.members_after(nwid, after, limit + 1)).await?;
    let more = members.len() > limit;
    members.truncate(limit);
    let mut resp = json_response(member_map(&members));
    if let Some(last) = members.last().filter(|_| more)
        && let Ok(v) = last.address.to_string().parse()
    {
        resp.headers_mut().insert("x-next-after", v);
    }
    Ok(resp)
}

fn member_map(members: &[Member]) -> Value {
    let map: BTreeMap<String, u64> = members
        .iter()
        .map(|m| (m.address.to_string(), m.revision))
        .collect();
    json!(map)
}

async fn get_member(
    State(ctx): State<Ctx>,
    UrlPath((nwid, address)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let address = parse_address(&address)?;
    let c = ctx.controller.clone();
    let m = blocking(move || c.member(nwid, address)).await?;
    Ok(json_response(m.to_api_json()))
}

async fn post_member(
    State(ctx): State<Ctx>,
    actor: Actor,
    UrlPath((nwid, address)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let address = parse_address(&address)?;
    let deliberate = deliberate(query.as_deref())?;
    let now = (ctx.clock)();
    let c = ctx.controller.clone();
    let saved =
        blocking(move || c.post_member_with(nwid, address, &body, deliberate, &actor.0, now))
            .await?;
    Ok(with_ignored(
        json_response(saved.record.to_api_json()),
        &saved.ignored,
    ))
}

async fn delete_member(
    State(ctx): State<Ctx>,
    actor: Actor,
    UrlPath((nwid, address)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let address = parse_address(&address)?;
    let now = (ctx.clock)();
    let c = ctx.controller.clone();
    let m = blocking(move || c.delete_member(nwid, address, &actor.0, now)).await?;
    Ok(json_response(m.to_api_json()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Applies a desired state (`Controller::apply`); the audit log's actor is
/// `apply <source> (api <client>)`.
async fn apply(
    State(ctx): State<Ctx>,
    actor: Actor,
    Query(q): Query<ApplyQuery>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let desired: Desired = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::BadRequest(format!("not a desired state: {e}")))?;
    let actor = match desired.source.as_str() {
        "" => format!("apply ({})", actor.0),
        source => format!("apply {source} ({})", actor.0),
    };
    let now = (ctx.clock)();
    let c = ctx.controller.clone();
    let plan = blocking(move || c.apply(&desired, q.dry_run, &actor, now)).await?;
    Ok(json_response(json!(plan)))
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
    network: Option<String>,
}

/// Most audit entries returned by one request.
const MAX_AUDIT_PAGE: usize = 1000;

async fn audit(State(ctx): State<Ctx>, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
    let network = q.network.as_deref().map(parse_nwid).transpose()?;
    let mut after = q.after.unwrap_or(0);
    let c = ctx.controller.clone();
    let entries = blocking(move || {
        let mut out = Vec::new();
        loop {
            let page = c.audit(after, MAX_AUDIT_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            out.extend(
                page.into_iter()
                    .filter(|e| network.is_none_or(|n| e.nwid == n)),
            );
            if out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    })
    .await?;
    Ok(json_response(json!(entries)))
}

/// Compiles rules source without saving ([`crate::controller::rules::preview`]); the
/// same text POSTed as a network's `rulesSource` fails at the same line and column.
async fn compile_rules(TextBody(source): TextBody) -> Result<Response, ApiError> {
    let compiled = tokio::task::spawn_blocking(move || crate::controller::rules::preview(&source))
        .await
        .map_err(|e| ApiError::Internal(format!("rules compiler task failed: {e}")))?;
    match compiled {
        Ok(v) => Ok(json_response(v)),
        Err(e) => Err(ApiError::Rules {
            line: e.line,
            column: e.column,
            message: e.message,
        }),
    }
}

async fn unstable_networks(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    let c = ctx.controller.clone();
    let data = blocking(move || {
        let mut data = Vec::new();
        for nwid in c.networks()? {
            let net = c.network(nwid)?;
            let members = c.members(nwid)?;
            let authorized = members.iter().filter(|m| m.authorized).count();
            let mut v = net.to_api_json();
            v["meta"] = json!({
                "totalMemberCount": members.len(),
                "authorizedMemberCount": authorized,
            });
            data.push(v);
        }
        Ok(data)
    })
    .await?;
    let count = data.len();
    Ok(json_response(
        json!({"data": data, "meta": {"networkCount": count}}),
    ))
}

async fn unstable_members(
    State(ctx): State<Ctx>,
    UrlPath(nwid): UrlPath<String>,
) -> Result<Response, ApiError> {
    let nwid = parse_nwid(&nwid)?;
    let c = ctx.controller.clone();
    let members = blocking(move || c.members(nwid)).await?;
    let authorized = members.iter().filter(|m| m.authorized).count();
    let data: Vec<Value> = members.iter().map(|m| m.to_api_json()).collect();
    Ok(json_response(json!({
        "data": data,
        "meta": {"totalCount": members.len(), "authorizedCount": authorized},
    })))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::Map;

    use super::*;

    fn ctrl() -> NodeAddress {
        "89e92ceee5".parse().unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn confirmations_are_read_from_the_query() {
        assert_eq!(deliberate(None).unwrap(), Deliberate::default());
        let d = deliberate(Some("allowDefaultRoute=true&x=y")).unwrap();
        assert!(d.default_route && !d.outside_pools);
        let d = deliberate(Some("allowOutsidePools&allowDefaultRoute=0")).unwrap();
        assert!(!d.default_route && d.outside_pools);
        let err = deliberate(Some("allowOutsidePools=yes")).unwrap_err();
        assert!(err.to_string().contains("allowOutsidePools"), "{err}");
    }

    #[test]
    fn a_new_database_is_private_and_a_damaged_one_is_refused_and_kept() {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join(CONTROLLER_DIR).join(RedbStore::FILE_NAME);
        {
            let c = open(home.path(), ctrl(), &ControllerDb::Embedded).unwrap();
            c.create_network(&Map::new(), "test", UnixTime::EPOCH)
                .unwrap();
        }
        assert_eq!(mode(&db), 0o600);
        assert!(!db.with_extension("redb.new").exists());

        // A database others can read is made private again, and still opens.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            open(home.path(), ctrl(), &ControllerDb::Embedded)
                .unwrap()
                .networks()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(mode(&db), 0o600);

        for (what, bytes) in [("empty", &b""[..]), ("foreign", &b"not a database"[..])] {
            std::fs::write(&db, bytes).unwrap();
            let err = open(home.path(), ctrl(), &ControllerDb::Embedded)
                .err()
                .expect(what);
            assert!(
                matches!(err, ControllerError::DamagedDatabase { .. }),
                "{what}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(&db.display().to_string()), "{text}");
            assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}: left as it was");
            if bytes.is_empty() {
                assert!(text.contains("is empty (0 bytes)"), "{text}");
            }
        }
    }

    #[tokio::test]
    async fn a_node_without_a_controller_says_so_on_every_controller_path() {
        let mut router = absent();
        for path in [
            "/controller",
            "/controller/network/8056c2e21c000001/member",
            "/unstable/controller/network",
        ] {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = tower_service::Service::call(&mut router, request)
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            assert!(
                String::from_utf8_lossy(&body).contains(
                    "this node runs no network controller; start it with `skylan node --controller`"
                ),
                "{path}: {body:?}"
            );
        }
    }
}
