//! Partial updates of [`Network`] and [`Member`] from a JSON object, and validation.
//!
//! Semantics (ZeroTier's, made strict):
//! - A POST body is a JSON object. Only the fields it names change; every other field
//!   keeps its value.
//! - A named field with the wrong JSON type or an invalid value is an error naming the
//!   field (`ipAssignmentPools[1].ipRangeStart`), never a silent default. The caller
//!   applies the patch to a copy and stores nothing when any field fails, so a bad
//!   request changes nothing. Names, for instance, may not contain control characters.
//! - Read-only fields (`id`, `nwid`, `revision`, `creationTime`, ...) are ignored, so a
//!   UI can post back the object it read. Fields ZeroTier has but skylan does not
//!   implement (`authTokens`, `remoteTraceTarget`, SSO fields, ...) and unknown fields
//!   are ignored too, and reported back to the caller (the HTTP layer lists them in a
//!   response header) so a typo does not pass unnoticed.
//! - For compatibility, `v4AssignMode` also accepts the string `"zt"`, `v6AssignMode`
//!   a comma-separated string (`"rfc4193,6plane"`), `dns` an empty array or null
//!   (= no DNS), a route's `via` an empty string (= null), and a member's
//!   `ipAssignments` entries an `ip/bits` form whose prefix is dropped (routes supply
//!   prefix lengths), all as ZeroTier does.
//!
//! [`validate_network`] checks a whole record (pools ordered and not overlapping, routes
//! without host bits and with a gateway of the same family, MTU and multicast limits,
//! DNS, rule and definition counts, and the rule tables read as members will read them:
//! raw `rules` are held to the same standard as compiled `rulesSource`); the controller
//! calls it after every patch.
//!
//! [`check_default_routes`] and [`check_outside_pools`] refuse, unless the caller
//! confirmed them ([`Deliberate`](super::Deliberate)), a change that one careless call
//! could use to cut members off: a new route that replaces the members' default route,
//! and a new member address outside every pool.
//!
//! Called by the controller service (`controller::Controller`) only.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::error::ControllerError;
use super::model::*;
use crate::types::UnixTime;

/// Compiles `rulesSource` text into ZeroTier-shaped rule objects. The rules module
/// provides the implementation; the controller only stores what it returns.
pub trait RulesCompiler: Send + Sync {
    /// Compiles `source`, or reports the first error with its position.
    fn compile(&self, source: &str) -> Result<CompiledRules, RulesCompileError>;
}

/// What a rules compiler produces from a `rulesSource`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompiledRules {
    /// The base rule table.
    pub rules: Vec<Value>,
    /// Capabilities defined by `cap` blocks.
    pub capabilities: Vec<CapabilityDef>,
    /// Tags defined by `tag` blocks.
    pub tags: Vec<TagDef>,
}

/// A compile error in a `rulesSource`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesCompileError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

/// Network fields a patch sets (what `skylan controller network set` accepts).
pub const NETWORK_FIELDS: &[&str] = &[
    "name",
    "private",
    "enableBroadcast",
    "multicastLimit",
    "mtu",
    "v4AssignMode",
    "v6AssignMode",
    "ipAssignmentPools",
    "routes",
    "rules",
    "rulesSource",
    "tags",
    "capabilities",
    "dns",
];

/// Member fields a patch sets (what `skylan controller member set` accepts).
pub const MEMBER_FIELDS: &[&str] = &[
    "authorized",
    "activeBridge",
    "noAutoAssignIps",
    "name",
    "ipAssignments",
    "tags",
    "capabilities",
];

/// Network fields that cannot be set through the API (silently ignored).
const NETWORK_READ_ONLY: &[&str] = &[
    "id",
    "nwid",
    "objtype",
    "creationTime",
    "revision",
    "membershipRevision",
    "revocations",
];

/// Member fields that cannot be set through the API (silently ignored).
const MEMBER_READ_ONLY: &[&str] = &[
    "id",
    "address",
    "nwid",
    "objtype",
    "identity",
    "creationTime",
    "revision",
    "lastAuthorizedTime",
    "lastDeauthorizedTime",
    "lastAuthorizedCredentialType",
    "lastAuthorizedCredential",
    "vMajor",
    "vMinor",
    "vRev",
    "vProto",
];

/// Applies the fields named in `body` to `net` and validates the result. Returns the
/// names of fields that were ignored because skylan does not know or support them.
/// On error `net` may be half-updated: apply to a copy.
pub fn patch_network(
    net: &mut Network,
    body: &Map<String, Value>,
    compiler: Option<&dyn RulesCompiler>,
) -> Result<Vec<String>, ControllerError> {
    let mut ignored = Vec::new();
    for (key, value) in body {
        match key.as_str() {
            "name" => net.name = name(key, value)?,
            "private" => net.private = boolean(key, value)?,
            "enableBroadcast" => net.enable_broadcast = boolean(key, value)?,
            "multicastLimit" => {
                net.multicast_limit = integer(key, value, 0, u64::from(MAX_MULTICAST_LIMIT))? as u32
            }
            "mtu" => {
                net.mtu = integer(key, value, u64::from(MIN_MTU), u64::from(MAX_MTU))? as u32;
            }
            "v4AssignMode" => net.v4_assign_mode = v4_mode(key, value, net.v4_assign_mode)?,
            "v6AssignMode" => net.v6_assign_mode = v6_mode(key, value, net.v6_assign_mode)?,
            "ipAssignmentPools" => net.ip_assignment_pools = pools(key, value)?,
            "routes" => net.routes = routes(key, value)?,
            "rules" => net.rules = rule_list(key, value)?,
            "rulesSource" => net.rules_source = string(key, value)?,
            "tags" => net.tags = tag_defs(key, value)?,
            "capabilities" => net.capabilities = capability_defs(key, value)?,
            "dns" => net.dns = dns(key, value)?,
            k if NETWORK_READ_ONLY.contains(&k) => {}
            _ => ignored.push(key.clone()),
        }
    }
    if let (Some(Value::String(source)), Some(compiler)) = (body.get("rulesSource"), compiler) {
        let compiled = compiler
            .compile(source)
            .map_err(|e| ControllerError::Rules {
                line: e.line,
                column: e.column,
                message: e.message,
            })?;
        net.rules = compiled.rules;
        net.capabilities = compiled.capabilities;
        net.tags = compiled.tags;
    }
    validate_network(net)?;
    Ok(ignored)
}

/// What a member patch did besides changing fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberPatch {
    /// Fields ignored because skylan does not know or support them.
    pub ignored: Vec<String>,
    /// The patch turned `authorized` from true to false.
    pub deauthorized: bool,
}

/// Applies the fields named in `body` to `member`. `now` stamps authorization changes.
/// On error `member` may be half-updated: apply to a copy.
pub fn patch_member(
    member: &mut Member,
    body: &Map<String, Value>,
    now: UnixTime,
) -> Result<MemberPatch, ControllerError> {
    let mut out = MemberPatch::default();
    for (key, value) in body {
        match key.as_str() {
            "authorized" => {
                let authorized = boolean(key, value)?;
                let was = member.authorized;
                member.set_authorized(authorized, "api", now);
                out.deauthorized = was && !authorized;
            }
            "activeBridge" => member.active_bridge = boolean(key, value)?,
            "noAutoAssignIps" => member.no_auto_assign_ips = boolean(key, value)?,
            "name" => member.name = name(key, value)?,
            "ipAssignments" => member.ip_assignments = member_ips(key, value)?,
            "tags" => member.tags = member_tags(key, value)?,
            "capabilities" => member.capabilities = member_capabilities(key, value)?,
            k if MEMBER_READ_ONLY.contains(&k) => {}
            _ => out.ignored.push(key.clone()),
        }
    }
    Ok(out)
}

/// Checks a whole network record; the error names the first offending field.
pub fn validate_network(net: &Network) -> Result<(), ControllerError> {
    check_name("name", &net.name)?;
    if !(MIN_MTU..=MAX_MTU).contains(&net.mtu) {
        return Err(ControllerError::field(
            "mtu",
            format!("must be {MIN_MTU} to {MAX_MTU}, got {}", net.mtu),
        ));
    }
    if net.multicast_limit > MAX_MULTICAST_LIMIT {
        return Err(ControllerError::field(
            "multicastLimit",
            format!("must be 0 to {MAX_MULTICAST_LIMIT}"),
        ));
    }
    validate_pools(&net.ip_assignment_pools)?;
    validate_routes(&net.routes)?;
    validate_dns(&net.dns)?;
    if net.rules.len() > MAX_RULES {
        return Err(ControllerError::field(
            "rules",
            format!("at most {MAX_RULES} entries"),
        ));
    }
    super::rules::check_tables(net)?;
    unique_ids("tags", net.tags.iter().map(|t| t.id))?;
    unique_ids("capabilities", net.capabilities.iter().map(|c| c.id))?;
    for (i, cap) in net.capabilities.iter().enumerate() {
        if cap.rules.len() > MAX_RULES {
            return Err(ControllerError::field(
                format!("capabilities[{i}].rules"),
                format!("at most {MAX_RULES} entries"),
            ));
        }
    }
    Ok(())
}

/// Whether a route takes over members' default route: `0.0.0.0/0` and `::/0`, and the
/// halves (`0.0.0.0/1` + `128.0.0.0/1`, `::/1` + `8000::/1`) that VPNs push instead.
pub fn is_default_route(route: &Route) -> bool {
    route.target.prefix_len() <= 1
}

/// Refuses default routes ([`is_default_route`]) that `after` adds to `before` (a new
/// network adds all of its routes) unless the caller `confirmed` them: one such route
/// carries every member's traffic into the network. Routes the network already had pass,
/// so a client can post back the object it read.
pub fn check_default_routes(
    before: Option<&Network>,
    after: &Network,
    confirmed: bool,
) -> Result<(), ControllerError> {
    if confirmed {
        return Ok(());
    }
    let had = |r: &Route| before.is_some_and(|b| b.routes.iter().any(|o| o.target == r.target));
    match after
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| is_default_route(r) && !had(r))
    {
        None => Ok(()),
        Some((i, r)) => Err(ControllerError::field(
            format!("routes[{i}].target"),
            format!(
                "{} would replace the members' default route and carry all their traffic into this network; to push it on purpose, send the request again with ?allowDefaultRoute=true",
                r.target
            ),
        )),
    }
}

/// Refuses addresses that `member` gains over `before` and that lie outside every
/// `ipAssignmentPools` range of `network`, unless the caller `confirmed` them. Pools
/// are the ranges the operator gave the network; an address outside them (a typo, an
/// address of the physical network or of a root) can cut the member, or others, off.
/// Addresses the member already had pass.
pub fn check_outside_pools(
    network: &Network,
    before: Option<&Member>,
    member: &Member,
    confirmed: bool,
) -> Result<(), ControllerError> {
    if confirmed {
        return Ok(());
    }
    let had = |ip: &IpAddr| before.is_some_and(|b| b.ip_assignments.contains(ip));
    let in_pool = |ip: &IpAddr| {
        network.ip_assignment_pools.iter().any(|p| {
            p.ip_range_start.is_ipv4() == ip.is_ipv4()
                && (ip_value(p.ip_range_start)..=ip_value(p.ip_range_end)).contains(&ip_value(*ip))
        })
    };
    match member
        .ip_assignments
        .iter()
        .enumerate()
        .find(|(_, ip)| !had(ip) && !in_pool(ip))
    {
        None => Ok(()),
        Some((i, ip)) => {
            let pools = if network.ip_assignment_pools.is_empty() {
                "the network has no ipAssignmentPools".to_string()
            } else {
                let ranges: Vec<String> = network
                    .ip_assignment_pools
                    .iter()
                    .map(|p| format!("{}-{}", p.ip_range_start, p.ip_range_end))
                    .collect();
                format!("the network's pools are {}", ranges.join(", "))
            };
            Err(ControllerError::field(
                format!("ipAssignments[{i}]"),
                format!(
                    "{ip} is outside every address pool ({pools}); an address outside them may belong to another machine or to the physical network. Add a pool that covers it, or, to assign it on purpose, send the request again with ?allowOutsidePools=true"
                ),
            ))
        }
    }
}

fn validate_pools(pools: &[IpPool]) -> Result<(), ControllerError> {
    if pools.len() > MAX_POOLS {
        return Err(ControllerError::field(
            "ipAssignmentPools",
            format!("at most {MAX_POOLS} pools"),
        ));
    }
    for (i, p) in pools.iter().enumerate() {
        let field = format!("ipAssignmentPools[{i}]");
        if p.ip_range_start.is_ipv4() != p.ip_range_end.is_ipv4() {
            return Err(ControllerError::field(
                field,
                format!(
                    "ipRangeStart {} and ipRangeEnd {} are of different address families",
                    p.ip_range_start, p.ip_range_end
                ),
            ));
        }
        if ip_value(p.ip_range_start) > ip_value(p.ip_range_end) {
            return Err(ControllerError::field(
                field,
                format!(
                    "ipRangeStart {} is after ipRangeEnd {}; swap them",
                    p.ip_range_start, p.ip_range_end
                ),
            ));
        }
        for (j, q) in pools.iter().enumerate().take(i) {
            if p.ip_range_start.is_ipv4() == q.ip_range_start.is_ipv4()
                && ip_value(p.ip_range_start) <= ip_value(q.ip_range_end)
                && ip_value(q.ip_range_start) <= ip_value(p.ip_range_end)
            {
                return Err(ControllerError::field(
                    field,
                    format!(
                        "{}-{} overlaps ipAssignmentPools[{j}] {}-{}; pools must not overlap",
                        p.ip_range_start, p.ip_range_end, q.ip_range_start, q.ip_range_end
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_routes(routes: &[Route]) -> Result<(), ControllerError> {
    if routes.len() > MAX_ROUTES {
        return Err(ControllerError::field(
            "routes",
            format!("at most {MAX_ROUTES} routes"),
        ));
    }
    for (i, r) in routes.iter().enumerate() {
        if r.target.trunc() != r.target {
            return Err(ControllerError::field(
                format!("routes[{i}].target"),
                format!(
                    "{} has host bits set; did you mean {}?",
                    r.target,
                    r.target.trunc()
                ),
            ));
        }
        if let Some(via) = r.via
            && via.is_ipv4() != r.target.addr().is_ipv4()
        {
            return Err(ControllerError::field(
                format!("routes[{i}].via"),
                format!(
                    "gateway {via} is not of the same address family as target {}",
                    r.target
                ),
            ));
        }
        if routes[..i].iter().any(|q| q.target == r.target) {
            return Err(ControllerError::field(
                format!("routes[{i}].target"),
                format!("{} is listed twice", r.target),
            ));
        }
    }
    Ok(())
}

fn validate_dns(dns: &Dns) -> Result<(), ControllerError> {
    if dns.servers.len() > MAX_DNS_SERVERS {
        return Err(ControllerError::field(
            "dns.servers",
            format!("at most {MAX_DNS_SERVERS} servers"),
        ));
    }
    if !dns.domain.is_empty() && !is_domain_name(&dns.domain) {
        return Err(ControllerError::field(
            "dns.domain",
            format!(
                "{:?} is not a domain name (labels of letters, digits and '-', at most 63 characters each, 253 in all)",
                dns.domain
            ),
        ));
    }
    Ok(())
}

fn unique_ids(field: &str, ids: impl Iterator<Item = u32>) -> Result<(), ControllerError> {
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for id in ids {
        count += 1;
        if !seen.insert(id) {
            return Err(ControllerError::field(
                field,
                format!("id {id} is defined twice"),
            ));
        }
    }
    if count > MAX_TAGS_OR_CAPABILITIES {
        return Err(ControllerError::field(
            field,
            format!("at most {MAX_TAGS_OR_CAPABILITIES} entries"),
        ));
    }
    Ok(())
}

fn is_domain_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An address as a number, for ordering within one family.
pub(crate) fn ip_value(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

// ---- typed field readers: each error names the field and shows what was sent ----

/// How a JSON value looks, for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}...", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn expected(field: &str, what: &str, got: &Value) -> ControllerError {
    ControllerError::field(field, format!("expected {what}, got {}", describe(got)))
}

fn boolean(field: &str, v: &Value) -> Result<bool, ControllerError> {
    v.as_bool()
        .ok_or_else(|| expected(field, "true or false", v))
}

fn string(field: &str, v: &Value) -> Result<String, ControllerError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| expected(field, "a string", v))
}

fn name(field: &str, v: &Value) -> Result<String, ControllerError> {
    let s = string(field, v)?;
    check_name(field, &s)?;
    Ok(s)
}

/// A network or member name: at most [`MAX_NAME_CHARS`] characters, none of them a
/// control character (C0, DEL, C1: line breaks, terminal escapes) or a Unicode
/// bidirectional override or isolate (which make a name display as another). Names are
/// printed by the CLI, shown in UIs and written to logs.
fn check_name(field: &str, s: &str) -> Result<(), ControllerError> {
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(ControllerError::field(
            field,
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if let Some((i, c)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || bidi(*c))
    {
        return Err(ControllerError::field(
            field,
            format!(
                "character {} is U+{:04X}, a control character; names are shown in terminals, UIs and logs, so they may not contain control characters",
                i + 1,
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

fn integer(field: &str, v: &Value, min: u64, max: u64) -> Result<u64, ControllerError> {
    let what = format!("an integer from {min} to {max}");
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected(field, &what, v)),
    }
}

fn u32_value(field: &str, v: &Value) -> Result<u32, ControllerError> {
    Ok(integer(field, v, 0, u64::from(u32::MAX))? as u32)
}

fn array<'a>(field: &str, v: &'a Value) -> Result<&'a Vec<Value>, ControllerError> {
    v.as_array().ok_or_else(|| expected(field, "an array", v))
}

fn object<'a>(field: &str, v: &'a Value) -> Result<&'a Map<String, Value>, ControllerError> {
    v.as_object().ok_or_else(|| expected(field, "an object", v))
}

fn ip(field: &str, v: &Value) -> Result<IpAddr, ControllerError> {
    let s = v
        .as_str()
        .ok_or_else(|| expected(field, "an IP address string", v))?;
    s.trim()
        .parse()
        .map_err(|_| ControllerError::field(field, format!("{s:?} is not an IP address")))
}

fn v4_mode(field: &str, v: &Value, current: V4AssignMode) -> Result<V4AssignMode, ControllerError> {
    match v {
        Value::String(s) if s == "zt" => Ok(V4AssignMode { zt: true }),
        Value::String(s) if s.is_empty() || s == "none" => Ok(V4AssignMode { zt: false }),
        Value::Object(map) => {
            let mut mode = current;
            if let Some(zt) = map.get("zt") {
                mode.zt = boolean(&format!("{field}.zt"), zt)?;
            }
            Ok(mode)
        }
        _ => Err(expected(field, r#"an object like {"zt": true}"#, v)),
    }
}

fn v6_mode(field: &str, v: &Value, current: V6AssignMode) -> Result<V6AssignMode, ControllerError> {
    match v {
        Value::String(s) => {
            let mut mode = V6AssignMode::default();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part {
                    "zt" => mode.zt = true,
                    "rfc4193" => mode.rfc4193 = true,
                    "6plane" => mode.sixplane = true,
                    "none" => {}
                    other => {
                        return Err(ControllerError::field(
                            field,
                            format!("unknown mode {other:?}; modes are zt, rfc4193 and 6plane"),
                        ));
                    }
                }
            }
            Ok(mode)
        }
        Value::Object(map) => {
            let mut mode = current;
            if let Some(x) = map.get("zt") {
                mode.zt = boolean(&format!("{field}.zt"), x)?;
            }
            if let Some(x) = map.get("rfc4193") {
                mode.rfc4193 = boolean(&format!("{field}.rfc4193"), x)?;
            }
            if let Some(x) = map.get("6plane") {
                mode.sixplane = boolean(&format!("{field}.6plane"), x)?;
            }
            Ok(mode)
        }
        _ => Err(expected(
            field,
            r#"an object like {"zt": false, "rfc4193": true, "6plane": false}"#,
            v,
        )),
    }
}

fn pools(field: &str, v: &Value) -> Result<Vec<IpPool>, ControllerError> {
    let mut out = Vec::new();
    for (i, item) in array(field, v)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let obj = object(&f, item)?;
        let get = |k: &str| {
            obj.get(k)
                .ok_or_else(|| ControllerError::field(format!("{f}.{k}"), "missing"))
        };
        out.push(IpPool {
            ip_range_start: ip(&format!("{f}.ipRangeStart"), get("ipRangeStart")?)?,
            ip_range_end: ip(&format!("{f}.ipRangeEnd"), get("ipRangeEnd")?)?,
        });
    }
    Ok(out)
}

fn routes(field: &str, v: &Value) -> Result<Vec<Route>, ControllerError> {
    let mut out = Vec::new();
    for (i, item) in array(field, v)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let obj = object(&f, item)?;
        let tf = format!("{f}.target");
        let target = obj
            .get("target")
            .ok_or_else(|| ControllerError::field(&tf, "missing"))?;
        let ts = target
            .as_str()
            .ok_or_else(|| expected(&tf, "a CIDR string like \"198.18.0.0/15\"", target))?;
        let target: IpNet = ts.trim().parse().map_err(|_| {
            ControllerError::field(
                &tf,
                format!("{ts:?} is not a CIDR prefix like \"198.18.0.0/15\""),
            )
        })?;
        let via = match obj.get("via") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(x) => Some(ip(&format!("{f}.via"), x)?),
        };
        out.push(Route { target, via });
    }
    Ok(out)
}

fn rule_list(field: &str, v: &Value) -> Result<Vec<Value>, ControllerError> {
    let items = array(field, v)?;
    if items.len() > MAX_RULES {
        return Err(ControllerError::field(
            field,
            format!("at most {MAX_RULES} entries"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let obj = object(&f, item)?;
        match obj.get("type") {
            Some(Value::String(_)) => {}
            Some(t) => return Err(expected(&format!("{f}.type"), "a string", t)),
            None => return Err(ControllerError::field(format!("{f}.type"), "missing")),
        }
    }
    Ok(items.clone())
}

fn tag_defs(field: &str, v: &Value) -> Result<Vec<TagDef>, ControllerError> {
    let mut out = Vec::new();
    for (i, item) in array(field, v)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let obj = object(&f, item)?;
        let id = obj
            .get("id")
            .ok_or_else(|| ControllerError::field(format!("{f}.id"), "missing"))?;
        let default = match obj.get("default") {
            None | Some(Value::Null) => None,
            Some(d) => Some(u32_value(&format!("{f}.default"), d)?),
        };
        out.push(TagDef {
            id: u32_value(&format!("{f}.id"), id)?,
            default,
        });
    }
    Ok(out)
}

fn capability_defs(field: &str, v: &Value) -> Result<Vec<CapabilityDef>, ControllerError> {
    let mut out = Vec::new();
    for (i, item) in array(field, v)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let obj = object(&f, item)?;
        let id = obj
            .get("id")
            .ok_or_else(|| ControllerError::field(format!("{f}.id"), "missing"))?;
        let default = match obj.get("default") {
            None => false,
            Some(d) => boolean(&format!("{f}.default"), d)?,
        };
        let rules = match obj.get("rules") {
            None => Vec::new(),
            Some(r) => rule_list(&format!("{f}.rules"), r)?,
        };
        out.push(CapabilityDef {
            id: u32_value(&format!("{f}.id"), id)?,
            default,
            rules,
        });
    }
    Ok(out)
}

fn dns(field: &str, v: &Value) -> Result<Dns, ControllerError> {
    match v {
        Value::Null => Ok(Dns::default()),
        Value::Array(a) if a.is_empty() => Ok(Dns::default()),
        Value::Object(obj) => {
            let domain = match obj.get("domain") {
                None | Some(Value::Null) => String::new(),
                Some(d) => string(&format!("{field}.domain"), d)?,
            };
            let servers = match obj.get("servers") {
                None | Some(Value::Null) => Vec::new(),
                Some(s) => {
                    let sf = format!("{field}.servers");
                    array(&sf, s)?
                        .iter()
                        .enumerate()
                        .map(|(i, x)| ip(&format!("{sf}[{i}]"), x))
                        .collect::<Result<_, _>>()?
                }
            };
            Ok(Dns { domain, servers })
        }
        _ => Err(expected(
            field,
            r#"an object like {"domain": "corp.example", "servers": ["198.18.0.53"]}"#,
            v,
        )),
    }
}

fn member_ips(field: &str, v: &Value) -> Result<Vec<IpAddr>, ControllerError> {
    let items = array(field, v)?;
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let s = item
            .as_str()
            .ok_or_else(|| expected(&f, "an IP address string", item))?;
        // ZeroTier accepts "ip/bits" and keeps only the address; routes give the prefix.
        let bare = s.trim().split('/').next().unwrap_or_default();
        let addr: IpAddr = bare
            .parse()
            .map_err(|_| ControllerError::field(&f, format!("{s:?} is not an IP address")))?;
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(ControllerError::field(
                &f,
                format!("{addr} cannot be assigned to a member"),
            ));
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.len() > MAX_MEMBER_ADDRESSES {
        return Err(ControllerError::field(
            field,
            format!("at most {MAX_MEMBER_ADDRESSES} addresses per member"),
        ));
    }
    Ok(out)
}

fn member_tags(field: &str, v: &Value) -> Result<Vec<(u32, u32)>, ControllerError> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (i, item) in array(field, v)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let pair = match item.as_array() {
            Some(p) if p.len() == 2 => p,
            _ => return Err(expected(&f, "a [tagId, value] pair", item)),
        };
        let id = u32_value(&format!("{f}[0]"), &pair[0])?;
        let value = u32_value(&format!("{f}[1]"), &pair[1])?;
        if out.iter().any(|(t, _)| *t == id) {
            return Err(ControllerError::field(
                &f,
                format!("tag {id} is given twice"),
            ));
        }
        out.push((id, value));
    }
    if out.len() > MAX_TAGS_OR_CAPABILITIES {
        return Err(ControllerError::field(
            field,
            format!("at most {MAX_TAGS_OR_CAPABILITIES} tags"),
        ));
    }
    out.sort_unstable();
    Ok(out)
}

fn member_capabilities(field: &str, v: &Value) -> Result<Vec<u32>, ControllerError> {
    let mut out = array(field, v)?
        .iter()
        .enumerate()
        .map(|(i, x)| u32_value(&format!("{field}[{i}]"), x))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    if out.len() > MAX_TAGS_OR_CAPABILITIES {
        return Err(ControllerError::field(
            field,
            format!("at most {MAX_TAGS_OR_CAPABILITIES} capabilities"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net() -> Network {
        Network::new("89e92ceee5000001".parse().unwrap(), UnixTime::EPOCH)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn patch(n: &mut Network, v: Value) -> Result<Vec<String>, ControllerError> {
        patch_network(n, &body(v), None)
    }

    fn field_of(e: ControllerError) -> String {
        match e {
            ControllerError::BadField { field, .. } => field,
            other => panic!("expected BadField, got {other:?}"),
        }
    }

    #[test]
    fn partial_update_changes_only_named_fields() {
        let mut n = net();
        let before = n.clone();
        patch(&mut n, json!({"name": "lab", "mtu": 1400})).unwrap();
        assert_eq!(n.name, "lab");
        assert_eq!(n.mtu, 1400);
        let mut expect = before;
        expect.name = "lab".into();
        expect.mtu = 1400;
        assert_eq!(n, expect);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (json!({"private": "yes"}), "private"),
            (json!({"mtu": "1500"}), "mtu"),
            (json!({"mtu": 1500.5}), "mtu"),
            (json!({"mtu": 1279}), "mtu"),
            (json!({"mtu": 10001}), "mtu"),
            (json!({"multicastLimit": -1}), "multicastLimit"),
            (json!({"name": 5}), "name"),
            (json!({"routes": {}}), "routes"),
            (json!({"routes": [{"target": 5}]}), "routes[0].target"),
            (json!({"routes": [{"target": "nope"}]}), "routes[0].target"),
            (
                json!({"routes": [{"target": "198.18.0.0/24", "via": "x"}]}),
                "routes[0].via",
            ),
            (
                json!({"ipAssignmentPools": [{"ipRangeStart": "198.18.0.1"}]}),
                "ipAssignmentPools[0].ipRangeEnd",
            ),
            (json!({"v4AssignMode": 1}), "v4AssignMode"),
            (json!({"v4AssignMode": {"zt": "true"}}), "v4AssignMode.zt"),
            (json!({"v6AssignMode": "zt,bogus"}), "v6AssignMode"),
            (json!({"dns": {"servers": ["x"]}}), "dns.servers[0]"),
            (json!({"dns": "corp"}), "dns"),
            (json!({"rules": [{"not": true}]}), "rules[0].type"),
            (json!({"tags": [{"id": -3}]}), "tags[0].id"),
            (
                json!({"capabilities": [{"id": 1, "default": 1}]}),
                "capabilities[0].default",
            ),
        ];
        for (b, field) in cases {
            let mut n = net();
            let err = patch(&mut n, b.clone()).expect_err(&b.to_string());
            assert_eq!(field_of(err), field, "body {b}");
        }
    }

    #[test]
    fn names_reject_control_characters() {
        for bad in [
            "lab\nEVIL",
            "a\u{1b}[31mred",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            "rtl\u{202e}gnp.exe",
            "\u{2066}x",
        ] {
            let e = patch(&mut net(), json!({"name": bad})).unwrap_err();
            assert!(e.to_string().contains("control character"), "{bad:?}: {e}");
            assert_eq!(field_of(e), "name");
            let e = patch_member(&mut member(), &body(json!({"name": bad})), UnixTime::EPOCH)
                .unwrap_err();
            assert_eq!(field_of(e), "name", "{bad:?}");
        }
        let e = patch(&mut net(), json!({"name": "ab\u{0}"})).unwrap_err();
        assert!(e.to_string().contains("character 3 is U+0000"), "{e}");
        let mut n = net();
        patch(&mut n, json!({"name": "Büro – Köln 🛰"})).unwrap();
        assert_eq!(n.name, "Büro – Köln 🛰");
    }

    #[test]
    fn error_message_shows_what_was_sent() {
        let mut n = net();
        let e = patch(&mut n, json!({"mtu": "1500"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `mtu`: expected an integer from 1280 to 10000, got string \"1500\""
        );
    }

    #[test]
    fn pools_must_be_ordered_and_disjoint() {
        let mut n = net();
        let e = patch(
            &mut n,
            json!({"ipAssignmentPools": [{"ipRangeStart": "198.18.0.9", "ipRangeEnd": "198.18.0.1"}]}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "ipAssignmentPools[0]");
        let e = patch(
            &mut n,
            json!({"ipAssignmentPools": [
                {"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.100"},
                {"ipRangeStart": "198.18.0.100", "ipRangeEnd": "198.18.0.200"}
            ]}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("overlaps ipAssignmentPools[0]"),
            "{e}"
        );
        let e = patch(
            &mut n,
            json!({"ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "fd00::1"}]}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "ipAssignmentPools[0]");
        patch(
            &mut n,
            json!({"ipAssignmentPools": [
                {"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.99"},
                {"ipRangeStart": "198.18.0.100", "ipRangeEnd": "198.18.0.200"},
                {"ipRangeStart": "fd00::1", "ipRangeEnd": "fd00::ffff"}
            ]}),
        )
        .unwrap();
        assert_eq!(n.ip_assignment_pools.len(), 3);
    }

    #[test]
    fn routes_reject_host_bits_and_mixed_families() {
        let mut n = net();
        let e = patch(&mut n, json!({"routes": [{"target": "198.18.0.5/24"}]})).unwrap_err();
        assert!(e.to_string().contains("did you mean 198.18.0.0/24"), "{e}");
        let e = patch(
            &mut n,
            json!({"routes": [{"target": "198.18.0.0/24", "via": "fd00::1"}]}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "routes[0].via");
        patch(
            &mut n,
            json!({"routes": [
                {"target": "198.18.0.0/24", "via": null},
                {"target": "198.19.0.0/16", "via": "198.18.0.1"},
                {"target": "203.0.113.0/24", "via": ""}
            ]}),
        )
        .unwrap();
        assert_eq!(n.routes[1].via, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(n.routes[2].via, None);
    }

    #[test]
    fn new_default_routes_need_confirmation_and_kept_ones_do_not() {
        let before = net();
        for target in ["0.0.0.0/0", "::/0", "128.0.0.0/1", "8000::/1"] {
            let mut n = before.clone();
            patch(
                &mut n,
                json!({"routes": [{"target": "198.18.0.0/24"}, {"target": target}]}),
            )
            .unwrap();
            let e = check_default_routes(Some(&before), &n, false).unwrap_err();
            assert!(e.to_string().contains("allowDefaultRoute=true"), "{e}");
            assert_eq!(field_of(e), "routes[1].target", "{target}");
            check_default_routes(Some(&before), &n, true).unwrap();
            check_default_routes(None, &n, false).unwrap_err();
            // Once the network has the route, posting it back needs no confirmation.
            let mut again = n.clone();
            patch(
                &mut again,
                json!({"name": "renamed", "routes": n.to_api_json()["routes"]}),
            )
            .unwrap();
            check_default_routes(Some(&n), &again, false).unwrap();
        }
        let mut n = before.clone();
        patch(
            &mut n,
            json!({"routes": [{"target": "0.0.0.0/2"}, {"target": "fc00::/7"}]}),
        )
        .unwrap();
        check_default_routes(Some(&before), &n, false).unwrap();
    }

    #[test]
    fn new_addresses_outside_every_pool_need_confirmation() {
        let mut n = net();
        patch(
            &mut n,
            json!({"ipAssignmentPools": [
                {"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.20"},
                {"ipRangeStart": "fd00::1", "ipRangeEnd": "fd00::ff"}
            ]}),
        )
        .unwrap();
        let before = member();
        let mut m = before.clone();
        let ok = json!({"ipAssignments": ["198.18.0.10", "198.18.0.20", "fd00::ff"]});
        patch_member(&mut m, &body(ok), UnixTime::EPOCH).unwrap();
        check_outside_pools(&n, Some(&before), &m, false).unwrap();
        for outside in [
            "198.18.0.21",
            "203.0.113.5",
            "fd00::100",
            "::ffff:198.18.0.10",
        ] {
            let mut m = before.clone();
            let b = json!({"ipAssignments": ["198.18.0.11", outside]});
            patch_member(&mut m, &body(b), UnixTime::EPOCH).unwrap();
            let e = check_outside_pools(&n, Some(&before), &m, false).unwrap_err();
            assert!(e.to_string().contains("allowOutsidePools=true"), "{e}");
            assert!(e.to_string().contains("198.18.0.10-198.18.0.20"), "{e}");
            assert_eq!(field_of(e), "ipAssignments[1]", "{outside}");
            check_outside_pools(&n, Some(&before), &m, true).unwrap();
            // An address the member already holds stays without confirmation.
            check_outside_pools(&n, Some(&m), &m, false).unwrap();
        }
        let e = check_outside_pools(&net(), None, &m, false).unwrap_err();
        assert!(e.to_string().contains("has no ipAssignmentPools"), "{e}");
    }

    #[test]
    fn compatibility_forms_are_accepted() {
        let mut n = net();
        patch(
            &mut n,
            json!({"v4AssignMode": "zt", "v6AssignMode": "rfc4193,6plane", "dns": []}),
        )
        .unwrap();
        assert!(n.v4_assign_mode.zt);
        assert!(n.v6_assign_mode.rfc4193 && n.v6_assign_mode.sixplane && !n.v6_assign_mode.zt);
        // An object changes only the modes it names.
        patch(&mut n, json!({"v6AssignMode": {"zt": true}})).unwrap();
        assert!(n.v6_assign_mode.zt && n.v6_assign_mode.rfc4193);
    }

    #[test]
    fn read_only_fields_are_ignored_and_unknown_ones_reported() {
        let mut n = net();
        let ignored = patch(
            &mut n,
            json!({"id": "ffffffffffffffff", "revision": 99, "creationTime": 1, "authTokens": {}, "naem": "x"}),
        )
        .unwrap();
        assert_eq!(n, net());
        assert_eq!(ignored, vec!["authTokens".to_string(), "naem".to_string()]);
    }

    #[test]
    fn dns_is_validated() {
        let mut n = net();
        patch(
            &mut n,
            json!({"dns": {"domain": "corp.example", "servers": ["198.18.0.53", "fd00::53"]}}),
        )
        .unwrap();
        assert_eq!(n.dns.servers.len(), 2);
        let e = patch(&mut n, json!({"dns": {"domain": "bad domain"}})).unwrap_err();
        assert_eq!(field_of(e), "dns.domain");
        let e = patch(
            &mut n,
            json!({"dns": {"servers": ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"]}}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "dns.servers");
    }

    struct FakeCompiler;
    impl RulesCompiler for FakeCompiler {
        fn compile(&self, source: &str) -> Result<CompiledRules, RulesCompileError> {
            if source.contains("oops") {
                return Err(RulesCompileError {
                    line: 2,
                    column: 5,
                    message: "unknown keyword oops".into(),
                });
            }
            Ok(CompiledRules {
                rules: vec![json!({"type": "ACTION_DROP", "not": false, "or": false})],
                capabilities: vec![],
                tags: vec![TagDef {
                    id: 7,
                    default: Some(1),
                }],
            })
        }
    }

    #[test]
    fn rules_source_is_compiled_when_a_compiler_is_present() {
        let mut n = net();
        patch_network(
            &mut n,
            &body(json!({"rulesSource": "drop;"})),
            Some(&FakeCompiler),
        )
        .unwrap();
        assert_eq!(n.rules_source, "drop;");
        assert_eq!(n.rules[0]["type"], "ACTION_DROP");
        assert_eq!(n.tags[0].id, 7);
        let e = patch_network(
            &mut n,
            &body(json!({"rulesSource": "accept;\n    oops"})),
            Some(&FakeCompiler),
        )
        .unwrap_err();
        assert_eq!(
            e,
            ControllerError::Rules {
                line: 2,
                column: 5,
                message: "unknown keyword oops".into()
            }
        );
        // Without a compiler the text is stored and the table left alone.
        let mut n = net();
        patch(&mut n, json!({"rulesSource": "drop;"})).unwrap();
        assert_eq!(n.rules_source, "drop;");
        assert_eq!(n.rules[0]["type"], "ACTION_ACCEPT");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Every field either kind of patch knows, read-only ones, and keys of the
        /// nested objects.
        fn keys() -> Vec<&'static str> {
            let nested = [
                "id",
                "revision",
                "zt",
                "6plane",
                "target",
                "via",
                "ipRangeStart",
                "ipRangeEnd",
                "domain",
                "servers",
                "type",
                "default",
            ];
            [NETWORK_FIELDS, MEMBER_FIELDS, &nested[..]].concat()
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                (1200u64..10100).prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                prop_oneof![
                    Just("198.18.0.1"),
                    Just("198.18.0.254"),
                    Just("198.18.0.0/24"),
                    Just("fd00::1"),
                    Just("fd00::/64"),
                    Just("zt"),
                    Just("rfc4193,6plane"),
                    Just(""),
                    Just("ACTION_ACCEPT"),
                    Just("lab.example"),
                    Just("x/y"),
                ]
                .prop_map(|s| Value::String(s.into())),
                ".{0,12}".prop_map(Value::String),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(keys()), inner), 0..6).prop_map(
                        |kv| Value::Object(
                            kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                        )
                    ),
                ]
            })
        }

        fn body() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec((prop::sample::select(keys()), value()), 0..8)
                .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }

        proptest! {
            /// Any body either fails with a field error or yields a valid record that
            /// survives the trip through storage JSON unchanged.
            #[test]
            fn network_patch_never_panics_and_keeps_records_valid(b in body()) {
                let mut n = net();
                if patch_network(&mut n, &b, None).is_ok() {
                    prop_assert!(validate_network(&n).is_ok());
                    let back: Network = serde_json::from_value(n.to_api_json()).unwrap();
                    prop_assert_eq!(back, n);
                }
            }

            #[test]
            fn member_patch_never_panics_and_round_trips(b in body()) {
                let mut m = member();
                if patch_member(&mut m, &b, UnixTime::EPOCH).is_ok() {
                    prop_assert!(m.ip_assignments.len() <= MAX_MEMBER_ADDRESSES);
                    let back: Member = serde_json::from_value(m.to_api_json()).unwrap();
                    prop_assert_eq!(back, m);
                }
            }
        }
    }

    fn member() -> Member {
        Member::new(
            "89e92ceee5000001".parse().unwrap(),
            "0123456789".parse().unwrap(),
            UnixTime::EPOCH,
        )
    }

    #[test]
    fn member_patch_reads_each_field() {
        let mut m = member();
        let out = patch_member(
            &mut m,
            &body(json!({
                "authorized": true, "activeBridge": true, "noAutoAssignIps": true,
                "name": "laptop", "ipAssignments": ["198.18.0.9", "198.18.0.9", "fd00::9/64"],
                "tags": [[2, 20], [1, 10]], "capabilities": [3, 1, 3], "vMajor": 9, "bogus": 1
            })),
            UnixTime::from_millis(42),
        )
        .unwrap();
        assert_eq!(out.ignored, vec!["bogus".to_string()]);
        assert!(!out.deauthorized);
        assert!(m.authorized && m.active_bridge && m.no_auto_assign_ips);
        assert_eq!(m.last_authorized_time, 42);
        assert_eq!(m.name, "laptop");
        assert_eq!(
            m.ip_assignments,
            vec![
                "198.18.0.9".parse::<IpAddr>().unwrap(),
                "fd00::9".parse().unwrap()
            ]
        );
        assert_eq!(m.tags, vec![(1, 10), (2, 20)]);
        assert_eq!(m.capabilities, vec![1, 3]);
        assert_eq!(m.v_major, -1);
        let out =
            patch_member(&mut m, &body(json!({"authorized": false})), UnixTime::EPOCH).unwrap();
        assert!(out.deauthorized);
    }

    #[test]
    fn member_wrong_types_name_the_field() {
        let cases = [
            (json!({"authorized": 1}), "authorized"),
            (json!({"ipAssignments": "198.18.0.1"}), "ipAssignments"),
            (
                json!({"ipAssignments": ["198.18.0.300"]}),
                "ipAssignments[0]",
            ),
            (json!({"ipAssignments": ["0.0.0.0"]}), "ipAssignments[0]"),
            (json!({"tags": [[1]]}), "tags[0]"),
            (json!({"tags": [[1, 2], [1, 3]]}), "tags[1]"),
            (json!({"tags": [[1, "x"]]}), "tags[0][1]"),
            (json!({"capabilities": [1, -2]}), "capabilities[1]"),
        ];
        for (b, field) in cases {
            let mut m = member();
            let err =
                patch_member(&mut m, &body(b.clone()), UnixTime::EPOCH).expect_err(&b.to_string());
            assert_eq!(field_of(err), field, "body {b}");
        }
    }
}
