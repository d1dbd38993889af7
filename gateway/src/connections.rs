//! Connection hygiene for both listeners (REST here, gRPC in the server): a bound on open connections and a close
//! of connections that stay idle (SPEC §14).
//!
//! * **Bound**: at most `connections_max` connections are open at once; one accepted beyond that is closed at
//!   once (counted in `connections_refused_total`; those within it in `connections_accepted_total`), so a flood of
//!   connections cannot use up the process's file descriptors and starve the clients already connected.
//! * **Idle timeout**: a connection on which nothing is read or written for `idle_timeout` is closed: idle TCP
//!   connections, slow or stalled clients, and half-open connections go away on their own. Legitimate idle gRPC
//!   channels stay open through HTTP/2 keep-alive pings, which are traffic. A request that takes longer than the
//!   idle timeout to answer would be cut, so the timeout must stay above the request timeout (the config checks it).
//! * **Header-read timeout** (slowloris): a client that trickles bytes keeps a connection out of the idle timeout,
//!   so a new connection must also deliver its first [`HANDSHAKE_BYTES`] bytes (the HTTP/2 preface, or the start of
//!   an HTTP/1 request) within `header_read_timeout` of being accepted. On the REST listener, hyper additionally
//!   closes an HTTP/1 connection whose request headers are not complete within that time, request after request
//!   (see `serve`); on the gRPC listener every call's headers arrive on a connection that has passed the handshake,
//!   within HTTP/2's bound on concurrent streams.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub connections_max: usize,
    /// Close a connection after this long without traffic.
    pub idle_timeout: Duration,
    /// Close a connection whose first bytes (and, over HTTP/1, whose request headers) take longer than this.
    pub header_read_timeout: Duration,
}

/// The bytes a new connection must send within the header-read timeout: the length of the HTTP/2 client preface,
/// shorter than any HTTP/1 request line with its `Host` header.
pub const HANDSHAKE_BYTES: usize = 24;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            connections_max: 10_000,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// A TCP listener whose connections are bounded in number and closed when idle.
pub struct GuardedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    /// Which listener, for the metric.
    name: &'static str,
}

impl GuardedListener {
    /// Guards `listener`; `name` labels its metrics.
    pub fn new(
        listener: TcpListener,
        limits: ConnectionLimits,
        name: &'static str,
    ) -> GuardedListener {
        GuardedListener {
            listener,
            permits: Arc::new(Semaphore::new(limits.connections_max)),
            idle_timeout: limits.idle_timeout,
            header_read_timeout: limits.header_read_timeout,
            name,
        }
    }

    /// The next connection within the bound (those beyond it are closed as they arrive).
    pub async fn accept_guarded(&self) -> (GuardedStream, SocketAddr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or the peer gave up before accept: wait a moment, go on.
                    tracing::debug!(%error, listener = self.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                metrics::counter!("connections_refused_total", "listener" => self.name)
                    .increment(1);
                drop(stream);
                continue;
            };
            metrics::counter!("connections_accepted_total", "listener" => self.name).increment(1);
            // A response written in pieces must not wait for the client's delayed ACK (40 ms on Linux).
            let _ = stream.set_nodelay(true);
            return (
                GuardedStream::new(stream, permit, self.idle_timeout, self.header_read_timeout),
                address,
            );
        }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that holds its place in the bound and fails its I/O once idle for too long.
pub struct GuardedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Until the first [`HANDSHAKE_BYTES`] bytes are read: when they must have been, and how many have been.
    handshake: Option<(Instant, usize)>,
}

impl GuardedStream {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        header_read_timeout: Duration,
    ) -> GuardedStream {
        let handshake_until = Instant::now() + header_read_timeout;
        GuardedStream {
            stream,
            _permit: permit,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep_until(
                handshake_until.min(Instant::now() + idle_timeout),
            )),
            handshake: Some((handshake_until, 0)),
        }
    }

    /// The underlying stream (for its addresses).
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    fn active(&mut self) {
        let mut next = Instant::now() + self.idle_timeout;
        if let Some((handshake_until, _)) = self.handshake {
            next = next.min(handshake_until);
        }
        self.deadline.as_mut().reset(next);
    }

    /// `count` bytes were read: traffic, and perhaps the end of the handshake.
    fn read(&mut self, count: usize) {
        if let Some((_, read)) = &mut self.handshake {
            *read += count;
            if *read >= HANDSHAKE_BYTES {
                self.handshake = None;
            }
        }
        self.active();
    }

    /// A write's result: bytes written count as traffic; a pending write checks the idle deadline.
    fn after_write(
        &mut self,
        context: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.active();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_idle(context).map(Err),
        }
    }

    /// While the I/O is pending: an error once the deadline has passed (the waker is registered either way).
    fn poll_idle(&mut self, context: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.deadline.as_mut().poll(context));
        if self
            .handshake
            .is_some_and(|(handshake_until, _)| Instant::now() >= handshake_until)
        {
            metrics::counter!("connections_slow_closed_total").increment(1);
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection's first request was not sent within the header-read timeout",
            ));
        }
        metrics::counter!("connections_idle_closed_total").increment(1);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle for too long",
        ))
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buffer.filled().len();
        match Pin::new(&mut self.stream).poll_read(context, buffer) {
            Poll::Ready(Ok(())) => {
                let read = buffer.filled().len() - before;
                if read > 0 {
                    self.read(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_idle(context).map(Err),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(context, buffer);
        self.after_write(context, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(context, buffers);
        self.after_write(context, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The peer address of a REST connection, for handlers (`ConnectInfo<ClientAddr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);
