//! Connection hygiene for both listeners (REST here, gRPC in the server): a bound on open connections and a close
//! of connections that stay idle (SPEC §14).
//!
//! * **Bound**: at most `connections_max` connections are open at once; one accepted beyond that is closed at
//!   once (counted in `connections_refused_total`), so a flood of connections cannot use up the process's file
//!   descriptors and starve the clients already connected.
//! * **Idle timeout**: a connection on which nothing is read or written for `idle_timeout` is closed: idle TCP
//!   connections, slow or stalled clients, and half-open connections go away on their own. Legitimate idle gRPC
//!   channels stay open through HTTP/2 keep-alive pings, which are traffic. A request that takes longer than the
//!   idle timeout to answer would be cut, so the timeout must stay above the request timeout (the config checks it).

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
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            connections_max: 10_000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A TCP listener whose connections are bounded in number and closed when idle.
pub struct GuardedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
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
            // A response written in pieces must not wait for the client's delayed ACK (40 ms on Linux).
            let _ = stream.set_nodelay(true);
            return (
                GuardedStream::new(stream, permit, self.idle_timeout),
                address,
            );
        }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_guarded().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection that holds its place in the bound and fails its I/O once idle for too long.
pub struct GuardedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl GuardedStream {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
    ) -> GuardedStream {
        GuardedStream {
            stream,
            _permit: permit,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    /// The underlying stream (for its addresses).
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    fn active(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.deadline.as_mut().reset(next);
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
                if buffer.filled().len() > before {
                    self.active();
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

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> ClientAddr {
        ClientAddr(*stream.remote_addr())
    }
}
