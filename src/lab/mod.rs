//! Throw-away labs of Linux network namespaces, for end-to-end tests and `skylan demo`.
//!
//! A [`Lab`] owns a *backbone* namespace holding one Linux bridge (`br0`) and no addresses
//! or routes (so a stray packet cannot leave the lab), and any number of hosts plugged
//! into it:
//!
//! ```text
//!   public host                     NAT host
//!  [<id>.h.alice]            [<id>.h.bob] 192.0.2.10/24, default via 192.0.2.1
//!   eth0 198.51.100.11/24           eth0
//!     |                               |
//!     |                             lan0 192.0.2.1/24
//!     |                       [<id>.r.bob]  router: forwards, nftables NAT
//!     |                             wan0 198.51.100.21/24
//!     |p0                             |p1
//!  ===+===========  br0  ============+====   [<id>.bb]  backbone (bridge-family nft:
//!                                                       per-port cut and loss)
//! ```
//!
//! [`Lab::add_host_behind`] puts another host on an existing NAT host's private segment:
//! the router's private side becomes a bridge (`lanbr`, 192.0.2.1/24) with one veth per
//! host (`lan0`, `lan1`, ...), so the hosts reach each other directly on 192.0.2.0/24
//! while sharing the router's public address. The routers do not hairpin: a packet
//! from the private side to the router's public address reaches the router itself, not
//! the other host.
//!
//! Invariants:
//! - Every namespace name starts with the lab id `skl-<tag>-<pid>-<n>`, unique per lab
//!   (process id plus a per-process counter), so labs of parallel tests and of other
//!   processes never collide. Interfaces are created directly inside their namespaces
//!   with short fixed names (`eth0`, `wan0`, `lan0`, `br0`, `p<n>`), so nothing is ever
//!   created in the caller's namespace and every name fits in 15 bytes.
//! - Underlay addresses come only from documentation ranges: public addresses from
//!   198.51.100.0/24 (one segment on the backbone), private ones from 192.0.2.0/24 (one
//!   segment per NAT host, the router being 192.0.2.1).
//! - On `Drop` (also while unwinding from a panic) the lab ends the processes it spawned,
//!   and only those (by PID: SIGTERM, a short grace, SIGKILL), then deletes its namespaces,
//!   which removes their veths.
//!
//! Shelling out to `ip` and `nft` is deliberate: this is a test and demo harness, and the
//! commands in error messages can be pasted into a shell. Needs root, iproute2 and
//! nftables. Callers: `tests/`, the netconf and TAP tests, and `skylan demo`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod demo;
mod netns;
mod nft;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use netns::{is_root, list_interfaces, list_namespaces, require_root, run_in};

use nft::{LAN_IF, WAN_IF};

/// Every lab namespace name starts with this.
pub const LAB_PREFIX: &str = "skl-";
/// The bridge in the backbone namespace.
const BRIDGE: &str = "br0";
/// A host's interface towards the backbone or its router.
const HOST_IF: &str = "eth0";
/// A NAT router's address on its private segment (the hosts' default gateway).
pub const ROUTER_PRIVATE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The bridge on a router's private side once it has more than one host.
const LAN_BRIDGE: &str = "lanbr";
/// How long spawned processes get between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Distinguishes labs made by the same process.
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces, veths and nftables need root.
    #[error("the namespace lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run as root")]
    NotRoot,
    /// A tool the lab shells out to is not installed.
    #[error(
        "`{tool}` was not found; install it (apt-get install -y iproute2 nftables iputils-ping)"
    )]
    MissingTool {
        /// The program that could not be started.
        tool: String,
    },
    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A lab tag, host or namespace name that cannot be used.
    #[error("bad name {name:?}: {reason}")]
    BadName {
        /// The rejected name.
        name: String,
        /// What a valid name looks like.
        reason: &'static str,
    },
    /// A host name already used in this lab.
    #[error("this lab already has a host named {0:?}; pick another name")]
    DuplicateHost(String),
    /// An address outside its allowed range.
    #[error("address {ip} cannot be used: {reason}")]
    BadAddress {
        /// The rejected address.
        ip: IpAddr,
        /// Which range is allowed.
        reason: &'static str,
    },
    /// A public address already used in this lab.
    #[error("address {0} is already used by another host of this lab")]
    AddressInUse(Ipv4Addr),
    /// The host does not belong to this lab.
    #[error("host {0:?} does not belong to this lab")]
    UnknownHost(String),
    /// `spawn` was given a command that would not run inside the host's namespace.
    #[error(
        "refusing to spawn `{command}`: it would not run inside namespace {netns}; build it with host.command(program)"
    )]
    NotInNamespace {
        /// The command line given.
        command: String,
        /// The host's namespace.
        netns: String,
    },
    /// The PID was not spawned by this lab (or was already ended), so it is left alone.
    #[error("process {0} was not spawned by this lab (or has already been ended)")]
    UnknownPid(u32),
    /// A loss percentage above 100.
    #[error("loss must be 0..=100 percent, got {0}")]
    BadLoss(u8),
    /// An MTU [`Lab::black_hole`] cannot set.
    #[error("MTU {0} is out of range; pick 68 to 1500")]
    BadMtu(u16),
    /// [`Lab::rebind_nat`] on a host it cannot rebind.
    #[error("cannot rebind the NAT of host {host:?}: {reason}")]
    CannotRebind {
        /// The host's name.
        host: String,
        /// Why not.
        reason: &'static str,
    },
}

/// The NAT behaviours a lab router can emulate (see RFC 4787 for the terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Full cone: endpoint-independent mapping and filtering; once a private port has sent
    /// anything, anyone can reach it through its public port (UDP).
    EndpointIndependent,
    /// Port-restricted cone: endpoint-independent mapping, but only the exact address and
    /// port a flow went to may answer (Linux `masquerade`).
    PortRestricted,
    /// Symmetric: every destination gets its own random public port, and only that
    /// destination may answer (Linux `masquerade fully-random`).
    Symmetric,
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatKind::EndpointIndependent => "endpoint-independent (full cone)",
            NatKind::PortRestricted => "port-restricted cone",
            NatKind::Symmetric => "symmetric",
        })
    }
}

/// A host of a lab: a namespace with one interface, behind the backbone or a NAT router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    /// The name given to [`Lab::add_public_host`] or [`Lab::add_nat_host`].
    pub name: String,
    /// The host's network namespace (use with [`run_in`] or `ip -n`).
    pub netns: String,
    /// The address others reach this host by: its own public address, or its NAT's.
    pub ip: Ipv4Addr,
    /// For a host behind NAT, its own address on the private segment.
    pub private_ip: Option<Ipv4Addr>,
    /// For a host behind NAT, the router's namespace.
    pub router_netns: Option<String>,
    /// For a host behind NAT, how its router behaves.
    pub nat: Option<NatKind>,
    /// The host's (or its router's) port on the backbone bridge.
    port: String,
}

impl LabHost {
    /// A command that runs `program` inside this host's namespace (`ip netns exec`); add
    /// arguments and stdio as usual, then run it, or hand it to [`Lab::spawn`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"]).arg(&self.netns).arg(program);
        cmd
    }

    /// Runs `f` on a thread inside this host's namespace (see [`run_in`]).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, LabError> {
        run_in(&self.netns, f)
    }

    /// The address this host's own interface has (the private one behind NAT); bind
    /// sockets to this inside the namespace.
    pub fn local_ip(&self) -> Ipv4Addr {
        self.private_ip.unwrap_or(self.ip)
    }
}

/// A throw-away lab of network namespaces; everything it made goes away on `Drop`.
pub struct Lab {
    /// `skl-<tag>-<pid>-<n>`: the prefix of every namespace of this lab.
    id: String,
    /// The backbone namespace (bridge, port rules).
    backbone: String,
    /// Mutable bookkeeping; a mutex so a lab can be shared by reference between threads.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Namespaces in creation order; deleted in reverse.
    namespaces: Vec<String>,
    hosts: Vec<LabHost>,
    used_ips: HashSet<Ipv4Addr>,
    next_port: u32,
    /// NAT rebindings so far (each moves the public port range).
    rebinds: u16,
    /// Port rules as last set, so `cut` and `set_loss` compose.
    port_rules: Vec<(String, PortRule)>,
    /// Processes started by `spawn`; the only ones the lab will ever signal.
    children: Vec<Child>,
}

#[derive(Clone, Copy, Default)]
struct PortRule {
    cut: bool,
    loss: u8,
}

impl Lab {
    /// Builds an empty lab: the backbone namespace with its bridge and port-rule table.
    /// `tag` (1–12 of `[A-Za-z0-9_]`) names the lab in namespace names.
    ///
    /// Errors: [`LabError::NotRoot`], a bad tag, missing `ip`/`nft`, or a failed command.
    pub fn new(tag: &str) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        if tag.is_empty()
            || tag.len() > 12
            || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(LabError::BadName {
                name: tag.to_string(),
                reason: "a lab tag is 1 to 12 characters of A-Z, a-z, 0-9 and _",
            });
        }
        check_tools()?;
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{LAB_PREFIX}{tag}-{}-{n}", std::process::id());
        let lab = Lab {
            backbone: format!("{id}.bb"),
            id,
            state: Mutex::new(State::default()),
        };
        // From here on, `Drop` cleans up whatever was made, even if a step fails.
        lab.add_namespace(&lab.backbone)?;
        netns::ip_in(&lab.backbone, &["link", "add", BRIDGE, "type", "bridge"])?;
        netns::ip_in(&lab.backbone, &["link", "set", BRIDGE, "up"])?;
        netns::nft_in(&lab.backbone, &nft::backbone_table())?;
        Ok(lab)
    }

    /// The lab id: the prefix of all its namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The backbone namespace (the bridge all public sides plug into).
    pub fn backbone_netns(&self) -> &str {
        &self.backbone
    }

    /// All namespaces this lab has made so far, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.state().namespaces.clone()
    }

    /// The hosts added so far.
    pub fn hosts(&self) -> Vec<LabHost> {
        self.state().hosts.clone()
    }

    /// The host with this name, if any.
    pub fn host(&self, name: &str) -> Option<LabHost> {
        self.state().hosts.iter().find(|h| h.name == name).cloned()
    }

    /// Adds a host directly on the backbone with address `ip` (in 198.51.100.0/24) on
    /// `eth0`, with `lo` up. Host names are 1–24 of `[A-Za-z0-9_-]`, unique per lab.
    pub fn add_public_host(&self, name: &str, ip: Ipv4Addr) -> Result<LabHost, LabError> {
        self.check_new_host(name, ip)?;
        let netns = format!("{}.h.{name}", self.id);
        self.add_namespace(&netns)?;
        let port = self.plug_into_backbone(&netns, HOST_IF)?;
        let cidr = format!("{ip}/24");
        netns::ip_in(&netns, &["addr", "add", &cidr, "dev", HOST_IF])?;
        netns::ip_in(&netns, &["link", "set", HOST_IF, "up"])?;
        netns::ip_in(&netns, &["link", "set", "lo", "up"])?;
        let host = LabHost {
            name: name.to_string(),
            netns,
            ip,
            private_ip: None,
            router_netns: None,
            nat: None,
            port,
        };
        self.state().hosts.push(host.clone());
        Ok(host)
    }

    /// Adds a host behind its own NAT router: the router has `public_ip` (in
    /// 198.51.100.0/24) on the backbone and 192.0.2.1 on a private segment, where the host
    /// has `private_ip` (in 192.0.2.0/24, not .0, .1 or .255) and a default route via the
    /// router. The router forwards and applies `kind` with nftables, and drops new
    /// connections from the public side to itself.
    pub fn add_nat_host(
        &self,
        name: &str,
        kind: NatKind,
        public_ip: Ipv4Addr,
        private_ip: Ipv4Addr,
    ) -> Result<LabHost, LabError> {
        check_private_ip(private_ip)?;
        self.check_new_host(name, public_ip)?;
        let router = format!("{}.r.{name}", self.id);
        let netns = format!("{}.h.{name}", self.id);
        self.add_namespace(&router)?;
        self.add_namespace(&netns)?;
        let port = self.plug_into_backbone(&router, WAN_IF)?;

        // Router: public side, private side, forwarding, NAT.
        let (wan, lan) = (format!("{public_ip}/24"), format!("{ROUTER_PRIVATE_IP}/24"));
        netns::ip_in(
            &router,
            &[
                "link", "add", LAN_IF, "type", "veth", "peer", "name", HOST_IF, "netns", &netns,
            ],
        )?;
        netns::ip_in(&router, &["addr", "add", &wan, "dev", WAN_IF])?;
        netns::ip_in(&router, &["addr", "add", &lan, "dev", LAN_IF])?;
        for dev in [WAN_IF, LAN_IF, "lo"] {
            netns::ip_in(&router, &["link", "set", dev, "up"])?;
        }
        run_in(&router, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        })?
        .map_err(|source| LabError::Io {
            what: format!("enabling IPv4 forwarding in {router}"),
            source,
        })?;
        netns::nft_in(&router, &nft::nat_ruleset(kind, public_ip))?;

        configure_private_host(&netns, private_ip)?;

        let host = LabHost {
            name: name.to_string(),
            netns,
            ip: public_ip,
            private_ip: Some(private_ip),
            router_netns: Some(router),
            nat: Some(kind),
            port,
        };
        self.state().hosts.push(host.clone());
        Ok(host)
    }

    /// Adds a host behind the NAT router of `neighbour` (a host made by
    /// [`Lab::add_nat_host`] or by this method), on the same private segment with
    /// `private_ip` (192.0.2.2-254, unused there). The hosts reach each other directly
    /// on the segment and share the router's public address, NAT behaviour and backbone
    /// port (so [`Lab::cut`] and [`Lab::set_loss`] on either act on the router). See the
    /// module documentation for the layout.
    pub fn add_host_behind(
        &self,
        name: &str,
        neighbour: &LabHost,
        private_ip: Ipv4Addr,
    ) -> Result<LabHost, LabError> {
        check_private_ip(private_ip)?;
        check_name(name)?;
        self.check_own_host(neighbour)?;
        let (Some(router), Some(kind)) = (neighbour.router_netns.clone(), neighbour.nat) else {
            return Err(LabError::BadName {
                name: neighbour.name.clone(),
                reason: "a host added behind another must share a NAT router; this one is public",
            });
        };
        let lan_index = {
            let state = self.state();
            if state.hosts.iter().any(|h| h.name == name) {
                return Err(LabError::DuplicateHost(name.to_string()));
            }
            let behind: Vec<&LabHost> = state
                .hosts
                .iter()
                .filter(|h| h.router_netns.as_deref() == Some(router.as_str()))
                .collect();
            if behind.iter().any(|h| h.private_ip == Some(private_ip)) {
                return Err(LabError::AddressInUse(private_ip));
            }
            behind.len()
        };
        if lan_index == 1 {
            // The first extra host: the private side becomes a bridge holding the
            // router's address, with the first host's veth on it.
            let lan = format!("{ROUTER_PRIVATE_IP}/24");
            netns::ip_in(&router, &["link", "add", LAN_BRIDGE, "type", "bridge"])?;
            netns::ip_in(&router, &["addr", "del", &lan, "dev", LAN_IF])?;
            netns::ip_in(&router, &["link", "set", LAN_IF, "master", LAN_BRIDGE])?;
            netns::ip_in(&router, &["addr", "add", &lan, "dev", LAN_BRIDGE])?;
            netns::ip_in(&router, &["link", "set", LAN_BRIDGE, "up"])?;
        }
        let netns = format!("{}.h.{name}", self.id);
        self.add_namespace(&netns)?;
        let veth = format!("lan{lan_index}");
        netns::ip_in(
            &router,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", HOST_IF, "netns", &netns,
            ],
        )?;
        netns::ip_in(&router, &["link", "set", &veth, "master", LAN_BRIDGE, "up"])?;
        configure_private_host(&netns, private_ip)?;
        let host = LabHost {
            name: name.to_string(),
            netns,
            ip: neighbour.ip,
            private_ip: Some(private_ip),
            router_netns: Some(router),
            nat: Some(kind),
            port: neighbour.port.clone(),
        };
        self.state().hosts.push(host.clone());
        Ok(host)
    }

    /// Starts `cmd`, which must come from `host.command(..)` (so it runs inside the host's
    /// namespace), and returns its PID. The lab keeps the child and ends it on `Drop`.
    pub fn spawn(&self, host: &LabHost, mut cmd: Command) -> Result<u32, LabError> {
        self.check_own_host(host)?;
        let args: Vec<&OsStr> = cmd.get_args().take(3).collect();
        let wrapped = cmd.get_program() == "ip"
            && args.len() == 3
            && args[0] == "netns"
            && args[1] == "exec"
            && args[2] == host.netns.as_str();
        if !wrapped {
            return Err(LabError::NotInNamespace {
                command: netns::describe(&cmd),
                netns: host.netns.clone(),
            });
        }
        let child = cmd.spawn().map_err(|source| LabError::Io {
            what: format!("starting `{}`", netns::describe(&cmd)),
            source,
        })?;
        let pid = child.id();
        self.state().children.push(child);
        Ok(pid)
    }

    /// Ends a process started by [`Lab::spawn`] (SIGTERM, up to 2 s grace, SIGKILL) and
    /// returns how it exited. PIDs this lab did not spawn are refused.
    pub fn kill(&self, pid: u32) -> Result<ExitStatus, LabError> {
        let child = self.take_child(pid)?;
        let mut ended = terminate(vec![child], KILL_GRACE);
        match ended.pop() {
            Some((_, Ok(status))) => Ok(status),
            Some((_, Err(source))) => Err(LabError::Io {
                what: format!("waiting for process {pid}"),
                source,
            }),
            None => Err(LabError::UnknownPid(pid)),
        }
    }

    /// Ends a process started by [`Lab::spawn`] at once with SIGKILL (a crash: no
    /// chance to clean up) and reaps it.
    pub fn crash(&self, pid: u32) -> Result<ExitStatus, LabError> {
        let mut child = self.take_child(pid)?;
        // An error means it already exited, which `wait` then reports.
        let _ = child.kill();
        child.wait().map_err(|source| LabError::Io {
            what: format!("waiting for process {pid}"),
            source,
        })
    }

    /// Removes a spawned process from the lab's list (its caller ends it).
    fn take_child(&self, pid: u32) -> Result<Child, LabError> {
        let mut state = self.state();
        let i = state
            .children
            .iter()
            .position(|c| c.id() == pid)
            .ok_or(LabError::UnknownPid(pid))?;
        Ok(state.children.swap_remove(i))
    }

    /// Whether a spawned process has exited (`Some(status)`) or still runs (`None`),
    /// without blocking. An exited process stays known until [`Lab::kill`] or `Drop`.
    pub fn try_wait(&self, pid: u32) -> Result<Option<ExitStatus>, LabError> {
        let mut state = self.state();
        let child = state
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .ok_or(LabError::UnknownPid(pid))?;
        child.try_wait().map_err(|source| LabError::Io {
            what: format!("checking process {pid}"),
            source,
        })
    }

    /// Cuts (`true`) or restores (`false`) the host's link: every frame into or out of its
    /// backbone port is dropped. For a NAT host this is the router's public side. While
    /// cut, the loss setting is kept but has no effect.
    pub fn cut(&self, host: &LabHost, cut: bool) -> Result<(), LabError> {
        self.update_port(host, |r| r.cut = cut)
    }

    /// Drops `percent` (0..=100) of the frames crossing the host's backbone port, chosen at
    /// random independently in each direction (nftables `numgen random`; there is no
    /// netem). A round trip through a port with loss p is lost with 1-(1-p)².
    pub fn set_loss(&self, host: &LabHost, percent: u8) -> Result<(), LabError> {
        if percent > 100 {
            return Err(LabError::BadLoss(percent));
        }
        self.update_port(host, |r| r.loss = percent)
    }

    /// Makes the NAT router of `host` forget its mappings and hand out new public ports
    /// (a router reboot, a carrier-grade NAT rebinding): the host's next datagrams
    /// leave from other ports of the same public address, and what others still send to
    /// the old ports is dropped. The router's `masquerade` moves to a port range it has
    /// not used before (20000-20999, then 21000-21999, ...), and its conntrack table is
    /// flushed by taking its public address away and giving it back (Linux forgets the
    /// masqueraded flows of an address that goes away). For port-restricted and
    /// symmetric routers; a full-cone router's `snat` is not rebound this way.
    pub fn rebind_nat(&self, host: &LabHost) -> Result<(), LabError> {
        let refuse = |reason| LabError::CannotRebind {
            host: host.name.clone(),
            reason,
        };
        let (Some(router), Some(kind)) = (&host.router_netns, host.nat) else {
            return Err(refuse("it is not behind a NAT router"));
        };
        if kind == NatKind::EndpointIndependent {
            return Err(refuse(
                "only masquerading (port-restricted, symmetric) routers",
            ));
        }
        let range = {
            let mut state = self.state();
            let first = 20_000 + (state.rebinds % 40) * 1_000;
            state.rebinds += 1;
            (first, first + 999)
        };
        netns::nft_in(router, &nft::rebind_outbound(kind, range))?;
        let wan = format!("{}/24", host.ip);
        netns::ip_in(router, &["addr", "del", &wan, "dev", WAN_IF])?;
        netns::ip_in(router, &["addr", "add", &wan, "dev", WAN_IF])?;
        Ok(())
    }

    /// Gives a public host the IPv6 address `ip` (in the documentation prefix
    /// 2001:db8::/32, as a /64 on its interface) besides its IPv4 one, with IPv6 switched
    /// on in its namespace and duplicate address detection skipped (usable at once).
    /// Hosts on one /64 reach each other over the backbone bridge.
    pub fn add_ipv6(&self, host: &LabHost, ip: Ipv6Addr) -> Result<(), LabError> {
        self.check_own_host(host)?;
        if ip.segments()[..2] != [0x2001, 0x0db8] || host.router_netns.is_some() {
            return Err(LabError::BadAddress {
                ip: ip.into(),
                reason: "an IPv6 address must be in 2001:db8::/32, on a public host",
            });
        }
        host.run(|| {
            for conf in ["all", "default", HOST_IF] {
                let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                std::fs::write(&path, "0").map_err(|source| LabError::Io {
                    what: format!("switching IPv6 on ({path}); is IPv6 disabled at boot?"),
                    source,
                })?;
            }
            Ok(())
        })??;
        let cidr = format!("{ip}/64");
        netns::ip_in(
            &host.netns,
            &["-6", "addr", "add", &cidr, "dev", HOST_IF, "nodad"],
        )?;
        Ok(())
    }

    /// Removes every IPv4 address of a public host's interface, so it speaks IPv6 only
    /// (give it one with [`add_ipv6`](Self::add_ipv6)).
    pub fn drop_ipv4(&self, host: &LabHost) -> Result<(), LabError> {
        self.check_own_host(host)?;
        netns::ip_in(&host.netns, &["-4", "addr", "flush", "dev", HOST_IF])?;
        Ok(())
    }

    /// Blocks (or, with `false`, unblocks) every UDP packet `host` sends or receives, as
    /// a firewall that lets only TCP out would (nftables in the host's own namespace).
    pub fn block_udp(&self, host: &LabHost, blocked: bool) -> Result<(), LabError> {
        self.check_own_host(host)?;
        if blocked {
            netns::nft_in(&host.netns, &nft::block_udp())
        } else {
            netns::nft_in(
                &host.netns,
                &format!("delete table inet {}\n", nft::UDP_BLOCK_TABLE),
            )
        }
    }

    /// Makes the path through `host`'s NAT router a PMTU black hole: both of the router's
    /// links carry IP packets of at most `mtu` bytes (68..1500), and the router's ICMP
    /// "fragmentation needed" errors are dropped, so a packet too big for the path
    /// vanishes in either direction and nobody says why (a tunnel whose operator filters
    /// ICMP). The host's own interface keeps 1,500 bytes, so its kernel does not know
    /// either. Hosts without a router are refused: their only link is their own.
    pub fn black_hole(&self, host: &LabHost, mtu: u16) -> Result<(), LabError> {
        self.check_own_host(host)?;
        let Some(router) = &host.router_netns else {
            return Err(LabError::BadName {
                name: host.name.clone(),
                reason: "a PMTU black hole needs a host behind a NAT router",
            });
        };
        if !(68..=1500).contains(&mtu) {
            return Err(LabError::BadMtu(mtu));
        }
        let mtu = mtu.to_string();
        // A second host behind the router makes its private side a bridge.
        let private = if netns::ip_in(router, &["link", "show", LAN_BRIDGE]).is_ok() {
            LAN_BRIDGE
        } else {
            LAN_IF
        };
        for dev in [WAN_IF, private] {
            netns::ip_in(router, &["link", "set", dev, "mtu", &mtu])?;
        }
        netns::nft_in(router, &nft::silence_pmtu_errors())
    }

    /// Deletes the namespaces of labs tagged `tag` whose process has died (a test binary
    /// that was killed never ran `Drop`; `skylan demo` calls this before building its lab).
    /// Only names `skl-<tag>-<pid>-...` with a dead PID are touched; labs of live
    /// processes, and of other tags, are left alone. Returns the names deleted.
    pub fn sweep_stale(tag: &str) -> Result<Vec<String>, LabError> {
        let mut deleted = Vec::new();
        for name in list_namespaces()? {
            match lab_owner(&name) {
                Some((t, pid)) if t == tag && !pid_alive(pid) => {}
                _ => continue,
            }
            netns::run(Command::new("ip").args(["netns", "del", &name]))?;
            deleted.push(name);
        }
        Ok(deleted)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the bookkeeping usable (each update is a
        // single push or remove), so a poisoned lock is taken over, not propagated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_namespace(&self, name: &str) -> Result<(), LabError> {
        netns::run(Command::new("ip").args(["netns", "add", name]))?;
        self.state().namespaces.push(name.to_string());
        Ok(())
    }

    /// Creates a veth from `netns` (named `dev` there) to a new backbone port, attaches the
    /// port to the bridge with an empty rule chain, and returns the port name.
    fn plug_into_backbone(&self, netns: &str, dev: &str) -> Result<String, LabError> {
        let port = {
            let mut state = self.state();
            state.next_port += 1;
            format!("p{}", state.next_port - 1)
        };
        netns::ip_in(
            netns,
            &[
                "link",
                "add",
                dev,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.backbone,
            ],
        )?;
        netns::ip_in(
            &self.backbone,
            &["link", "set", &port, "master", BRIDGE, "up"],
        )?;
        netns::nft_in(&self.backbone, &nft::add_port(&port))?;
        self.state()
            .port_rules
            .push((port.clone(), PortRule::default()));
        Ok(port)
    }

    fn check_new_host(&self, name: &str, public_ip: Ipv4Addr) -> Result<(), LabError> {
        check_name(name)?;
        let [a, b, c, d] = public_ip.octets();
        if [a, b, c] != [198, 51, 100] || matches!(d, 0 | 255) {
            return Err(LabError::BadAddress {
                ip: public_ip.into(),
                reason: "a public address must be in 198.51.100.1-198.51.100.254",
            });
        }
        let mut state = self.state();
        if state.hosts.iter().any(|h| h.name == name) {
            return Err(LabError::DuplicateHost(name.to_string()));
        }
        if !state.used_ips.insert(public_ip) {
            return Err(LabError::AddressInUse(public_ip));
        }
        Ok(())
    }

    fn check_own_host(&self, host: &LabHost) -> Result<(), LabError> {
        if self.state().hosts.iter().any(|h| h == host) {
            Ok(())
        } else {
            Err(LabError::UnknownHost(host.name.clone()))
        }
    }

    fn update_port(
        &self,
        host: &LabHost,
        change: impl FnOnce(&mut PortRule),
    ) -> Result<(), LabError> {
        self.check_own_host(host)?;
        let rule = {
            let mut state = self.state();
            let Some((_, rule)) = state.port_rules.iter_mut().find(|(p, _)| *p == host.port) else {
                return Err(LabError::UnknownHost(host.name.clone()));
            };
            change(rule);
            *rule
        };
        netns::nft_in(
            &self.backbone,
            &nft::set_port(&host.port, rule.cut, rule.loss),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let children = std::mem::take(&mut state.children);
        for (pid, result) in terminate(children, KILL_GRACE) {
            if let Err(e) = result {
                eprintln!("lab {}: could not reap process {pid}: {e}", self.id);
            }
        }
        for name in state.namespaces.drain(..).rev() {
            if let Err(e) = netns::run(Command::new("ip").args(["netns", "del", &name])) {
                eprintln!("lab {}: could not delete namespace {name}: {e}", self.id);
            }
        }
    }
}

/// Sends SIGTERM to every child, waits up to `grace` for all to exit, then SIGKILLs the
/// rest and reaps them. The children are still owned (unreaped), so their PIDs cannot
/// have been reused by unrelated processes.
fn terminate(mut children: Vec<Child>, grace: Duration) -> Vec<(u32, std::io::Result<ExitStatus>)> {
    let mut done = Vec::new();
    for child in &children {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: plain signal send to a child we own and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        // Reaped children leave the list; one whose state cannot be read stays for the
        // SIGKILL path, whose `wait` reports the problem.
        children.retain_mut(|c| match c.try_wait() {
            Ok(Some(status)) => {
                done.push((c.id(), Ok(status)));
                false
            }
            Ok(None) | Err(_) => true,
        });
        if children.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for mut child in children {
        // SIGKILL; an error means it already exited, which `wait` then reports.
        let _ = child.kill();
        done.push((child.id(), child.wait()));
    }
    done
}

/// The tag and PID encoded in a lab namespace name (`skl-<tag>-<pid>-<n>.<kind>...`).
/// A host name: 1–24 of `[A-Za-z0-9_-]`.
fn check_name(name: &str) -> Result<(), LabError> {
    if name.is_empty()
        || name.len() > 24
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(LabError::BadName {
            name: name.to_string(),
            reason: "a host name is 1 to 24 characters of A-Z, a-z, 0-9, _ and -",
        });
    }
    Ok(())
}

/// A host's address on a router's private segment: 192.0.2.2-254.
fn check_private_ip(private_ip: Ipv4Addr) -> Result<(), LabError> {
    let [a, b, c, d] = private_ip.octets();
    if [a, b, c] != [192, 0, 2] || matches!(d, 0 | 1 | 255) {
        return Err(LabError::BadAddress {
            ip: private_ip.into(),
            reason: "a private address must be in 192.0.2.2-192.0.2.254 (192.0.2.1 is the router)",
        });
    }
    Ok(())
}

/// A host behind a router: its private address, `lo` up, default route via the router.
fn configure_private_host(netns: &str, private_ip: Ipv4Addr) -> Result<(), LabError> {
    let cidr = format!("{private_ip}/24");
    let gateway = ROUTER_PRIVATE_IP.to_string();
    netns::ip_in(netns, &["addr", "add", &cidr, "dev", HOST_IF])?;
    netns::ip_in(netns, &["link", "set", HOST_IF, "up"])?;
    netns::ip_in(netns, &["link", "set", "lo", "up"])?;
    netns::ip_in(netns, &["route", "add", "default", "via", &gateway])?;
    Ok(())
}

fn lab_owner(netns: &str) -> Option<(&str, u32)> {
    let rest = netns.strip_prefix(LAB_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let tag = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let (n, _kind) = parts.next()?.split_once('.')?;
    n.parse::<u32>().ok()?;
    Some((tag, pid))
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Checks once per process that `ip` and `nft` can be run.
fn check_tools() -> Result<(), LabError> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        for tool in ["ip", "nft"] {
            match Command::new(tool).arg("-V").output() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(tool.to_string()),
                _ => {}
            }
        }
        Ok(())
    });
    result
        .clone()
        .map_err(|tool| LabError::MissingTool { tool })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_owner_parses_only_lab_names() {
        assert_eq!(
            lab_owner("skl-nat_probe-4242-3.h.host-with-dashes"),
            Some(("nat_probe", 4242))
        );
        assert_eq!(lab_owner("skl-t-17-0.bb"), Some(("t", 17)));
        assert_eq!(lab_owner("skl-t-17-0"), None, "no kind suffix");
        assert_eq!(lab_owner("other-t-17-0.bb"), None);
        assert_eq!(lab_owner("skl-t-x-0.bb"), None);
    }

    #[test]
    fn our_own_pid_is_alive_and_an_absurd_one_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn nat_kinds_print_their_rfc_names() {
        assert_eq!(NatKind::Symmetric.to_string(), "symmetric");
        assert!(
            NatKind::EndpointIndependent
                .to_string()
                .contains("full cone")
        );
    }
}
