//! The bounds of both listeners: how many connections may be open at once, how long one may
//! stay silent, how long a stop waits for what is in flight, and the process's file-descriptor
//! limit that the connections live within.
//!
//! This module owns accepting connections and closing the ones past their bounds. It must never
//! look into what a connection carries (requests, roles, certificates: those belong to the
//! gRPC handlers and the HTTP routes) and never hold a connection beyond its slot.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, Sleep};

/// An accepted connection holding one slot of its listener, closed (with a `TimedOut` error
/// to whoever reads or writes it) once it has passed `idle` without a byte either way.
pub struct Bounded<IO> {
    inner: IO,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl<IO> Bounded<IO> {
    fn new(inner: IO, idle: Duration, slot: OwnedSemaphorePermit) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            _slot: slot,
        }
    }

    fn touch(&mut self) {
        // The timer is re-armed only when it fires: a busy connection costs a clock read per
        // operation, not a timer update.
        self.last_activity = Instant::now();
    }

    /// Called when the inner IO is not ready: is the connection past its silence?
    fn poll_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last_activity + self.idle;
            if due <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle past its listener's idle_timeout_secs",
                )));
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Bounded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_idle(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Bounded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.poll_idle(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.poll_idle(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_idle(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// tonic reads the caller's certificate from the connect info of the TLS stream over this
/// connection (`TlsConnectInfo<TcpConnectInfo>`): the slot is invisible to it.
impl tonic::transport::server::Connected for Bounded<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Which listener, for the logs: `gRPC` or `HTTP`.
    pub name: &'static str,
    pub max_connections: usize,
    pub idle: Duration,
}

/// Accepts connections on `listener` until `stop`, each holding a slot of `bounds`, and hands
/// them on. A connection beyond `max_connections` is closed at once: it costs its peer a
/// reconnection, and the service nothing but the accept. When the accept loop stops, the
/// listening socket is closed and the receiver ends.
pub fn accept(
    listener: TcpListener,
    bounds: Bounds,
    mut stop: watch::Receiver<bool>,
) -> mpsc::Receiver<Bounded<TcpStream>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    tokio::spawn(async move {
        let mut refused: u64 = 0;
        let mut last_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = listener.accept() => accepted,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors, or a peer gone before we took it: wait a little
                    // rather than spin on an error that the next accept would repeat.
                    tracing::warn!(listener = bounds.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused += 1;
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(
                        listener = bounds.name,
                        max_connections = bounds.max_connections,
                        refused,
                        "connection limit reached: new connections are closed"
                    );
                    last_warning = Some(Instant::now());
                }
                continue;
            };
            // A response written in several pieces must not wait for the peer's delayed ACK.
            let _ = tcp.set_nodelay(true);
            if tx.send(Bounded::new(tcp, bounds.idle, slot)).await.is_err() {
                break;
            }
        }
        tracing::info!(listener = bounds.name, "stopped accepting");
    });
    rx
}

/// Resolves `grace` after `stop` turned true: the moment a stop gives up waiting.
pub async fn deadline(mut stop: watch::Receiver<bool>, grace: Duration) {
    let _ = stop.wait_for(|s| *s).await;
    tokio::time::sleep(grace).await;
}

/// Runs `work` until it ends by itself or until `grace` after the stop, whichever is first.
/// Cut off, `work` is dropped: its open connections close with it.
pub async fn within_grace<T>(
    what: &'static str,
    work: impl Future<Output = anyhow::Result<T>>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<Option<T>> {
    tokio::select! {
        done = work => done.map(Some),
        _ = deadline(stop, grace) => {
            tracing::warn!(what, grace_secs = grace.as_secs(), "still busy when the stop's grace ran out: closed");
            Ok(None)
        }
    }
}

/// Serves HTTP/1.1 on the connections `conns` brings, with a header-read timeout (which also
/// bounds a keep-alive connection waiting for its next request). When `conns` ends (the
/// listener stopped accepting), idle connections close at once and each busy one after its
/// answer; this returns when none is left.
pub async fn serve_http(
    mut conns: mpsc::Receiver<Bounded<TcpStream>>,
    app: axum::Router,
    header_read_timeout: Duration,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let service = hyper_util::service::TowerToHyperService::new(app);
    while let Some(io) = conns.recv().await {
        let conn = builder.serve_connection(TokioIo::new(io), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection closed on an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Raises the soft limit of open files to the hard limit, so that both listeners' connection
/// limits fit; warns when they still do not. Gives the soft limit in force.
pub fn raise_fd_limit(needed: u64) -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum,
            Err(e) => tracing::warn!(error = %e, "could not raise RLIMIT_NOFILE to its hard limit"),
        }
    }
    if let Some(soft) = soft
        && soft < needed
    {
        tracing::warn!(
            soft_limit = soft,
            needed,
            "RLIMIT_NOFILE is below [grpc] max_connections + [http] max_connections plus the service's own files: past it, new connections fail to be accepted"
        );
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_connection_times_out_and_a_busy_one_does_not() {
        let idle = Duration::from_millis(300);
        let slots = Arc::new(Semaphore::new(1));
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = Bounded::new(a, idle, slots.clone().try_acquire_owned().unwrap());
        // A byte every 200 ms keeps it open past 300 ms.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            b.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            conn.read_exact(&mut byte).await.unwrap();
        }
        // Then silence: the next read fails as timed out, no sooner than 300 ms after the
        // last byte.
        let started = Instant::now();
        let mut byte = [0u8; 1];
        let e = conn.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= idle / 2);
        // Its slot comes back when it is dropped.
        assert_eq!(slots.available_permits(), 0);
        drop(conn);
        assert_eq!(slots.available_permits(), 1);
    }
}
