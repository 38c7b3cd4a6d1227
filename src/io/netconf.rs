//! Host network configuration over rtnetlink: MTU, link up, MAC, addresses, routes and
//! bridge membership of interfaces (the TAP devices of joined networks).
//!
//! Contract:
//! - [`NetConf::new`] opens a netlink socket in the **calling thread's** network namespace
//!   and spawns its connection task on the current tokio runtime; every request goes to
//!   that namespace, whatever thread later awaits it. Dropping the `NetConf` stops the
//!   task.
//! - Interfaces are named by index ([`NetConf::link_index`] resolves a name). Errors name
//!   the operation and the interface (its name when netlink can still find it) and keep
//!   the kernel's errno ([`NetConfError::errno`]), e.g. `EEXIST` for an address or route
//!   that is already there.
//! - This is the only file that calls `rtnetlink`, whose API breaks often (pinned `=0.24`).
//!
//! Callers: the node driver when a network config arrives, and the namespace tests.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

use crate::types::Mac;

/// Why a netlink configuration request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetConfError {
    /// The netlink socket could not be opened.
    #[error(
        "opening a netlink socket: {0} (is this Linux, and does the process have CAP_NET_ADMIN?)"
    )]
    Connect(#[source] io::Error),
    /// Not inside a tokio runtime.
    #[error("NetConf::new must be called from inside a tokio runtime")]
    NoRuntime,
    /// No interface has that name in this namespace.
    #[error("no network interface named {0:?} in this network namespace")]
    NoSuchLink(String),
    /// A route that cannot be expressed (e.g. an IPv6 target via an IPv4 gateway).
    #[error("route to {target} via {via}: {reason}")]
    BadRoute {
        /// The destination prefix.
        target: IpNet,
        /// The gateway given.
        via: IpAddr,
        /// What is wrong with it.
        reason: String,
    },
    /// The kernel would not list what was asked.
    #[error("listing {what}: {source}")]
    List {
        /// What was being listed (e.g. `routes`).
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("{op} on interface {iface}: {source}")]
    Op {
        /// What was asked, with its argument (e.g. `setting MTU 1400`).
        op: String,
        /// The interface, e.g. `sky0 (index 5)` or `index 5`.
        iface: String,
        /// The kernel's answer (errno when it gave one).
        #[source]
        source: io::Error,
    },
}

impl NetConfError {
    /// The kernel's errno for a refused request (`libc::EEXIST`, `libc::ENODEV`, ...).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetConfError::Op { source, .. }
            | NetConfError::List { source, .. }
            | NetConfError::Connect(source) => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A netlink connection for configuring interfaces in one network namespace.
#[derive(Debug)]
pub struct NetConf {
    handle: rtnetlink::Handle,
    /// The task driving the socket; aborted on drop.
    connection: tokio::task::JoinHandle<()>,
}

impl NetConf {
    /// Opens a netlink socket in the calling thread's namespace and spawns its connection
    /// task on the current tokio runtime.
    pub fn new() -> Result<NetConf, NetConfError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetConfError::NoRuntime)?;
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetConfError::Connect)?;
        Ok(NetConf {
            handle,
            connection: runtime.spawn(connection),
        })
    }

    /// The index of the interface called `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, NetConfError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(NetConfError::NoSuchLink(name.to_string())),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => {
                Err(NetConfError::NoSuchLink(name.to_string()))
            }
            Err(e) => Err(NetConfError::Op {
                op: "looking up the index".into(),
                iface: name.to_string(),
                source: to_io(e),
            }),
        }
    }

    /// Sets the interface's MTU.
    pub async fn set_mtu(&self, ifindex: u32, mtu: u16) -> Result<(), NetConfError> {
        let msg = LinkUnspec::new_with_index(ifindex)
            .mtu(u32::from(mtu))
            .build();
        let result = self.handle.link().set(msg).execute().await;
        self.check(result, ifindex, || format!("setting MTU {mtu}"))
            .await
    }

    /// Brings the interface up.
    pub async fn set_up(&self, ifindex: u32) -> Result<(), NetConfError> {
        let msg = LinkUnspec::new_with_index(ifindex).up().build();
        let result = self.handle.link().set(msg).execute().await;
        self.check(result, ifindex, || "bringing the link up".into())
            .await
    }

    /// Sets the interface's MAC address.
    pub async fn set_mac(&self, ifindex: u32, mac: Mac) -> Result<(), NetConfError> {
        let msg = LinkUnspec::new_with_index(ifindex)
            .address(mac.0.to_vec())
            .build();
        let result = self.handle.link().set(msg).execute().await;
        self.check(result, ifindex, || format!("setting MAC {mac}"))
            .await
    }

    /// Makes the interface a port of the bridge `bridge_ifindex` (`ip link set .. master`).
    pub async fn set_master(&self, ifindex: u32, bridge_ifindex: u32) -> Result<(), NetConfError> {
        let msg = LinkUnspec::new_with_index(ifindex)
            .controller(bridge_ifindex)
            .build();
        let result = self.handle.link().set(msg).execute().await;
        let bridge = self.describe(bridge_ifindex).await;
        self.check(result, ifindex, || format!("adding to bridge {bridge}"))
            .await
    }

    /// Adds an address with its prefix length (`198.18.0.1/24`); the kernel also adds the
    /// prefix route. `EEXIST` if it is already there.
    pub async fn add_address(&self, ifindex: u32, addr: IpNet) -> Result<(), NetConfError> {
        let result = self
            .handle
            .address()
            .add(ifindex, addr.addr(), addr.prefix_len())
            .execute()
            .await;
        self.check(result, ifindex, || format!("adding address {addr}"))
            .await
    }

    /// Removes an address (`EADDRNOTAVAIL` if it is not there).
    pub async fn del_address(&self, ifindex: u32, addr: IpNet) -> Result<(), NetConfError> {
        let msg = match addr.addr() {
            IpAddr::V4(ip) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
                .index(ifindex)
                .address(ip, addr.prefix_len())
                .build(),
            IpAddr::V6(ip) => rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new()
                .index(ifindex)
                .address(ip, addr.prefix_len())
                .build(),
        };
        let result = self.handle.address().del(msg).execute().await;
        self.check(result, ifindex, || format!("removing address {addr}"))
            .await
    }

    /// Adds a route to `target` (host bits are ignored) out of `ifindex`, through `via` if
    /// given (otherwise on-link, scope link). `EEXIST` if it is already there.
    pub async fn add_route(
        &self,
        target: IpNet,
        via: Option<IpAddr>,
        ifindex: u32,
    ) -> Result<(), NetConfError> {
        let msg = route_message(target, via, ifindex, false)?;
        let result = self.handle.route().add(msg).execute().await;
        self.check(result, ifindex, || route_text("adding", target, via))
            .await
    }

    /// Removes the route `add_route` would add with the same arguments (whoever added it).
    pub async fn del_route(
        &self,
        target: IpNet,
        via: Option<IpAddr>,
        ifindex: u32,
    ) -> Result<(), NetConfError> {
        let msg = route_message(target, via, ifindex, true)?;
        let result = self.handle.route().del(msg).execute().await;
        self.check(result, ifindex, || route_text("removing", target, via))
            .await
    }

    /// Every route of the main routing table, IPv4 and IPv6: its destination prefix and
    /// output interface (none for multipath, blackhole and unreachable routes).
    pub async fn main_routes(&self) -> Result<Vec<MainRoute>, NetConfError> {
        let mut out = Vec::new();
        let dumps = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for request in dumps {
            let mut routes = self.handle.route().get(request).execute();
            while let Some(route) = routes.try_next().await.map_err(|e| NetConfError::List {
                what: "routes",
                source: to_io(e),
            })? {
                out.extend(main_route(&route));
            }
        }
        Ok(out)
    }

    /// Turns a netlink result into ours, naming the interface when that fails.
    async fn check(
        &self,
        result: Result<(), rtnetlink::Error>,
        ifindex: u32,
        op: impl FnOnce() -> String,
    ) -> Result<(), NetConfError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(NetConfError::Op {
                op: op(),
                iface: self.describe(ifindex).await,
                source: to_io(e),
            }),
        }
    }

    /// `name (index N)` if netlink still knows the interface, else `index N`.
    async fn describe(&self, ifindex: u32) -> String {
        let mut links = self.handle.link().get().match_index(ifindex).execute();
        let name = match links.try_next().await {
            Ok(Some(link)) => link.attributes.into_iter().find_map(|a| match a {
                rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }),
            _ => None,
        };
        match name {
            Some(n) => format!("{n} (index {ifindex})"),
            None => format!("index {ifindex} (not found)"),
        }
    }
}

impl Drop for NetConf {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A route message for the main table. For deletion, scope and protocol are wildcards
/// (as `ip route del` sends them), so a route added by someone else is found too.
fn route_message(
    target: IpNet,
    via: Option<IpAddr>,
    ifindex: u32,
    for_delete: bool,
) -> Result<rtnetlink::packet_route::route::RouteMessage, NetConfError> {
    let target = target.trunc();
    let bad = |via: IpAddr, reason: String| NetConfError::BadRoute {
        target,
        via,
        reason,
    };
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(target.addr(), target.prefix_len())
        .map_err(|e| NetConfError::BadRoute {
            target,
            via: target.addr(),
            reason: e.to_string(),
        })?
        .output_interface(ifindex);
    if let Some(gw) = via {
        if target.addr().is_ipv6() && gw.is_ipv4() {
            return Err(bad(gw, "an IPv6 route needs an IPv6 gateway".into()));
        }
        builder = builder.gateway(gw).map_err(|e| bad(gw, e.to_string()))?;
    }
    let mut msg = builder.build();
    if for_delete {
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
    } else if via.is_none() {
        msg.header.scope = RouteScope::Link;
    }
    Ok(msg)
}

/// A route of the main table, as [`NetConf::main_routes`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainRoute {
    /// The destination prefix (`0.0.0.0/0` for a default route).
    pub target: IpNet,
    /// The output interface, when the route has one.
    pub ifindex: Option<u32>,
}

/// The route in `msg` if it belongs to the main table.
fn main_route(msg: &rtnetlink::packet_route::route::RouteMessage) -> Option<MainRoute> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
    let mut table = u32::from(msg.header.table);
    let mut destination = None;
    let mut ifindex = None;
    for attribute in &msg.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                destination = Some(IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                destination = Some(IpAddr::V6(*ip))
            }
            RouteAttribute::Oif(index) => ifindex = Some(*index),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let destination = match (destination, msg.header.address_family) {
        (Some(ip), _) => ip,
        (None, rtnetlink::packet_route::AddressFamily::Inet) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, rtnetlink::packet_route::AddressFamily::Inet6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (None, _) => return None,
    };
    let target = IpNet::new(destination, msg.header.destination_prefix_length).ok()?;
    Some(MainRoute { target, ifindex })
}

fn route_text(verb: &str, target: IpNet, via: Option<IpAddr>) -> String {
    match via {
        Some(gw) => format!("{verb} route {} via {gw}", target.trunc()),
        None => format!("{verb} route {}", target.trunc()),
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The kernel's errno as an `io::Error` (so it prints as e.g. "File exists (os error
/// 17)"), or the library's own message.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match errno_of(&e) {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::offload;
    use crate::io::tap::{self, Queues, Tap};
    use crate::lab::{Lab, require_root, run_in};
    use std::process::Command;
    use std::time::Duration;

    const TAP_MAC: Mac = Mac([0x02, 0x5a, 0x00, 0x00, 0x00, 0x01]);
    const NEW_MAC: Mac = Mac([0x02, 0x5a, 0x00, 0x00, 0x00, 0x02]);
    /// The MAC of the pretend peer on the far side of the TAP.
    const PEER_MAC: [u8; 6] = [0x02, 0x5a, 0x00, 0x00, 0x00, 0x99];
    const TAP_IP: [u8; 4] = [198, 18, 0, 1];
    const PEER_IP: [u8; 4] = [198, 18, 0, 2];

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(NetConf::new(), Err(NetConfError::NoRuntime)));
    }

    #[test]
    fn impossible_routes_are_refused_before_reaching_the_kernel() {
        let err = route_message(
            "2001:db8::/32".parse().unwrap(),
            Some("198.18.0.1".parse().unwrap()),
            1,
            false,
        )
        .unwrap_err();
        assert!(matches!(err, NetConfError::BadRoute { .. }), "{err}");
        // Host bits in the target are dropped rather than refused by the kernel.
        let msg = route_message("198.18.7.9/24".parse().unwrap(), None, 1, false).unwrap();
        assert_eq!(msg.header.destination_prefix_length, 24);
        assert_eq!(msg.header.scope, RouteScope::Link);
    }

    /// Runs `f` with a current-thread runtime on a thread inside `netns`.
    fn in_netns<R: Send>(netns: &str, f: impl AsyncFnOnce() -> R + Send) -> R {
        run_in(netns, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a current-thread runtime");
            rt.block_on(f())
        })
        .expect("entering the lab namespace")
    }

    /// `ip -j ARGS` run in the current thread's namespace, parsed.
    fn ip_json(args: &[&str]) -> serde_json::Value {
        let out = Command::new("ip").arg("-j").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[test]
    fn configures_a_tap_in_a_namespace_and_exchanges_frames_through_it() {
        if !require_root(
            "io::netconf::configures_a_tap_in_a_namespace_and_exchanges_frames_through_it",
        ) {
            return;
        }
        let lab = Lab::new("netconf").unwrap();
        let host = lab
            .add_public_host("a", "198.51.100.41".parse().unwrap())
            .unwrap();
        in_netns(&host.netns, async || {
            let tap = Tap::create("sky0", 1400, TAP_MAC, Queues::One).unwrap();
            let nc = NetConf::new().unwrap();
            let idx = nc.link_index("sky0").await.unwrap();
            assert_eq!(idx, tap.index());
            assert!(matches!(
                nc.link_index("nosuch0").await,
                Err(NetConfError::NoSuchLink(_))
            ));

            nc.set_mtu(idx, 1280).await.unwrap();
            nc.set_mac(idx, NEW_MAC).await.unwrap();
            nc.set_up(idx).await.unwrap();
            let net: IpNet = "198.18.0.1/24".parse().unwrap();
            nc.add_address(idx, net).await.unwrap();
            let dup = nc.add_address(idx, net).await.unwrap_err();
            assert_eq!(dup.errno(), Some(libc::EEXIST), "{dup}");
            let text = dup.to_string();
            assert!(
                text.contains("sky0") && text.contains("198.18.0.1/24"),
                "{text}"
            );

            let via_target: IpNet = "198.18.8.0/24".parse().unwrap();
            let gw: IpAddr = "198.18.0.254".parse().unwrap();
            let onlink: IpNet = "198.19.0.0/16".parse().unwrap();
            nc.add_route(via_target, Some(gw), idx).await.unwrap();
            nc.add_route(onlink, None, idx).await.unwrap();

            let link = &ip_json(&["link", "show", "dev", "sky0"])[0];
            assert_eq!(link["mtu"], 1280, "{link}");
            assert_eq!(link["address"], NEW_MAC.to_string(), "{link}");
            assert!(
                link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
                "{link}"
            );
            let addrs = &ip_json(&["addr", "show", "dev", "sky0"])[0]["addr_info"];
            assert!(
                addrs
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["local"] == "198.18.0.1" && a["prefixlen"] == 24),
                "{addrs}"
            );
            let routes = ip_json(&["route", "show", "dev", "sky0"]);
            let routes = routes.as_array().unwrap();
            assert!(
                routes
                    .iter()
                    .any(|r| r["dst"] == "198.18.8.0/24" && r["gateway"] == "198.18.0.254"),
                "{routes:?}"
            );
            assert!(
                routes
                    .iter()
                    .any(|r| r["dst"] == "198.19.0.0/16" && r["scope"] == "link"),
                "{routes:?}"
            );

            // Frames both ways: the kernel ARPs for a peer and pings it; we answer both
            // through the TAP and the ping succeeds.
            let mut ping = Command::new("ping")
                .args(["-c", "1", "-W", "5", "198.18.0.2"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("ping (apt-get install -y iputils-ping)");
            let arp = read_until(&tap, |f| is_arp_request_for(f, PEER_IP)).await;
            assert_eq!(&arp[6..12], &NEW_MAC.0, "ARP request sent from the new MAC");
            assert_eq!(&arp[28..32], &TAP_IP, "ARP sender IP");
            tap.send(&arp_reply(&arp)).await.unwrap();
            let echo = read_until(&tap, is_echo_request).await;
            assert_eq!(
                &echo[0..6],
                &PEER_MAC,
                "echo request sent to the learned MAC"
            );
            tap.send(&echo_reply(&echo)).await.unwrap();
            let status = wait_child(&mut ping).await;
            assert!(
                status.success(),
                "ping did not get our echo reply: {status}"
            );

            // What the host answers while a frame is being written is there to read at
            // once, before the runtime hears of it: the peer asks for our address.
            let mut message = offload::PLAIN.to_vec();
            message.extend_from_slice(&arp_request(TAP_IP));
            tap.try_write_message(&message).unwrap();
            let mut buf = vec![0u8; tap::MESSAGE_LEN];
            let answer = async {
                loop {
                    match tap.read_message_now(&mut buf) {
                        Ok(n) if is_arp_reply_to_peer(&buf[offload::VNET_HDR_LEN..n]) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            tokio::task::yield_now().await
                        }
                        Err(e) => panic!("reading the TAP at once: {e}"),
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(10), answer)
                .await
                .expect("no ARP reply read from the TAP");

            nc.del_route(via_target, Some(gw), idx).await.unwrap();
            nc.del_route(onlink, None, idx).await.unwrap();
            let again = nc.del_route(onlink, None, idx).await.unwrap_err();
            assert_eq!(again.errno(), Some(libc::ESRCH), "{again}");
            let routes = ip_json(&["route", "show", "dev", "sky0"]);
            assert!(
                routes
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["dst"] != "198.18.8.0/24" && r["dst"] != "198.19.0.0/16"),
                "{routes}"
            );
            nc.del_address(idx, net).await.unwrap();
            let addrs = &ip_json(&["addr", "show", "dev", "sky0"])[0]["addr_info"];
            assert!(
                addrs
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| a["local"] != "198.18.0.1"),
                "{addrs}"
            );
            assert!(nc.del_address(idx, net).await.is_err());

            // Bridge membership.
            let out = Command::new("ip")
                .args(["link", "add", "br9", "type", "bridge"])
                .output()
                .unwrap();
            assert!(out.status.success());
            let br = nc.link_index("br9").await.unwrap();
            nc.set_master(idx, br).await.unwrap();
            let link = &ip_json(&["link", "show", "dev", "sky0"])[0];
            assert_eq!(link["master"], "br9", "{link}");
            let err = nc.set_mtu(99_999, 1400).await.unwrap_err();
            assert!(err.to_string().contains("index 99999"), "{err}");
        });
    }

    async fn read_until(tap: &Tap, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let read = async {
            loop {
                let n = tap.recv(&mut buf).await.unwrap();
                if want(&buf[..n]) {
                    return buf[..n].to_vec();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the expected frame never came out of the TAP")
    }

    async fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
        for _ in 0..500 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        child.wait().unwrap()
    }

    fn is_arp_request_for(f: &[u8], ip: [u8; 4]) -> bool {
        f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1] && f[38..42] == ip
    }

    fn arp_reply(req: &[u8]) -> Vec<u8> {
        let mut r = Vec::with_capacity(42);
        r.extend_from_slice(&req[6..12]); // to the asker
        r.extend_from_slice(&PEER_MAC);
        r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        r.extend_from_slice(&PEER_MAC);
        r.extend_from_slice(&PEER_IP);
        r.extend_from_slice(&req[22..28]); // asker's MAC
        r.extend_from_slice(&req[28..32]); // asker's IP
        r
    }

    /// An ARP request from the peer for `ip`.
    fn arp_request(ip: [u8; 4]) -> Vec<u8> {
        let mut r = Vec::with_capacity(42);
        r.extend_from_slice(&[0xff; 6]);
        r.extend_from_slice(&PEER_MAC);
        r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        r.extend_from_slice(&PEER_MAC);
        r.extend_from_slice(&PEER_IP);
        r.extend_from_slice(&[0; 6]);
        r.extend_from_slice(&ip);
        r
    }

    fn is_arp_reply_to_peer(f: &[u8]) -> bool {
        f.len() >= 42
            && f[0..6] == PEER_MAC
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 2]
            && f[28..32] == TAP_IP
    }

    fn is_echo_request(f: &[u8]) -> bool {
        if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[23] != 1 {
            return false;
        }
        let ihl = usize::from(f[14] & 0x0f) * 4;
        f[30..34] == PEER_IP && f.len() > 14 + ihl && f[14 + ihl] == 8
    }

    fn echo_reply(req: &[u8]) -> Vec<u8> {
        let mut r = req.to_vec();
        r[0..6].copy_from_slice(&req[6..12]);
        r[6..12].copy_from_slice(&PEER_MAC);
        let ihl = usize::from(r[14] & 0x0f) * 4;
        let (ip, icmp) = r[14..].split_at_mut(ihl);
        ip[12..16].copy_from_slice(&req[30..34]);
        ip[16..20].copy_from_slice(&req[26..30]);
        ip[8] = 64;
        ip[10..12].fill(0);
        let sum = checksum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        icmp[0] = 0;
        icmp[2..4].fill(0);
        let sum = checksum(icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        r
    }

    /// The Internet checksum (RFC 1071).
    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}
