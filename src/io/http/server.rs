//! The local API's connection loop: accepts TCP connections, serves HTTP/1.1 on each
//! with hyper, and keeps any one client from holding the server.
//!
//! Limits ([`ServerLimits`]), so that a slow or idle client (slowloris) cannot hold
//! connections forever:
//! - **Header timeout.** A client has [`ServerLimits::header_timeout`] to send a
//!   request's header, counted from when the server starts waiting for it. That is also
//!   how long an idle keep-alive connection stays open between requests. On expiry the
//!   connection is closed.
//! - **Body timeout.** A request body must arrive within [`ApiConfig::body_timeout`]
//!   (enforced where the body is read, `JsonObject`): 408 otherwise.
//! - **Write stall.** A response write that the client does not read for
//!   [`ServerLimits::write_stall`] ends the connection.
//! - **Connection cap.** At most [`ServerLimits::max_connections`] connections are
//!   served at once (each holds a file descriptor); further clients wait in the listen
//!   queue until one ends, which the timeouts above guarantee.
//!
//! Shutdown: when the shutdown future resolves, no new connection is accepted, every
//! open one is told to finish its request in flight and close, and [`serve_with`]
//! returns when all have closed (mini-redis style, as `axum::serve` did before).
//!
//! Every request carries the client's address as `ConnectInfo<SocketAddr>` (the
//! controller's audit log records it).
//!
//! [`ApiConfig::body_timeout`]: super::ApiConfig::body_timeout

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service;

/// How long a client may take over each part of an exchange, and how many may be
/// served at once; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to send a request's header, and the longest idle time between requests.
    pub header_timeout: Duration,
    /// Longest time a response write may wait for the client to read.
    pub write_stall: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    /// 10 s for a header (the CLI sends its request at once; browsers reopen idle
    /// connections the server closed), 30 s for a stalled write, 256 connections.
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves `router` on `listener` with the default [`ServerLimits`] until `shutdown`
/// resolves, then finishes the requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    router: Router,
) -> io::Result<()> {
    serve_with(listener, shutdown, router, ServerLimits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    router: Router,
    limits: ServerLimits,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // Invariant: the semaphore is never closed.
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            remote,
            router.clone(),
            limits,
            closed.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// What to do when `accept` fails: a connection that died in the queue is nothing; a
/// lack of resources (file descriptors) is logged, with a pause so the loop does not spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!("local API: accepting a connection failed: {e}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection until it ends, a limit ends it, or the server shuts down.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: ServerLimits,
    mut closed: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(remote));
        router.clone().call(req)
    });
    let io = TokioIo::new(StallGuard::new(stream, limits.write_stall));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = closed.wait_for(|c| *c).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, "local API connection ended: {e}");
    }
}

/// A stream whose writes fail with `TimedOut` once one has waited `limit` for the
/// client to read (a client that stops reading would otherwise hold the connection).
struct StallGuard<T> {
    io: T,
    limit: Duration,
    /// Running while a write waits; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(io: T, limit: Duration) -> Self {
        StallGuard {
            io,
            limit,
            stalled: None,
        }
    }

    /// Turns a write's outcome into the guarded one.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    use axum::routing::get;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Generous bound for "the server closed it": far above the limits under test, so
    /// the tests check that a limit exists, never how fast anything is.
    const EVENTUALLY: Duration = Duration::from_secs(20);

    fn limits() -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_millis(300),
            write_stall: Duration::from_millis(300),
            max_connections: 4,
        }
    }

    /// A server with `/health` on its own runtime thread; stopped when the sender drops.
    fn start(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        start_router(limits, || {
            Router::new().route("/health", get(|| async { "ok" }))
        })
    }

    /// A server with the router `make` builds, on its own runtime thread.
    fn start_router(
        limits: ServerLimits,
        make: impl FnOnce() -> Router + Send + 'static,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let router = make();
                let shutdown = async {
                    let _ = stopped.await;
                };
                serve_with(listener, shutdown, router, limits)
                    .await
                    .unwrap();
            });
        });
        (addr_rx.recv().unwrap(), stop)
    }

    /// Reads until the server closes the connection; what it sent before.
    fn read_until_closed(stream: &mut StdStream) -> String {
        stream.set_read_timeout(Some(EVENTUALLY)).unwrap();
        let mut out = Vec::new();
        match stream.read_to_end(&mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_client_that_sends_nothing_is_disconnected() {
        let (addr, _stop) = start(limits());
        let mut idle = StdStream::connect(addr).unwrap();
        assert_eq!(read_until_closed(&mut idle), "");
    }

    #[test]
    fn a_client_that_never_finishes_its_header_is_disconnected() {
        let (addr, _stop) = start(limits());
        let mut slow = StdStream::connect(addr).unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        let answer = read_until_closed(&mut slow);
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    #[test]
    fn an_idle_keep_alive_connection_is_closed_after_its_request() {
        let (addr, _stop) = start(limits());
        let mut client = StdStream::connect(addr).unwrap();
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let answer = read_until_closed(&mut client);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[test]
    fn idle_clients_do_not_lock_others_out() {
        let limits = limits();
        let (addr, _stop) = start(limits);
        let _idle: Vec<StdStream> = (0..limits.max_connections)
            .map(|_| StdStream::connect(addr).unwrap())
            .collect();
        let mut client = StdStream::connect(addr).unwrap();
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let answer = read_until_closed(&mut client);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[test]
    fn a_body_that_does_not_arrive_in_time_is_408() {
        use super::super::{ApiConfig, AuthToken, JsonObject, router};
        let (addr, _stop) = start_router(limits(), || {
            let mut config = ApiConfig::new(AuthToken::new("t"));
            config.body_timeout = Duration::from_millis(300);
            let echo =
                axum::routing::post(|JsonObject(body): JsonObject| async move { axum::Json(body) });
            router(config, Router::new().route("/echo", echo))
        });
        let mut slow = StdStream::connect(addr).unwrap();
        slow.write_all(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nX-ZT1-Auth: t\r\nContent-Length: 100\r\n\r\n{\"a\":",
        )
        .unwrap();
        let answer = read_until_closed(&mut slow);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within"), "{answer}");
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, Duration::from_millis(100));
        let big = vec![0u8; 4096];
        let err = tokio::time::timeout(EVENTUALLY, guarded.write_all(&big))
            .await
            .expect("the stall limit ends the write")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
