//! The node's and root's *outside*: one UDP socket, read and written in batches.
//!
//! Contract:
//! - [`UdpIo::bind`] opens a non-blocking socket registered with the **calling
//!   thread's** tokio runtime, enlarges its buffers, and turns on UDP generic receive
//!   offload (`UDP_GRO`) where the kernel has it. With `shared` it sets `SO_REUSEPORT`
//!   before binding, so the packet workers of one node each bind the same port and the
//!   kernel spreads remote endpoints over their sockets. Datagrams leave with the
//!   don't-fragment bit set and the kernel's path MTU ignored (`IP_PMTUDISC_PROBE`): the
//!   node finds each route's MTU with its own probes.
//! - [`UdpIo::bind_port`] is what daemons use: one *dual-stack* socket on `[::]:port`
//!   (`IPV6_V6ONLY` off), which speaks IPv4 and IPv6 through the same port, or an IPv4
//!   socket on `0.0.0.0:port` when the host has no IPv6 at all. On a dual-stack socket
//!   IPv4 peers appear to the kernel as IPv4-mapped addresses (`::ffff:a.b.c.d`); this
//!   module translates both ways, so callers only ever see and use plain IPv4 and IPv6
//!   endpoints.
//! - [`UdpIo::try_recv_batch`] takes what is ready with one `recvmmsg` (up to
//!   [`RECV_BATCH`] messages, each up to 64 KiB): a message the kernel coalesced is cut
//!   back into its datagrams by the segment size the kernel reports, so callers always
//!   see single datagrams exactly as the peer sent them.
//! - [`UdpIo::send_batch`] sends a run of datagrams with one `sendmmsg`: consecutive
//!   datagrams to the same endpoint whose sizes allow it go as one message with a UDP
//!   segmentation offload (`UDP_SEGMENT`) size, so the kernel cuts them on the way out
//!   (a full-size frame's two fragments and the next frame's, in one system call).
//!   When the kernel refuses segmentation offload the socket falls back to one message
//!   per datagram for the rest of its life. Datagrams a destination refuses (no route,
//!   ...) are dropped and counted, as a lossy network would.
//! - The socket is registered with the runtime for readability only: a send that frees
//!   buffer space wakes nobody (a socket registered for writability too gets an event
//!   for every datagram the kernel lets go of). A batch shorter than [`RECV_BATCH`]
//!   emptied the queue, so the readiness is cleared at once instead of by another
//!   `recvmmsg` that would find nothing. Only when the send buffer is full does a
//!   send wait for writability, on a duplicate of the descriptor registered for that
//!   wait alone.
//! - Nothing here parses or authenticates: it moves bytes. The caller (a driver) owns
//!   the socket; it is not shared between threads.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use futures::FutureExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::types::{Endpoint, Transmit};

/// Messages taken by one `recvmmsg`.
pub const RECV_BATCH: usize = 8;
/// Bytes of one receive buffer: the largest coalesced message the kernel hands over.
pub const RECV_BUF_LEN: usize = 65_536;
/// Messages given to one `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Most datagrams the kernel cuts out of one message (`UDP_MAX_SEGMENTS` on older kernels).
const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one segmented message (an IPv4 datagram's limit, with room
/// for headers).
const MAX_SEGMENTED_BYTES: usize = 65_000;
/// Socket buffer size asked for: bursts of full-size frames arrive as two fragments
/// each, and the kernel's default (about 200 KiB) overflows under TCP load. With 4 MiB
/// the receiver still dropped 0.2 % of datagrams with 4 TCP streams (1,550
/// retransmits in 15 s); with 16 MiB none (`benches/e2e.sh`).
pub const SOCKET_BUFFER: usize = 16 << 20;

// Not in every libc target's constants; the values are the kernel's (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Datagrams and drops seen by a [`UdpIo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// `recvmmsg`/`sendmmsg` calls that moved at least one message.
    pub syscalls: u64,
    /// Datagrams a destination refused, or that failed to send.
    pub send_errors: u64,
    /// Messages the kernel had coalesced (more than one datagram each).
    pub coalesced_in: u64,
    /// Messages sent with a segmentation size (more than one datagram each).
    pub coalesced_out: u64,
}

/// A UDP socket with batched, offloaded receive and send. See the module documentation.
pub struct UdpIo {
    socket: AsyncFd<std::net::UdpSocket>,
    local: Endpoint,
    /// A dual-stack socket: IPv4 destinations are given to the kernel IPv4-mapped.
    dual: bool,
    gso: bool,
    recv: RecvBuffers,
    stats: UdpStats,
}

impl UdpIo {
    /// Binds `addr` in the calling thread's runtime (with `SO_REUSEPORT` when `shared`),
    /// enlarges the buffers and enables GRO (both best effort). An unspecified IPv6
    /// address binds a dual-stack socket (see the module documentation).
    pub async fn bind(addr: SocketAddr, shared: bool) -> io::Result<UdpIo> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let dual = match addr {
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                socket.set_only_v6(false)?;
                true
            }
            _ => false,
        };
        if shared {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        set_socket_buffers(&socket);
        // Best effort: without GRO every datagram is its own message.
        let _ = set_int_option(&socket, libc::SOL_UDP, UDP_GRO, 1);
        // Don't fragment, and never mind the kernel's path MTU: the node probes each
        // route's MTU itself (`node::control::pmtu`) and cuts packets to fit, so a path
        // that drops ICMP cannot hide its size, and no router fragments our datagrams.
        // A dual-stack socket needs both: the IPv4 option governs its IPv4 traffic.
        let v4 = (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        );
        let v6 = (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        );
        let options: &[_] = match (addr, dual) {
            (SocketAddr::V4(_), _) => &[v4],
            (SocketAddr::V6(_), false) => &[v6],
            (SocketAddr::V6(_), true) => &[v4, v6],
        };
        for (level, name, value) in options {
            if set_int_option(&socket, *level, *name, *value).is_err() {
                tracing::debug!("could not set the don't-fragment bit on the UDP socket");
            }
        }
        let local = Endpoint(socket.local_addr()?);
        Ok(UdpIo {
            socket: register(socket, Interest::READABLE)?,
            local,
            dual,
            gso: true,
            recv: RecvBuffers::new(),
            stats: UdpStats::default(),
        })
    }

    /// Binds `port` on every address of both families: a dual-stack socket on
    /// `[::]:port`, or `0.0.0.0:port` when the host cannot open an IPv6 socket (IPv6
    /// disabled at boot). See [`bind`](Self::bind) for `shared`.
    pub async fn bind_port(port: u16, shared: bool) -> io::Result<UdpIo> {
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        match UdpIo::bind(any6, shared).await {
            Ok(udp) => Ok(udp),
            Err(e) if no_ipv6(&e) => {
                tracing::info!("no IPv6 on this host ({e}): binding IPv4 only");
                UdpIo::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), shared).await
            }
            Err(e) => Err(e),
        }
    }

    /// True when the socket speaks IPv6 (a dual-stack or IPv6 socket).
    pub fn has_ipv6(&self) -> bool {
        self.local.0.is_ipv6()
    }

    /// Sets the receive buffer to `bytes` (past the system limit when privileged), in
    /// place of the large default; failures are logged and otherwise ignored.
    pub fn set_receive_buffer(&mut self, bytes: usize) {
        let buffer = (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF);
        if set_buffer(&self.socket, buffer, bytes).is_err() {
            tracing::debug!("could not set the UDP receive buffer");
        }
    }

    /// The bound address.
    pub fn local(&self) -> Endpoint {
        self.local
    }

    /// Counters.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Ready when a datagram may be waiting.
    pub fn poll_readable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.socket.poll_read_ready(cx).map_ok(|_| ())
    }

    /// Waits until a datagram may be ready (then call [`try_recv_batch`](Self::try_recv_batch)).
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await.map(|_| ())
    }

    /// Receives what is ready (one `recvmmsg`) and calls `each` with every datagram and
    /// its source; the bytes are the caller's to change (decrypt in place) until it
    /// returns. Returns how many datagrams it delivered; `WouldBlock` when none.
    pub fn try_recv_batch(
        &mut self,
        mut each: impl FnMut(Endpoint, &mut [u8]),
    ) -> io::Result<usize> {
        let bufs = &mut self.recv;
        let Some(ready) = self.socket.readable().now_or_never() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let mut ready = ready?;
        let Ok(got) = ready.try_io(|s| bufs.recvmmsg(s.as_raw_fd())) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let got = got?;
        if got < RECV_BATCH {
            // The queue is empty; a datagram arriving from now on is a new event.
            ready.clear_ready();
        }
        self.stats.syscalls += 1;
        let mut delivered = 0;
        for i in 0..got {
            let (from, data, segment) = self.recv.message(i);
            let Some(from) = from else { continue };
            let segment = segment.filter(|&s| s > 0 && s < data.len());
            if segment.is_some() {
                self.stats.coalesced_in += 1;
            }
            let size = segment.unwrap_or(data.len().max(1));
            for datagram in data.chunks_mut(size) {
                each(from, datagram);
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Waits until the send buffer has room, on a duplicate of the socket registered for
    /// writability while it waits (see the module documentation).
    async fn writable(&self) -> io::Result<()> {
        let dup = register(self.socket.get_ref().try_clone()?, Interest::WRITABLE)?;
        dup.writable().await.map(|_| ())
    }

    /// Sends every transmit in `queue`, batching and segmenting where it can; waits
    /// while the socket buffer is full. `queue` keeps the (sent or dropped) transmits so
    /// the caller can reuse their buffers; it must drain it before the next call.
    pub async fn send_batch(&mut self, queue: &mut [Transmit]) {
        let mut start = 0;
        while start < queue.len() {
            let groups = plan_groups(&queue[start..], self.gso, SEND_BATCH);
            let fd = self.socket.as_raw_fd();
            let result = sendmmsg(fd, &queue[start..], &groups, self.gso, self.dual);
            match result {
                Ok(sent_groups) => {
                    self.stats.syscalls += 1;
                    for g in &groups[..sent_groups] {
                        if g.count > 1 {
                            self.stats.coalesced_out += 1;
                        }
                        start += g.count;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.writable().await {
                        tracing::debug!("waiting to send: {e}");
                        break;
                    }
                }
                Err(e) if self.gso && groups[0].count > 1 && gso_refused(&e) => {
                    tracing::info!(
                        "UDP segmentation offload refused ({e}); sending datagrams one by one"
                    );
                    self.gso = false;
                }
                Err(e) => {
                    // The first message failed: drop it, keep the rest.
                    tracing::debug!(to = %queue[start].destination, "udp send: {e}");
                    self.stats.send_errors += groups[0].count as u64;
                    start += groups[0].count;
                }
            }
        }
    }
}

/// One message of a `sendmmsg`: `count` consecutive transmits to one destination,
/// segmented at `segment` bytes when more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    count: usize,
    segment: usize,
}

/// Splits the head of `queue` into at most `max_groups` messages. A datagram joins the
/// current group when it goes to the same destination, is no longer than the group's
/// segment size, and the group's last datagram was full-size (the kernel cuts every
/// segment at that size; only the last may be shorter).
fn plan_groups(queue: &[Transmit], gso: bool, max_groups: usize) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut bytes = 0;
    let mut last_short = false;
    for (i, t) in queue.iter().enumerate() {
        let len = t.contents.len();
        if let Some(g) = groups.last_mut() {
            let prev = &queue[i - 1];
            let joins = gso
                && prev.destination == t.destination
                && len <= g.segment
                && !last_short
                && g.count < MAX_SEGMENTS
                && bytes + len <= MAX_SEGMENTED_BYTES;
            if joins {
                g.count += 1;
                bytes += len;
                last_short = len < g.segment;
                continue;
            }
        }
        if groups.len() == max_groups {
            break;
        }
        groups.push(Group {
            count: 1,
            segment: len,
        });
        bytes = len;
        last_short = false;
    }
    groups
}

/// Errors with which a kernel or device says it cannot segment this message.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

/// True when `e` says the host has no IPv6 (the family or its addresses are missing).
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Space for one `UDP_SEGMENT`/`UDP_GRO` control message (an int at most).
const CMSG_LEN: usize = 32;

/// Sends `groups` (taken in order from the head of `queue`) with one `sendmmsg`;
/// returns how many groups the kernel took.
fn sendmmsg(
    fd: i32,
    queue: &[Transmit],
    groups: &[Group],
    gso: bool,
    dual: bool,
) -> io::Result<usize> {
    let datagrams: usize = groups.iter().map(|g| g.count).sum();
    let mut iov: Vec<libc::iovec> = queue[..datagrams]
        .iter()
        .map(|t| libc::iovec {
            iov_base: t.contents.as_ptr() as *mut libc::c_void,
            iov_len: t.contents.len(),
        })
        .collect();
    let mut addrs: Vec<RawAddr> = Vec::with_capacity(groups.len());
    let mut cmsgs: Vec<[u64; CMSG_LEN / 8]> = vec![[0; CMSG_LEN / 8]; groups.len()];
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..groups.len()).map(|_| unsafe { zeroed() }).collect();
    let mut first = 0;
    for (i, g) in groups.iter().enumerate() {
        addrs.push(RawAddr::new(queue[first].destination.0, dual));
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_iov = iov[first..].as_mut_ptr();
        hdr.msg_iovlen = g.count as _;
        if gso && g.count > 1 {
            let cmsg = cmsgs[i].as_mut_ptr().cast::<u8>();
            // SAFETY: the buffer is CMSG_LEN bytes, aligned for cmsghdr (u64), which is
            // more than CMSG_SPACE(2); the pointers stay valid for the whole call.
            unsafe {
                hdr.msg_control = cmsg.cast();
                hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                let size = u16::try_from(g.segment).unwrap_or(u16::MAX);
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
            }
        }
        first += g.count;
    }
    for (msg, addr) in msgs.iter_mut().zip(addrs.iter()) {
        msg.msg_hdr.msg_name = addr.as_ptr();
        msg.msg_hdr.msg_namelen = addr.len;
    }
    // SAFETY: every msghdr points into `iov`, `addrs` and `cmsgs`, which outlive the
    // call and are not moved during it; the kernel only reads them.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A socket address in the kernel's layout.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn as_ptr(&self) -> *mut libc::c_void {
        (&self.storage as *const libc::sockaddr_storage)
            .cast_mut()
            .cast()
    }

    /// `addr` in the kernel's layout; for a dual-stack socket (`dual`) an IPv4 address
    /// is written IPv4-mapped.
    fn new(addr: SocketAddr, dual: bool) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let addr = match addr {
            SocketAddr::V4(a) if dual => {
                SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
            }
            other => other,
        };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// Reads a socket address the kernel filled in; `None` for families we do not speak.
fn endpoint_of(storage: &libc::sockaddr_storage) -> Option<Endpoint> {
    let ptr = storage as *const libc::sockaddr_storage;
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(ptr.cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(Endpoint(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ptr.cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            // An IPv4 peer of a dual-stack socket: we speak of it as IPv4.
            if let Some(v4) = ip.to_ipv4_mapped() {
                return Some(Endpoint(SocketAddr::V4(SocketAddrV4::new(v4, port))));
            }
            Some(Endpoint(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            ))))
        }
        _ => None,
    }
}

/// The buffers of one `recvmmsg`, reused for every call.
struct RecvBuffers {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_LEN / 8]>,
    lens: Vec<usize>,
    segments: Vec<Option<usize>>,
}

impl RecvBuffers {
    fn new() -> Self {
        RecvBuffers {
            data: vec![0; RECV_BATCH * RECV_BUF_LEN],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: (0..RECV_BATCH).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: vec![[0; CMSG_LEN / 8]; RECV_BATCH],
            lens: vec![0; RECV_BATCH],
            segments: vec![None; RECV_BATCH],
        }
    }

    /// One `recvmmsg` into the buffers; returns how many messages arrived.
    fn recvmmsg(&mut self, fd: i32) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = self
            .data
            .chunks_mut(RECV_BUF_LEN)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<MaybeUninit<libc::mmsghdr>> = Vec::with_capacity(RECV_BATCH);
        for ((iov, addr), cmsg) in iov
            .iter_mut()
            .zip(self.addrs.iter_mut())
            .zip(self.cmsgs.iter_mut())
        {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = cmsg.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = CMSG_LEN as _;
            msgs.push(MaybeUninit::new(m));
        }
        // SAFETY: every header points into buffers owned by `self` and `iov`, which
        // outlive the call; MaybeUninit<mmsghdr> has mmsghdr's layout and all are
        // initialised above.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr().cast(),
                RECV_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            // SAFETY: initialised above; the kernel filled in lengths and control data.
            let m = unsafe { m.assume_init_ref() };
            self.lens[i] = m.msg_len as usize;
            self.segments[i] = gro_segment(&m.msg_hdr);
        }
        Ok(n)
    }

    /// Message `i` of the last call: source, bytes, and the GRO segment size if any.
    fn message(&mut self, i: usize) -> (Option<Endpoint>, &mut [u8], Option<usize>) {
        let start = i * RECV_BUF_LEN;
        let len = self.lens[i].min(RECV_BUF_LEN);
        (
            endpoint_of(&self.addrs[i]),
            &mut self.data[start..start + len],
            self.segments[i],
        )
    }
}

/// The `UDP_GRO` segment size in a received message's control data, if present.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` was filled by recvmmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_controllen, and the int payload of UDP_GRO is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Registers `socket` with the calling thread's runtime for `interest`.
fn register(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the `UdpSocket` owns its descriptor, which stays open and the same for as
    // long as the `AsyncFd` owns the socket.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}

fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is open for the whole call and the value is a properly sized int.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Enlarges the socket's buffers: past the system limit when privileged
/// (`SO_RCVBUFFORCE`), up to it otherwise. Failures only cost throughput.
fn set_socket_buffers(socket: &impl AsRawFd) {
    for buffer in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_buffer(socket, buffer, SOCKET_BUFFER).is_err() {
            tracing::debug!("could not enlarge the UDP socket buffers");
        }
    }
}

/// Sets one buffer size with its (privileged, past the system limit) `force` option,
/// or with the `plain` one (up to the limit).
fn set_buffer(
    socket: &impl AsRawFd,
    (force, plain): (libc::c_int, libc::c_int),
    bytes: usize,
) -> io::Result<()> {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, force, size)
        .or_else(|_| set_int_option(socket, libc::SOL_SOCKET, plain, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16, len: usize) -> Transmit {
        Transmit {
            destination: Endpoint(SocketAddr::from(([127, 0, 0, 1], port))),
            contents: vec![0xab; len],
        }
    }

    #[test]
    fn groups_join_equal_datagrams_to_one_destination_and_end_after_a_short_one() {
        let q = [
            t(1, 1432),
            t(1, 1432),
            t(1, 1432),
            t(1, 900),
            t(1, 1432),
            t(2, 1432),
        ];
        let g = plan_groups(&q, true, 64);
        assert_eq!(
            g,
            vec![
                Group {
                    count: 4,
                    segment: 1432
                },
                Group {
                    count: 1,
                    segment: 1432
                },
                Group {
                    count: 1,
                    segment: 1432
                },
            ]
        );
        // A longer datagram cannot join a group of shorter segments.
        let g = plan_groups(&[t(1, 100), t(1, 200)], true, 64);
        assert_eq!(g.len(), 2);
        // Without GSO every datagram is its own message; the batch limit holds.
        let g = plan_groups(&q, false, 3);
        assert_eq!(g.len(), 3);
        assert!(g.iter().all(|g| g.count == 1));
    }

    #[test]
    fn groups_respect_the_segment_count_and_byte_limits() {
        let q: Vec<Transmit> = (0..200).map(|_| t(1, 1000)).collect();
        let g = plan_groups(&q, true, 64);
        assert!(g.iter().all(|g| g.count <= MAX_SEGMENTS));
        assert!(g.iter().all(|g| g.count * g.segment <= MAX_SEGMENTED_BYTES));
        assert_eq!(g.iter().map(|g| g.count).sum::<usize>(), 200);
    }

    /// Real sockets on loopback: a segmented burst arrives as the same datagrams, in
    /// order, whether or not the kernel coalesced them on receipt.
    #[test]
    fn a_batch_sent_with_segmentation_arrives_as_the_same_datagrams() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let mut a = UdpIo::bind(any, false).await.unwrap();
            let mut b = UdpIo::bind(any, false).await.unwrap();
            let to = b.local();
            let mut queue: Vec<Transmit> = (0..40u8)
                .map(|i| Transmit {
                    destination: to,
                    contents: vec![
                        i;
                        if i % 2 == 0 {
                            1400
                        } else {
                            1400 - usize::from(i % 5)
                        }
                    ],
                })
                .collect();
            let expected: Vec<Vec<u8>> = queue.iter().map(|t| t.contents.clone()).collect();
            a.send_batch(&mut queue).await;
            assert_eq!(queue.len(), expected.len(), "the buffers stay for reuse");
            let mut got: Vec<Vec<u8>> = Vec::new();
            while got.len() < expected.len() {
                b.readable().await.unwrap();
                let _ = b.try_recv_batch(|from, d| {
                    assert_eq!(from, a.local());
                    got.push(d.to_vec());
                });
            }
            assert_eq!(got, expected);
            assert_eq!(a.stats().send_errors, 0);
        });
    }

    /// The wait a full send buffer takes (on a duplicate descriptor registered for
    /// writability) ends as soon as there is room: at once on an idle socket, and more
    /// than once in a row.
    #[test]
    fn waiting_for_room_to_send_ends_when_there_is_room() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let udp = UdpIo::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false)
                .await
                .unwrap();
            for _ in 0..3 {
                tokio::time::timeout(std::time::Duration::from_secs(5), udp.writable())
                    .await
                    .expect("an idle socket has room")
                    .unwrap();
            }
        });
    }

    /// A dual-stack socket talks to an IPv4 and an IPv6 peer through one port, and
    /// names the IPv4 one as plain IPv4 both ways (never `::ffff:a.b.c.d`).
    #[test]
    fn a_dual_stack_socket_speaks_plain_ipv4_and_ipv6() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut dual = UdpIo::bind_port(0, false).await.unwrap();
            assert!(dual.has_ipv6(), "this host has IPv6 loopback");
            let port = dual.local().0.port();
            let mut v4 = UdpIo::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false)
                .await
                .unwrap();
            let mut v6 = UdpIo::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)), false)
                .await
                .unwrap();
            let to_dual_v4 = Endpoint(SocketAddr::from(([127, 0, 0, 1], port)));
            let to_dual_v6 = Endpoint(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
            for (peer, to, tag) in [(&mut v4, to_dual_v4, 4u8), (&mut v6, to_dual_v6, 6u8)] {
                let mut q = vec![Transmit {
                    destination: to,
                    contents: vec![tag; 100],
                }];
                peer.send_batch(&mut q).await;
            }
            let mut from: Vec<(Endpoint, u8)> = Vec::new();
            while from.len() < 2 {
                dual.readable().await.unwrap();
                let _ = dual.try_recv_batch(|f, d| from.push((f, d[0])));
            }
            from.sort_by_key(|(_, tag)| *tag);
            assert_eq!(from, vec![(v4.local(), 4), (v6.local(), 6)]);
            // And back, to the endpoints as they were reported.
            let mut q: Vec<Transmit> = from
                .iter()
                .map(|(ep, tag)| Transmit {
                    destination: *ep,
                    contents: vec![*tag + 10; 50],
                })
                .collect();
            dual.send_batch(&mut q).await;
            assert_eq!(dual.stats().send_errors, 0);
            for (peer, dual_at, want) in [(&mut v4, to_dual_v4, 14u8), (&mut v6, to_dual_v6, 16)] {
                let mut got = None;
                while got.is_none() {
                    peer.readable().await.unwrap();
                    let _ = peer.try_recv_batch(|f, d| got = Some((f, d[0])));
                }
                assert_eq!(got, Some((dual_at, want)));
            }
        });
    }
}
