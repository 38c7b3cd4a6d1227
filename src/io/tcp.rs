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
//! - [`TcpLink::spawn`] runs one connection as two tasks in the calling runtime; once
//!   its owner [`start`](TcpLink::start)s it, what arrives goes to the owner's channel
//!   as [`TcpEvent::Datagram`] (tagged with the peer's endpoint). [`TcpLink::send`]
//!   queues a datagram, dropped and counted when [`QUEUE_BYTES`] are waiting (a
//!   congested connection behaves like a lossy path, and the overlay's own TCP flows
//!   back off). A connection that closes, errs, sends a bad frame, stays silent for
//!   [`IDLE`] or cannot write for [`WRITE_TIMEOUT`] reports [`TcpEvent::Closed`] with its
//!   number. Dropping the link ends both tasks. Memory per connection is bounded: one
//!   read chunk, one partial frame, [`QUEUE_BYTES`] queued and one write batch.
//! - [`Fallback`] decides when a node goes to TCP and back (pure, time in): after
//!   [`FALLBACK_AFTER`] without any root answering, connect to a root over TCP (the next
//!   root endpoint on each attempt); while on TCP, try UDP every [`UDP_RETRY`] (the
//!   driver sends that turn's datagrams for the root over UDP instead), and go back to
//!   UDP as soon as the root answers over it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::types::{Endpoint, Time, Transmit};

/// The largest datagram a frame may carry: more than any datagram a node sends (a
/// fragment on a 9,000-byte jumbo path). A longer frame ends the connection.
pub const MAX_TCP_DATAGRAM: usize = 16_384;
/// Bytes of datagrams waiting to be written to one connection before new ones are
/// dropped (a congested connection behaves like a lossy path).
pub const QUEUE_BYTES: usize = 256 * 1024;
/// A write that cannot finish this long (the other side stopped reading) ends the
/// connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that received nothing for this long is closed (nodes say HELLO every
/// 5 s).
pub const IDLE: Duration = Duration::from_secs(60);
/// A node with no root answering for this long tries TCP.
pub const FALLBACK_AFTER: Duration = Duration::from_secs(10);
/// While on TCP, a node tries UDP again this often.
pub const UDP_RETRY: Duration = Duration::from_secs(10);
/// How long a node waits for a TCP connection to a root.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The TCP port nodes connect to on a root's address (what firewalls that block UDP
/// still let out); `skylan root --tcp-port` changes where a root listens.
pub const ROOT_TCP_PORT: u16 = 443;
/// At most this many TCP fallback connections per root...
pub const MAX_CONNECTIONS: usize = 1024;
/// ... and this many from one IP address.
pub const MAX_PER_ADDRESS: usize = 8;
/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Cuts a byte stream into datagrams. See the module documentation for the framing.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

/// A frame whose length is zero or over [`MAX_TCP_DATAGRAM`]: the stream is not ours
/// (or is corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a TCP frame of length 0 or over 16,384 bytes: the stream does not carry skylan datagrams")]
pub struct BadFrame;

impl Deframer {
    /// Takes `bytes` from the stream and calls `each` with every datagram completed
    /// (those before a bad frame too). Holds at most one incomplete frame.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), BadFrame> {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(head) = self.buf.get(at..at + 2) {
            let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
            if len == 0 || len > MAX_TCP_DATAGRAM {
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
    if datagram.is_empty() || datagram.len() > MAX_TCP_DATAGRAM {
        return false;
    }
    // Invariant: at most MAX_TCP_DATAGRAM (16,384), which fits a u16.
    out.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
    out.extend_from_slice(datagram);
    true
}

/// What a connection tells its owner.
#[derive(Debug)]
pub enum TcpEvent {
    /// A connection is ready (a root accepted one, or a node's connect succeeded). It
    /// reads nothing until the owner calls [`TcpLink::start`].
    Opened(TcpLink),
    /// A datagram arrived from `peer`.
    Datagram(Endpoint, Vec<u8>),
    /// The connection numbered `id` to `peer` ended, and why (reported once or twice:
    /// by its reader and its writer; the owner goes by `id`).
    Closed {
        /// [`TcpLink::id`].
        id: u64,
        /// Its peer.
        peer: Endpoint,
        /// Why, in words.
        why: String,
    },
    /// A node's connection to `peer` could not be made, and why.
    Failed(Endpoint, String),
}

/// Numbers connections, so a close is never taken for a newer connection's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One TCP connection carrying datagrams. See the module documentation. Dropping it
/// closes the connection.
#[derive(Debug)]
pub struct TcpLink {
    sender: TcpSender,
    id: u64,
    start: Option<oneshot::Sender<()>>,
    tasks: [JoinHandle<()>; 2],
}

/// The sending side of a [`TcpLink`], for any thread (the node's packet workers divert
/// their datagrams for the TCP root through a clone). Sends go nowhere once the link is
/// dropped.
#[derive(Debug, Clone)]
pub struct TcpSender {
    peer: Endpoint,
    queue: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes waiting in `queue` (at most [`QUEUE_BYTES`]).
    queued: Arc<AtomicUsize>,
    /// Datagrams dropped for a full queue, by every clone.
    dropped: Arc<AtomicU64>,
}

impl TcpSender {
    /// The endpoint at the other end (as the cores know it).
    pub fn peer(&self) -> Endpoint {
        self.peer
    }

    /// Queues `datagram`; drops it (counted) when [`QUEUE_BYTES`] are waiting.
    pub fn send(&self, datagram: Vec<u8>) {
        let len = datagram.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > QUEUE_BYTES || self.queue.send(datagram).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves the datagrams of `transmits` addressed to this link's peer onto it, keeping
    /// the order of the rest.
    pub fn divert(&self, transmits: &mut Vec<Transmit>) {
        transmits.retain_mut(|t| {
            if t.destination != self.peer {
                return true;
            }
            self.send(std::mem::take(&mut t.contents));
            false
        });
    }

    /// Datagrams dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl TcpLink {
    /// Takes `stream` (connected to `peer`) into the calling runtime; once
    /// [`start`](Self::start)ed, datagrams and the close go to `events`.
    pub fn spawn(stream: TcpStream, peer: Endpoint, events: mpsc::Sender<TcpEvent>) -> TcpLink {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (queue, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let (start, started) = oneshot::channel::<()>();
        let closed = events.clone();
        let writer_events = events.clone();
        let read_events = events;
        let read = tokio::spawn(async move {
            if started.await.is_err() {
                return;
            }
            let mut deframer = Deframer::default();
            let mut buf = vec![0u8; READ_CHUNK];
            let why = loop {
                let n = match tokio::time::timeout(IDLE, reader.read(&mut buf)).await {
                    Err(_) => break format!("nothing received for {} s", IDLE.as_secs()),
                    Ok(Err(e)) => break e.to_string(),
                    Ok(Ok(0)) => break "closed by the other side".to_string(),
                    Ok(Ok(n)) => n,
                };
                let mut datagrams = Vec::new();
                let cut = deframer.push(&buf[..n], |d| datagrams.push(d.to_vec()));
                for d in datagrams {
                    if read_events.send(TcpEvent::Datagram(peer, d)).await.is_err() {
                        return;
                    }
                }
                if let Err(e) = cut {
                    break e.to_string();
                }
            };
            let _ = closed.send(TcpEvent::Closed { id, peer, why }).await;
        });
        let waiting = queued.clone();
        let write = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(first) = outgoing.recv().await {
                out.clear();
                let take = |d: Vec<u8>, out: &mut Vec<u8>| {
                    waiting.fetch_sub(d.len(), Ordering::Relaxed);
                    frame(&d, out);
                };
                take(first, &mut out);
                // Whatever else is waiting goes in the same write.
                while out.len() < 60 * 1024 {
                    match outgoing.try_recv() {
                        Ok(d) => take(d, &mut out),
                        Err(_) => break,
                    }
                }
                let why = match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!(
                        "the other side read nothing for {} s",
                        WRITE_TIMEOUT.as_secs()
                    ),
                };
                let _ = writer_events.send(TcpEvent::Closed { id, peer, why }).await;
                return;
            }
        });
        TcpLink {
            sender: TcpSender {
                peer,
                queue,
                queued,
                dropped: Arc::default(),
            },
            id,
            start: Some(start),
            tasks: [read, write],
        }
    }

    /// Lets the link read: datagrams go to its owner from now on. (A root puts the link
    /// in its table first, so its answers to the first datagram go back over it.)
    pub fn start(&mut self) {
        if let Some(start) = self.start.take() {
            let _ = start.send(());
        }
    }

    /// This connection's number (see [`TcpEvent::Closed`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The endpoint at the other end (as the cores know it).
    pub fn peer(&self) -> Endpoint {
        self.sender.peer
    }

    /// Queues `datagram` (see [`TcpSender::send`]).
    pub fn send(&self, datagram: Vec<u8>) {
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
/// [`TcpEvent::Opened`] on `events` (its datagrams and close follow once started).
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
/// [`TcpEvent::Opened`] or [`TcpEvent::Failed`].
pub fn connect(addr: SocketAddr, root: Endpoint, events: mpsc::Sender<TcpEvent>) {
    tokio::spawn(async move {
        let outcome = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let event = match outcome {
            Ok(Ok(stream)) => TcpEvent::Opened(TcpLink::spawn(stream, root, events.clone())),
            Ok(Err(e)) => TcpEvent::Failed(root, format!("connect to {addr}: {e}")),
            Err(_) => TcpEvent::Failed(
                root,
                format!(
                    "connect to {addr}: no answer in {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
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
            // UDP came back while connecting: the connection is not needed.
            State::Connecting if online => {
                self.state = State::Udp;
                self.offline_since = None;
                None
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

    /// True while a connection is being made (an opened one is wanted).
    pub fn connecting(&self) -> bool {
        self.state == State::Connecting
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
    fn a_zero_length_or_oversized_frame_ends_the_stream() {
        let mut d = Deframer::default();
        let mut n = 0;
        assert_eq!(d.push(&[0, 1, 9, 0, 0], |_| n += 1), Err(BadFrame));
        assert_eq!(n, 1, "the datagram before it still counts");
        let too_long = u16::try_from(MAX_TCP_DATAGRAM + 1).unwrap().to_be_bytes();
        assert_eq!(Deframer::default().push(&too_long, |_| ()), Err(BadFrame));
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
        // UDP back while a connection is being made: it is not wanted any more.
        let mut g = Fallback::default();
        assert_eq!(g.tick(t(0), false), None);
        assert_eq!(
            g.tick(t(0) + FALLBACK_AFTER, false),
            Some(FallbackAction::Connect(0))
        );
        assert!(g.connecting());
        assert_eq!(g.tick(t(11), true), None);
        assert!(!g.connecting() && !g.active());
        assert!(!f.active());
        assert!(!f.udp_answered(), "already on UDP");
        assert_eq!(f.tick(t(60), true), None);
    }
}
