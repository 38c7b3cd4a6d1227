//! The TCP fallback: datagrams over one TCP connection between a node and a root, for
//! networks that block UDP (ZeroTier's TCP fallback relay, with our own framing).
//!
//! # Wire
//! Each datagram travels as a 2-byte big-endian length (1 to [`MAX_TCP_DATAGRAM`])
//! followed by its bytes: exactly the authenticated packets UDP carries, so TCP adds
//! nothing to trust and the cores cannot tell the two apart. A zero or oversized length
//! ends the connection. A root listens for TCP on port [`ROOT_TCP_PORT`] (443) of its
//! addresses; nodes connect there, on the address of a root's UDP endpoint.
//!
//! # Contract
//! - [`Deframer`] cuts a byte stream into datagrams (pure).
//! - [`TcpLink::spawn`] runs one connection as two tasks in the calling runtime: what
//!   arrives goes to the owner's channel as [`TcpEvent::Datagram`] (tagged with the
//!   peer's endpoint); [`TcpLink::send`] queues a datagram (dropped and counted when
//!   [`SEND_QUEUE`] are waiting: a congested connection behaves like a lossy path, and
//!   the overlay's own TCP flows back off). A connection that closes, errs, sends a bad
//!   frame or stays silent for [`IDLE`] reports [`TcpEvent::Closed`] once. Dropping the
//!   link ends both tasks.
//! - [`Fallback`] decides when a node goes to TCP and back (pure, time in): after
//!   [`FALLBACK_AFTER`] without any root answering, connect to a root over TCP (the next
//!   root endpoint on each attempt); while on TCP, try UDP every [`UDP_RETRY`] (the
//!   driver sends that turn's datagrams for the root over UDP instead), and go back to
//!   UDP as soon as the root answers over it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::types::{Endpoint, Time, Transmit};

/// The largest datagram a frame carries (the length field's range).
pub const MAX_TCP_DATAGRAM: usize = u16::MAX as usize;
/// Datagrams waiting to be written to one connection before new ones are dropped.
pub const SEND_QUEUE: usize = 2048;
/// A connection that received nothing for this long is closed (nodes say HELLO every
/// 5 s).
pub const IDLE: Duration = Duration::from_secs(60);
/// A node with no root answering for this long tries TCP.
pub const FALLBACK_AFTER: Duration = Duration::from_secs(10);
/// While on TCP, a node tries UDP again this often.
pub const UDP_RETRY: Duration = Duration::from_secs(10);
/// How long a node waits for a TCP connection to a root.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Cuts a byte stream into datagrams. See the module documentation for the framing.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

/// A frame whose length is zero: the stream is not ours (or is corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a TCP frame of length 0: the stream does not carry skylan datagrams")]
pub struct BadFrame;

impl Deframer {
    /// Takes `bytes` from the stream and calls `each` with every datagram completed.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), BadFrame> {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(head) = self.buf.get(at..at + 2) {
            let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
            if len == 0 {
                return Err(BadFrame);
            }
            let Some(datagram) = self.buf.get(at + 2..at + 2 + len) else {
                break;
            };
            each(datagram);
            at += 2 + len;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

/// Appends `datagram` to `out` as one frame; false (nothing appended) when it is empty
/// or longer than [`MAX_TCP_DATAGRAM`].
pub fn frame(datagram: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(len) = u16::try_from(datagram.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(datagram);
    true
}

/// What a connection tells its owner.
#[derive(Debug)]
pub enum TcpEvent {
    /// A connection is ready (a root accepted one, or a node's connect succeeded).
    Opened(TcpLink),
    /// A datagram arrived from `peer`.
    Datagram(Endpoint, Vec<u8>),
    /// The connection to `peer` ended (or could not be made), and why.
    Closed(Endpoint, String),
}

/// One TCP connection carrying datagrams. See the module documentation. Dropping it
/// closes the connection.
#[derive(Debug)]
pub struct TcpLink {
    sender: TcpSender,
    tasks: [JoinHandle<()>; 2],
}

/// The sending side of a [`TcpLink`], for any thread (the node's packet workers divert
/// their datagrams for the TCP root through a clone). Sends go nowhere once the link is
/// dropped.
#[derive(Debug, Clone)]
pub struct TcpSender {
    peer: Endpoint,
    queue: mpsc::Sender<Vec<u8>>,
    dropped: u64,
}

impl TcpSender {
    /// The endpoint at the other end (as the cores know it).
    pub fn peer(&self) -> Endpoint {
        self.peer
    }

    /// Queues `datagram`; drops it (counted) when the queue is full.
    pub fn send(&mut self, datagram: Vec<u8>) {
        if self.queue.try_send(datagram).is_err() {
            self.dropped += 1;
        }
    }

    /// Moves the datagrams of `transmits` addressed to this link's peer onto it, keeping
    /// the order of the rest.
    pub fn divert(&mut self, transmits: &mut Vec<Transmit>) {
        transmits.retain_mut(|t| {
            if t.destination != self.peer {
                return true;
            }
            self.send(std::mem::take(&mut t.contents));
            false
        });
    }

    /// Datagrams this sender dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl TcpLink {
    /// Runs `stream` (connected to `peer`) in the calling runtime; datagrams and the close
    /// go to `events`.
    pub fn spawn(stream: TcpStream, peer: Endpoint, events: mpsc::Sender<TcpEvent>) -> TcpLink {
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (queue, mut outgoing) = mpsc::channel::<Vec<u8>>(SEND_QUEUE);
        let closed = events.clone();
        let read = tokio::spawn(async move {
            let mut deframer = Deframer::default();
            let mut buf = vec![0u8; 64 * 1024];
            let why = loop {
                let n = match tokio::time::timeout(IDLE, reader.read(&mut buf)).await {
                    Err(_) => break format!("nothing received for {} s", IDLE.as_secs()),
                    Ok(Err(e)) => break e.to_string(),
                    Ok(Ok(0)) => break "closed by the other side".to_string(),
                    Ok(Ok(n)) => n,
                };
                let mut datagrams = Vec::new();
                if let Err(e) = deframer.push(&buf[..n], |d| datagrams.push(d.to_vec())) {
                    break e.to_string();
                }
                for d in datagrams {
                    if events.send(TcpEvent::Datagram(peer, d)).await.is_err() {
                        return;
                    }
                }
            };
            let _ = closed.send(TcpEvent::Closed(peer, why)).await;
        });
        let write = tokio::spawn(async move {
            let mut out = Vec::with_capacity(64 * 1024);
            while let Some(first) = outgoing.recv().await {
                out.clear();
                frame(&first, &mut out);
                // Whatever else is waiting goes in the same write.
                while out.len() < 60 * 1024 {
                    match outgoing.try_recv() {
                        Ok(d) => {
                            frame(&d, &mut out);
                        }
                        Err(_) => break,
                    }
                }
                if writer.write_all(&out).await.is_err() {
                    // The reader sees the broken connection and reports it.
                    return;
                }
            }
        });
        TcpLink {
            sender: TcpSender {
                peer,
                queue,
                dropped: 0,
            },
            tasks: [read, write],
        }
    }

    /// The endpoint at the other end (as the cores know it).
    pub fn peer(&self) -> Endpoint {
        self.sender.peer
    }

    /// Queues `datagram`; drops it (counted) when the queue is full.
    pub fn send(&mut self, datagram: Vec<u8>) {
        self.sender.send(datagram);
    }

    /// A sender for other threads.
    pub fn sender(&self) -> TcpSender {
        self.sender.clone()
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The TCP port nodes connect to on a root's address (what firewalls that block UDP
/// still let out); `skylan root --tcp-port` changes where a root listens.
pub const ROOT_TCP_PORT: u16 = 443;
/// At most this many TCP fallback connections per root.
pub const MAX_CONNECTIONS: usize = 4096;

/// A root's TCP listener on `port`, dual-stack like its UDP socket (IPv4 only on a host
/// without IPv6).
pub async fn listen(port: u16) -> std::io::Result<TcpListener> {
    let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let bind = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    match bind(any6) {
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            bind(SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)))
        }
        other => other,
    }
}

/// Accepts connections on `listener` until aborted, each reported as
/// [`TcpEvent::Opened`] on `events` (its datagrams and close follow there).
pub fn serve(listener: TcpListener, events: mpsc::Sender<TcpEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let link = TcpLink::spawn(stream, endpoint_of(addr), events.clone());
                    if events.send(TcpEvent::Opened(link)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("TCP accept: {e}");
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Connects to `addr` over TCP in the background, for the root the cores know at `root`
/// (its UDP endpoint: the link's datagrams are tagged with it, and the driver diverts
/// datagrams for it onto the link); the outcome arrives on `events` as
/// [`TcpEvent::Opened`] or [`TcpEvent::Closed`].
pub fn connect(addr: SocketAddr, root: Endpoint, events: mpsc::Sender<TcpEvent>) {
    tokio::spawn(async move {
        let outcome = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let event = match outcome {
            Ok(Ok(stream)) => TcpEvent::Opened(TcpLink::spawn(stream, root, events.clone())),
            Ok(Err(e)) => TcpEvent::Closed(root, format!("connect: {e}")),
            Err(_) => TcpEvent::Closed(
                root,
                format!("connect: no answer in {} s", CONNECT_TIMEOUT.as_secs()),
            ),
        };
        let _ = events.send(event).await;
    });
}

/// A peer's TCP address as the cores know it: IPv4-mapped IPv6 addresses (a dual-stack
/// listener's IPv4 peers) unmapped.
pub fn endpoint_of(addr: SocketAddr) -> Endpoint {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => Endpoint((v4, a.port()).into()),
            None => Endpoint(addr),
        },
        SocketAddr::V4(_) => Endpoint(addr),
    }
}

/// What [`Fallback`] asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackAction {
    /// Connect over TCP to the root endpoint with this index (of the driver's list, taken
    /// modulo its length).
    Connect(usize),
    /// Send this turn's datagrams for the TCP root over UDP, to see whether UDP works.
    ProbeUdp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Udp,
    Connecting,
    Tcp,
}

/// When a node uses TCP (see the module documentation). Pure: the driver reports what
/// happened and does what [`tick`](Self::tick) says.
#[derive(Debug)]
pub struct Fallback {
    state: State,
    /// Since when no root has answered (while on UDP).
    offline_since: Option<Time>,
    /// When to try UDP again (while on TCP).
    next_probe: Time,
    /// Connection attempts so far (which root endpoint is next).
    attempts: usize,
}

impl Default for Fallback {
    fn default() -> Self {
        Fallback {
            state: State::Udp,
            offline_since: None,
            next_probe: Time::ZERO,
            attempts: 0,
        }
    }
}

impl Fallback {
    /// Called every driver turn with whether a root answers now.
    pub fn tick(&mut self, now: Time, online: bool) -> Option<FallbackAction> {
        match self.state {
            State::Udp if online => {
                self.offline_since = None;
                None
            }
            State::Udp => {
                let since = *self.offline_since.get_or_insert(now);
                if now.since(since) < FALLBACK_AFTER {
                    return None;
                }
                self.state = State::Connecting;
                self.attempts += 1;
                Some(FallbackAction::Connect(self.attempts - 1))
            }
            State::Connecting => None,
            State::Tcp if now >= self.next_probe => {
                self.next_probe = now + UDP_RETRY;
                Some(FallbackAction::ProbeUdp)
            }
            State::Tcp => None,
        }
    }

    /// The TCP connection is up.
    pub fn connected(&mut self, now: Time) {
        self.state = State::Tcp;
        self.next_probe = now + UDP_RETRY;
    }

    /// The connection failed or closed: back to UDP, trying TCP again (the next root
    /// endpoint) after another [`FALLBACK_AFTER`] without an answer.
    pub fn lost(&mut self, now: Time) {
        self.state = State::Udp;
        self.offline_since = Some(now);
    }

    /// A root answered over UDP. True when the driver should close the TCP connection.
    pub fn udp_answered(&mut self) -> bool {
        let was_tcp = self.state == State::Tcp;
        if was_tcp {
            self.state = State::Udp;
            self.offline_since = None;
        }
        was_tcp
    }

    /// True while the node's root traffic goes over TCP.
    pub fn active(&self) -> bool {
        self.state == State::Tcp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_cut_of_the_stream() {
        let datagrams: Vec<Vec<u8>> = vec![vec![1], vec![2; 300], vec![3; MAX_TCP_DATAGRAM]];
        let mut stream = Vec::new();
        for d in &datagrams {
            assert!(frame(d, &mut stream));
        }
        assert!(!frame(&[], &mut stream), "empty datagrams are not framed");
        assert!(!frame(&vec![0; MAX_TCP_DATAGRAM + 1], &mut stream));
        for cut in [1, 2, 3, 7, 1000, stream.len()] {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(cut) {
                d.push(piece, |x| got.push(x.to_vec())).unwrap();
            }
            assert_eq!(got, datagrams, "cut every {cut} bytes");
        }
    }

    #[test]
    fn a_zero_length_frame_ends_the_stream() {
        let mut d = Deframer::default();
        let mut n = 0;
        assert_eq!(d.push(&[0, 1, 9, 0, 0], |_| n += 1), Err(BadFrame));
        assert_eq!(n, 1, "the datagram before it still counts");
    }

    #[test]
    fn ipv4_mapped_peers_are_unmapped() {
        let mapped: SocketAddr = "[::ffff:198.51.100.7]:40000".parse().unwrap();
        assert_eq!(endpoint_of(mapped).to_string(), "198.51.100.7/40000");
        let v6: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        assert_eq!(endpoint_of(v6).to_string(), "2001:db8::7/40000");
    }

    #[test]
    fn the_fallback_goes_to_tcp_when_no_root_answers_and_back_when_udp_does() {
        let t = |s: u64| Time::ZERO + Duration::from_secs(s);
        let mut f = Fallback::default();
        assert_eq!(f.tick(t(0), true), None);
        assert_eq!(f.tick(t(1), false), None, "offline only just now");
        assert_eq!(
            f.tick(t(1) + FALLBACK_AFTER, false),
            Some(FallbackAction::Connect(0))
        );
        assert_eq!(f.tick(t(12), false), None, "connecting");
        // The connection fails: another wait, then the next endpoint.
        f.lost(t(15));
        assert_eq!(f.tick(t(16), false), None);
        assert_eq!(
            f.tick(t(15) + FALLBACK_AFTER, false),
            Some(FallbackAction::Connect(1))
        );
        f.connected(t(26));
        assert!(f.active());
        assert_eq!(f.tick(t(27), true), None);
        assert_eq!(
            f.tick(t(26) + UDP_RETRY, true),
            Some(FallbackAction::ProbeUdp)
        );
        assert_eq!(
            f.tick(t(26) + UDP_RETRY, true),
            None,
            "one probe per interval"
        );
        assert!(f.udp_answered(), "close TCP");
        assert!(!f.active());
        assert!(!f.udp_answered(), "already on UDP");
        assert_eq!(f.tick(t(60), true), None);
    }
}
