//! `skylan controller ...`: admin commands against a controller's HTTP API, for people
//! who do not want to write curl lines.
//!
//! Every command is one or a few requests to `http://127.0.0.1:<port>/controller/...`
//! with the token read from `<home>/authtoken.secret`. With `-j` the command prints the
//! API's JSON unchanged (what ZeroTier's `-j` does); otherwise a short human summary.
//! [`run`] returns the text to print; the caller maps [`CliError::exit_code`] to the
//! process exit status (1: the controller said no or is unreachable, 2: usage).
//!
//! `KEY=VALUE` settings (`network set`, `member set`) send VALUE as JSON when it parses
//! as JSON (`mtu=1400`, `private=false`, `routes=[...]`) and as a string otherwise;
//! `name` and `rulesSource` are always strings; `KEY:=JSON` forces JSON; `KEY=@FILE`
//! sends the file's contents as a string (`rulesSource=@lab.rules`).
//!
//! `skylan controller ui` prints a login link for the web UI ([`login_link`]).
//!
//! The HTTP client is a small blocking HTTP/1.1 client over `std::net::TcpStream`
//! ([`raw_request`]), also used by tests that need full control over headers.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::client::{ApiClient, CliError};
use super::netfile;
use super::table::{Table, utc};
use crate::controller::declare::Plan;
use crate::controller::patch::{MEMBER_FIELDS, NETWORK_FIELDS};

/// `skylan controller` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ControllerCommand {
    /// List the networks of this controller.
    Networks,
    /// Create, show, change or delete a network.
    Network {
        /// What to do.
        #[command(subcommand)]
        cmd: NetworkCommand,
    },
    /// List the members of a network.
    Members {
        /// Network ID (16 hex digits).
        nwid: String,
    },
    /// Show, authorize, deauthorize, change or delete a member.
    Member {
        /// What to do.
        #[command(subcommand)]
        cmd: MemberCommand,
    },
    /// Print a login link for the web UI: open it in a browser on this machine. The
    /// link carries the API token after `#` (browsers never send that part to a server):
    /// treat it like the token.
    Ui,
    /// Show what applying a network file would change: `+` create, `~` change
    /// (`field: old -> new`), `-` delete, and what the file leaves alone.
    Plan {
        /// The network file (TOML; see the README's "Networks as code").
        file: PathBuf,
        /// Exit 0 when there is nothing to change, 2 when there is (1 on errors).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Make the controller's networks as a network file says, all or nothing; every
    /// change goes to the audit log under one change ID.
    Apply {
        /// The network file (TOML).
        file: PathBuf,
    },
    /// Show the audit log (every change: who, what, when, before/after).
    Audit {
        /// Only entries about this network.
        #[arg(long)]
        network: Option<String>,
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// `skylan controller network` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum NetworkCommand {
    /// Create a network with a random ID under this controller.
    Create {
        /// Network name.
        #[arg(long)]
        name: Option<String>,
        /// Auto-assign pool START-END (repeatable); turns on IPv4/IPv6 auto-assignment.
        #[arg(long = "pool", value_name = "START-END")]
        pools: Vec<String>,
        /// Route CIDR or CIDR,VIA (repeatable). Without any, each pool gets the
        /// smallest prefix that covers it.
        #[arg(long = "route", value_name = "CIDR[,VIA]")]
        routes: Vec<String>,
        /// Members need authorization (the default).
        #[arg(long, conflicts_with = "public")]
        private: bool,
        /// Anyone who knows the network ID may join.
        #[arg(long)]
        public: bool,
        /// Accept a route that replaces the members' default route (0.0.0.0/0, ::/0).
        #[arg(long)]
        allow_default_route: bool,
    },
    /// Show a network.
    Show {
        /// Network ID.
        nwid: String,
    },
    /// Delete a network and all its members.
    Delete {
        /// Network ID.
        nwid: String,
    },
    /// Change network fields: KEY=VALUE (e.g. mtu=1400 name=lab private=false).
    Set {
        /// Network ID.
        nwid: String,
        /// Fields to change.
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
        /// Accept a new route that replaces the members' default route (0.0.0.0/0, ::/0).
        #[arg(long)]
        allow_default_route: bool,
    },
}

/// `skylan controller member` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum MemberCommand {
    /// Show a member.
    Show {
        /// Network ID.
        nwid: String,
        /// Member address (10 hex digits).
        address: String,
    },
    /// Authorize a member (creating its record if the node has not asked yet).
    Authorize {
        /// Network ID.
        nwid: String,
        /// Member address.
        address: String,
    },
    /// Deauthorize a member (revokes its access at once).
    Deauthorize {
        /// Network ID.
        nwid: String,
        /// Member address.
        address: String,
    },
    /// Delete a member and free its addresses.
    Delete {
        /// Network ID.
        nwid: String,
        /// Member address.
        address: String,
    },
    /// Change member fields.
    Set {
        /// Network ID.
        nwid: String,
        /// Member address.
        address: String,
        /// Static IP address (repeatable; replaces the member's addresses).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<String>,
        /// Member name.
        #[arg(long)]
        name: Option<String>,
        /// Allow bridging (true/false).
        #[arg(long, value_name = "BOOL")]
        bridge: Option<bool>,
        /// Never auto-assign addresses (true/false).
        #[arg(long = "no-auto-ip", value_name = "BOOL")]
        no_auto_ip: Option<bool>,
        /// Other fields as KEY=VALUE (e.g. tags=[[1,2]]).
        #[arg(value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Accept addresses outside every address pool of the network.
        #[arg(long)]
        allow_outside_pools: bool,
    },
}

/// Runs one controller command against the API on 127.0.0.1:`port` with the token in
/// `home`, returning what to print (JSON when `json`).
pub fn run(home: &Path, port: u16, json: bool, cmd: ControllerCommand) -> Result<String, CliError> {
    run_with_status(home, port, json, cmd).map(|(out, _)| out)
}

/// [`run`], with the exit status the command asks for besides printing: 2 for
/// `plan --detailed-exitcode` when there are changes, 0 otherwise.
pub fn run_with_status(
    home: &Path,
    port: u16,
    json: bool,
    cmd: ControllerCommand,
) -> Result<(String, u8), CliError> {
    match cmd {
        ControllerCommand::Plan {
            file,
            detailed_exitcode,
        } => {
            let plan = declare(home, port, &file, true)?;
            let pending = detailed_exitcode && !plan.changes.is_empty();
            Ok((show_plan(&plan, &file, json), if pending { 2 } else { 0 }))
        }
        ControllerCommand::Apply { file } => {
            let plan = declare(home, port, &file, false)?;
            Ok((show_plan(&plan, &file, json), 0))
        }
        other => {
            let api = ApiClient::for_home(home, Some(port))?.for_controller();
            Ok((run_one(&api, json, other)?, 0))
        }
    }
}

/// Reads a network file (its errors come first: nothing is sent) and sends it to
/// `POST /controller/apply` (`dry_run`: a plan).
fn declare(home: &Path, port: u16, file: &Path, dry_run: bool) -> Result<Plan, CliError> {
    let desired = netfile::load(file)?;
    let api = ApiClient::for_home(home, Some(port))?.for_controller();
    let body = serde_json::to_value(&desired).map_err(|e| CliError::Protocol(e.to_string()))?;
    let path = if dry_run {
        "/controller/apply?dryRun=true"
    } else {
        "/controller/apply"
    };
    serde_json::from_value(api.post(path, &body)?)
        .map_err(|e| CliError::Protocol(format!("POST {path}: not a plan: {e}")))
}

fn show_plan(plan: &Plan, file: &Path, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(plan).unwrap_or_default();
    }
    netfile::format_plan(plan, &file.display().to_string())
}

/// The commands that are one or a few API calls.
fn run_one(api: &ApiClient, json: bool, cmd: ControllerCommand) -> Result<String, CliError> {
    match cmd {
        ControllerCommand::Networks => {
            if json {
                return Ok(pretty(&api.get("/controller/network")?));
            }
            let v = api.get("/unstable/controller/network")?;
            Ok(format_networks(&v))
        }
        ControllerCommand::Network { cmd } => network(api, json, cmd),
        ControllerCommand::Members { nwid } => {
            if json {
                return Ok(pretty(
                    &api.get(&format!("/controller/network/{nwid}/member"))?,
                ));
            }
            let v = api.get(&format!("/unstable/controller/network/{nwid}/member"))?;
            Ok(format_members(&v))
        }
        ControllerCommand::Member { cmd } => member(api, json, cmd),
        ControllerCommand::Ui => {
            // Only a controller that answers gets a link (the UI would show nothing else).
            api.get("/controller")?;
            let url = login_link(api);
            Ok(if json {
                pretty(&json!({ "url": url }))
            } else {
                format!(
                    "Open this link in a browser on this machine (it holds the API token; do not share it):\n{url}"
                )
            })
        }
        ControllerCommand::Audit {
            network,
            after,
            limit,
        } => {
            let mut path = format!("/controller/audit?after={after}&limit={limit}");
            if let Some(n) = network {
                path.push_str(&format!("&network={n}"));
            }
            let v = api.get(&path)?;
            Ok(if json { pretty(&v) } else { format_audit(&v) })
        }
        ControllerCommand::Plan { .. } | ControllerCommand::Apply { .. } => Err(CliError::Usage(
            "plan and apply read a network file first; they run through run_with_status".into(),
        )),
    }
}

fn network(api: &ApiClient, json: bool, cmd: NetworkCommand) -> Result<String, CliError> {
    match cmd {
        NetworkCommand::Create {
            name,
            pools,
            routes,
            private,
            public,
            allow_default_route,
        } => {
            let body = create_body(name, &pools, &routes, private, public)?;
            let path = confirming(
                "/controller/network",
                "allowDefaultRoute",
                allow_default_route,
            );
            let v = api.post(&path, &body)?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "created network {}\n{}",
                    str_of(&v["id"]),
                    format_network(&v)
                )
            })
        }
        NetworkCommand::Show { nwid } => {
            let v = api.get(&format!("/controller/network/{nwid}"))?;
            Ok(if json { pretty(&v) } else { format_network(&v) })
        }
        NetworkCommand::Delete { nwid } => {
            let v = api.delete(&format!("/controller/network/{nwid}"))?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("deleted network {nwid} ({})", str_of(&v["name"]))
            })
        }
        NetworkCommand::Set {
            nwid,
            settings,
            allow_default_route,
        } => {
            let body = settings_body(&settings, NETWORK_FIELDS)?;
            let path = format!("/controller/network/{nwid}");
            let path = confirming(&path, "allowDefaultRoute", allow_default_route);
            let v = api.post(&path, &body)?;
            Ok(if json { pretty(&v) } else { format_network(&v) })
        }
    }
}

fn member(api: &ApiClient, json: bool, cmd: MemberCommand) -> Result<String, CliError> {
    let path = |nwid: &str, address: &str| format!("/controller/network/{nwid}/member/{address}");
    let (v, verb) = match cmd {
        MemberCommand::Show { nwid, address } => (api.get(&path(&nwid, &address))?, None),
        MemberCommand::Authorize { nwid, address } => (
            api.post(&path(&nwid, &address), &json!({"authorized": true}))?,
            Some("authorized"),
        ),
        MemberCommand::Deauthorize { nwid, address } => (
            api.post(&path(&nwid, &address), &json!({"authorized": false}))?,
            Some("deauthorized"),
        ),
        MemberCommand::Delete { nwid, address } => {
            (api.delete(&path(&nwid, &address))?, Some("deleted"))
        }
        MemberCommand::Set {
            nwid,
            address,
            ips,
            name,
            bridge,
            no_auto_ip,
            settings,
            allow_outside_pools,
        } => {
            let mut body = settings_body(&settings, MEMBER_FIELDS)?;
            if !ips.is_empty() {
                body["ipAssignments"] = json!(ips);
            }
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(b) = bridge {
                body["activeBridge"] = json!(b);
            }
            if let Some(b) = no_auto_ip {
                body["noAutoAssignIps"] = json!(b);
            }
            if body.as_object().is_some_and(Map::is_empty) {
                return Err(CliError::Usage(
                    "nothing to change: give --ip, --name, --bridge, --no-auto-ip or KEY=VALUE"
                        .into(),
                ));
            }
            let path = confirming(
                &path(&nwid, &address),
                "allowOutsidePools",
                allow_outside_pools,
            );
            (api.post(&path, &body)?, None)
        }
    };
    if json {
        return Ok(pretty(&v));
    }
    Ok(match verb {
        Some(verb) => format!(
            "{verb} member {} of network {}\n{}",
            str_of(&v["id"]),
            str_of(&v["nwid"]),
            format_member(&v)
        ),
        None => format_member(&v),
    })
}

/// The web UI's login link: `http://127.0.0.1:<port>/ui/#token=<token>`. The token is
/// in the fragment, which browsers keep to themselves, so it reaches no server log.
pub fn login_link(api: &ApiClient) -> String {
    format!("http://127.0.0.1:{}/ui/#token={}", api.port(), api.token())
}

/// `path` with the query flag `flag=true` when `on` (a change the user confirmed).
fn confirming(path: &str, flag: &str, on: bool) -> String {
    if on {
        format!("{path}?{flag}=true")
    } else {
        path.to_string()
    }
}

/// The body of `network create`.
fn create_body(
    name: Option<String>,
    pools: &[String],
    routes: &[String],
    private: bool,
    public: bool,
) -> Result<Value, CliError> {
    let mut body = Map::new();
    if let Some(n) = name {
        body.insert("name".into(), json!(n));
    }
    if private {
        body.insert("private".into(), json!(true));
    }
    if public {
        body.insert("private".into(), json!(false));
    }
    let mut pool_objs = Vec::new();
    let mut derived_routes = Vec::new();
    let (mut any_v4, mut any_v6) = (false, false);
    for p in pools {
        let (start, end) = p
            .split_once('-')
            .ok_or_else(|| CliError::Usage(format!("--pool {p:?}: expected START-END")))?;
        let start: std::net::IpAddr = start.trim().parse().map_err(|_| {
            CliError::Usage(format!("--pool {p:?}: {start:?} is not an IP address"))
        })?;
        let end: std::net::IpAddr = end
            .trim()
            .parse()
            .map_err(|_| CliError::Usage(format!("--pool {p:?}: {end:?} is not an IP address")))?;
        any_v4 |= start.is_ipv4();
        any_v6 |= start.is_ipv6();
        pool_objs.push(json!({"ipRangeStart": start.to_string(), "ipRangeEnd": end.to_string()}));
        derived_routes.push(json!({"target": covering_prefix(start, end)?, "via": null}));
    }
    if !pool_objs.is_empty() {
        body.insert("ipAssignmentPools".into(), Value::Array(pool_objs));
        if any_v4 {
            body.insert("v4AssignMode".into(), json!({"zt": true}));
        }
        if any_v6 {
            body.insert("v6AssignMode".into(), json!({"zt": true}));
        }
    }
    let mut route_objs = Vec::new();
    for r in routes {
        let (target, via) = match r.split_once(',') {
            Some((t, v)) => (t.trim(), Some(v.trim())),
            None => (r.trim(), None),
        };
        if target.parse::<ipnet::IpNet>().is_err() {
            return Err(CliError::Usage(format!(
                "--route {r:?}: {target:?} is not a CIDR prefix like 198.18.0.0/24"
            )));
        }
        if let Some(v) = via
            && v.parse::<std::net::IpAddr>().is_err()
        {
            return Err(CliError::Usage(format!(
                "--route {r:?}: gateway {v:?} is not an IP address"
            )));
        }
        route_objs.push(json!({"target": target, "via": via}));
    }
    if route_objs.is_empty() {
        route_objs = derived_routes;
    }
    if !route_objs.is_empty() {
        body.insert("routes".into(), Value::Array(route_objs));
    }
    Ok(Value::Object(body))
}

/// The smallest prefix containing both `start` and `end`.
fn covering_prefix(start: std::net::IpAddr, end: std::net::IpAddr) -> Result<String, CliError> {
    use std::net::IpAddr;
    let net = match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let len = (u32::from(a) ^ u32::from(b)).leading_zeros() as u8;
            ipnet::IpNet::new(IpAddr::V4(a), len).map(|n| n.trunc())
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let len = (u128::from(a) ^ u128::from(b)).leading_zeros() as u8;
            ipnet::IpNet::new(IpAddr::V6(a), len).map(|n| n.trunc())
        }
        _ => {
            return Err(CliError::Usage(format!(
                "--pool {start}-{end}: both ends must be of the same address family"
            )));
        }
    };
    net.map(|n| n.to_string())
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// Fields that are always sent as strings by `KEY=VALUE`.
const STRING_FIELDS: &[&str] = &["name", "rulesSource"];

/// Turns `KEY=VALUE` / `KEY:=JSON` / `KEY=@FILE` arguments into a JSON object; a key
/// not in `known` is a usage error naming the nearest known key (the API itself ignores
/// fields it does not know, as ZeroTier's does, so a typo would otherwise do nothing).
fn settings_body(settings: &[String], known: &[&str]) -> Result<Value, CliError> {
    let mut body = Map::new();
    for s in settings {
        let (key, value) = if let Some((k, v)) = s.split_once(":=") {
            let v: Value = serde_json::from_str(v).map_err(|e| {
                CliError::Usage(format!("{s:?}: the value after := must be JSON ({e})"))
            })?;
            (k, v)
        } else if let Some((k, v)) = s.split_once('=') {
            let v = if let Some(file) = v.strip_prefix('@') {
                Value::String(
                    std::fs::read_to_string(file)
                        .map_err(|e| CliError::Usage(format!("{s:?}: cannot read {file}: {e}")))?,
                )
            } else if STRING_FIELDS.contains(&k) {
                Value::String(v.to_string())
            } else {
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
            };
            (k, v)
        } else {
            return Err(CliError::Usage(format!(
                "{s:?}: expected KEY=VALUE (or KEY:=JSON)"
            )));
        };
        if key.is_empty() {
            return Err(CliError::Usage(format!("{s:?}: the key is empty")));
        }
        if !known.contains(&key) {
            let hint = match crate::rules::suggest(key, known.iter().copied()) {
                Some(k) => format!("did you mean `{k}`? "),
                None => String::new(),
            };
            return Err(CliError::Usage(format!(
                "{s:?}: unknown key `{key}`; {hint}the keys are {}",
                known.join(", ")
            )));
        }
        body.insert(key.to_string(), value);
    }
    Ok(Value::Object(body))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

fn format_networks(v: &Value) -> String {
    let mut t = Table::new(&["NWID", "NAME", "TYPE", "MEMBERS", "AUTHORIZED"])
        .right(3)
        .right(4);
    for n in v["data"].as_array().into_iter().flatten() {
        t.row(vec![
            str_of(&n["id"]),
            or_dash(str_of(&n["name"])),
            network_type(n).into(),
            n["meta"]["totalMemberCount"].to_string(),
            n["meta"]["authorizedMemberCount"].to_string(),
        ]);
    }
    t.render()
}

fn network_type(n: &Value) -> &'static str {
    if n["private"] == json!(false) {
        "PUBLIC"
    } else {
        "PRIVATE"
    }
}

fn format_network(n: &Value) -> String {
    let list = |v: &Value, f: &dyn Fn(&Value) -> String| -> String {
        let items: Vec<String> = v.as_array().into_iter().flatten().map(f).collect();
        or_dash(items.join(", "))
    };
    let pools = list(&n["ipAssignmentPools"], &|p| {
        format!(
            "{}-{}",
            str_of(&p["ipRangeStart"]),
            str_of(&p["ipRangeEnd"])
        )
    });
    let routes = list(&n["routes"], &|r| match &r["via"] {
        Value::String(via) => format!("{} via {via}", str_of(&r["target"])),
        _ => str_of(&r["target"]),
    });
    let mut v6 = Vec::new();
    for (k, label) in [("zt", "zt"), ("rfc4193", "rfc4193"), ("6plane", "6plane")] {
        if n["v6AssignMode"][k] == json!(true) {
            v6.push(label);
        }
    }
    let dns = format!(
        "{} {}",
        str_of(&n["dns"]["domain"]),
        list(&n["dns"]["servers"], &str_of)
    );
    let rules = n["rules"].as_array().map_or(0, Vec::len);
    [
        format!("nwid:        {}", str_of(&n["id"])),
        format!("name:        {}", or_dash(str_of(&n["name"]))),
        format!("type:        {}", network_type(n)),
        format!(
            "ethernet:    mtu {}, broadcast {}, multicast limit {}",
            n["mtu"],
            if n["enableBroadcast"] == json!(true) {
                "on"
            } else {
                "off"
            },
            n["multicastLimit"]
        ),
        format!(
            "ipv4 assign: {}",
            if n["v4AssignMode"]["zt"] == json!(true) {
                "from pools"
            } else {
                "off"
            }
        ),
        format!("ipv6 assign: {}", or_dash(v6.join(", "))),
        format!("pools:       {pools}"),
        format!("routes:      {routes}"),
        format!("dns:         {}", dns.trim()),
        format!("rules:       {rules} entries"),
        format!("revision:    {}", n["revision"]),
    ]
    .join("\n")
}

fn format_members(v: &Value) -> String {
    let mut t = Table::new(&["ADDRESS", "NAME", "AUTHORIZED", "BRIDGE", "IPS"]);
    for m in v["data"].as_array().into_iter().flatten() {
        t.row(vec![
            str_of(&m["id"]),
            or_dash(str_of(&m["name"])),
            yes_no(&m["authorized"]).into(),
            yes_no(&m["activeBridge"]).into(),
            ip_list(m),
        ]);
    }
    format!(
        "{}\n{} members, {} authorized",
        t.render(),
        v["meta"]["totalCount"],
        v["meta"]["authorizedCount"]
    )
}

fn yes_no(v: &Value) -> &'static str {
    if *v == json!(true) { "yes" } else { "no" }
}

fn ip_list(m: &Value) -> String {
    let ips: Vec<String> = m["ipAssignments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
        .collect();
    or_dash(ips.join(","))
}

fn format_member(m: &Value) -> String {
    let tags: Vec<String> = m["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}={}", t[0], t[1]))
        .collect();
    [
        format!("address:     {}", str_of(&m["id"])),
        format!("network:     {}", str_of(&m["nwid"])),
        format!("name:        {}", or_dash(str_of(&m["name"]))),
        format!("authorized:  {}", yes_no(&m["authorized"])),
        format!("bridge:      {}", yes_no(&m["activeBridge"])),
        format!(
            "ips:         {}{}",
            ip_list(m),
            if m["noAutoAssignIps"] == json!(true) {
                " (no auto-assign)"
            } else {
                ""
            }
        ),
        format!("tags:        {}", or_dash(tags.join(", "))),
        format!("revision:    {}", m["revision"]),
    ]
    .join("\n")
}

fn format_audit(v: &Value) -> String {
    let mut t = Table::new(&["SEQ", "TIME", "ACTION", "TARGET", "BY", "FIELDS"]).right(0);
    for e in v.as_array().into_iter().flatten() {
        let target = match &e["member"] {
            Value::String(m) => format!("{}/{m}", str_of(&e["nwid"])),
            _ => str_of(&e["nwid"]),
        };
        let fields: Vec<&str> = e["changes"]
            .as_object()
            .map(|c| c.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let actor = match &e["change"] {
            Value::String(id) => format!("{}, change {id}", str_of(&e["actor"])),
            _ => str_of(&e["actor"]),
        };
        t.row(vec![
            format!("#{}", e["seq"]),
            utc(e["time"].as_u64().unwrap_or(0)),
            str_of(&e["action"]),
            target,
            actor,
            fields.join(", "),
        ]);
    }
    if v.as_array().is_none_or(Vec::is_empty) {
        return "no audit entries".into();
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_json_when_possible_and_strings_otherwise() {
        let v = settings_body(
            &[
                "mtu=1400".into(),
                "private=false".into(),
                "name=123".into(),
                "dns={\"domain\":\"lab.example\"}".into(),
                "rulesSource=bar baz".into(),
                "tags:=[[1,2]]".into(),
            ],
            NETWORK_FIELDS,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"mtu": 1400, "private": false, "name": "123",
                   "dns": {"domain": "lab.example"}, "rulesSource": "bar baz", "tags": [[1, 2]]})
        );
        assert!(settings_body(&["novalue".into()], NETWORK_FIELDS).is_err());
        assert!(settings_body(&["mtu:=nope".into()], NETWORK_FIELDS).is_err());
        assert!(settings_body(&["=1".into()], NETWORK_FIELDS).is_err());
        let typo = settings_body(&["mtuu=1400".into()], NETWORK_FIELDS).unwrap_err();
        assert!(typo.to_string().contains("did you mean `mtu`?"), "{typo}");
        assert!(settings_body(&["authorised=true".into()], MEMBER_FIELDS).is_err());
    }

    #[test]
    fn settings_can_read_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lab.rules");
        std::fs::write(&f, "accept;\n").unwrap();
        let v = settings_body(&[format!("rulesSource=@{}", f.display())], NETWORK_FIELDS).unwrap();
        assert_eq!(v, json!({"rulesSource": "accept;\n"}));
    }

    #[test]
    fn create_derives_routes_and_modes_from_pools() {
        let v = create_body(
            Some("lab".into()),
            &[
                "198.18.0.1-198.18.0.254".into(),
                "fd00::1-fd00::ffff".into(),
            ],
            &[],
            false,
            true,
        )
        .unwrap();
        assert_eq!(v["private"], json!(false));
        assert_eq!(v["v4AssignMode"], json!({"zt": true}));
        assert_eq!(v["v6AssignMode"], json!({"zt": true}));
        assert_eq!(v["routes"][0]["target"], "198.18.0.0/24");
        assert_eq!(v["routes"][1]["target"], "fd00::/112");
        let v = create_body(
            None,
            &["198.18.0.1-198.18.0.254".into()],
            &["198.18.0.0/16".into(), "203.0.113.0/24,198.18.0.1".into()],
            false,
            false,
        )
        .unwrap();
        assert_eq!(
            v["routes"],
            json!([{"target": "198.18.0.0/16", "via": null},
                   {"target": "203.0.113.0/24", "via": "198.18.0.1"}])
        );
        assert!(v.get("private").is_none());
        assert!(create_body(None, &["198.18.0.1".into()], &[], false, false).is_err());
        assert!(create_body(None, &[], &["198.18.0.0/33".into()], false, false).is_err());
    }

    #[test]
    fn exit_codes_separate_usage_from_refusal() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            CliError::Refused {
                status: 404,
                message: "x".into()
            }
            .exit_code(),
            1
        );
    }

    #[test]
    fn missing_token_file_explains_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(dir.path(), 1, false, ControllerCommand::Networks).unwrap_err();
        assert!(err.to_string().contains("authtoken.secret"), "{err}");
        assert_eq!(err.exit_code(), 1);
    }

    /// A home with a token and an API port nobody listens on.
    fn home_with_closed_port() -> (tempfile::TempDir, u16) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("authtoken.secret"), "t").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (dir, port)
    }

    #[test]
    fn hints_name_the_daemon_that_serves_the_command() {
        let (dir, port) = home_with_closed_port();
        let err = run(dir.path(), port, false, ControllerCommand::Networks).unwrap_err();
        assert!(
            err.to_string().contains("`skylan node --controller`"),
            "{err}"
        );
        std::fs::write(dir.path().join("skylan.port"), port.to_string()).unwrap();
        let err = super::super::node::info(dir.path(), false).unwrap_err();
        assert!(
            err.to_string()
                .contains("is the node running? Check that `skylan node` runs"),
            "{err}"
        );
    }
}
