//! `serve` answers on a real socket and stops cleanly when the shutdown future completes.

use std::time::Duration;

use points_gateway::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{CLOSED_GRPC_URL, config};

#[tokio::test]
async fn serve_answers_over_tcp_and_stops_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, config(CLOSED_GRPC_URL), async {
        let _ = stopped.await;
    }));

    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains(r#"{"code":0,"message":"OK","data":{"status":"ok"}}"#),
        "{response}"
    );

    stop.send(()).expect("server still running");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops in time")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
}

/// Opens `count` connections that never send a byte.
async fn idle_connections(
    address: std::net::SocketAddr,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(
            tokio::net::TcpStream::connect(address)
                .await
                .expect("connect"),
        );
    }
    streams
}

/// True once the server has closed `stream` (end of file or a reset), waiting at most `within`.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn healthz(address: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn idle_connections_are_closed_and_others_are_served_meanwhile() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("local address");
    let mut gateway_config = config(CLOSED_GRPC_URL);
    gateway_config.request_timeout = Duration::from_millis(200);
    gateway_config.connection_limits = points_gateway::connections::ConnectionLimits {
        connections_max: 10_000,
        idle_timeout: Duration::from_millis(800),
        header_read_timeout: Duration::from_secs(10),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, gateway_config, async {
        let _ = stopped.await;
    }));
    let started = std::time::Instant::now();
    let mut idle = idle_connections(address, 2_000).await;
    // Served meanwhile.
    assert!(healthz(address).await.starts_with("HTTP/1.1 200 OK"));
    // Every idle connection is closed by the server within the idle timeout (plus scheduling slack).
    for stream in &mut idle {
        assert!(
            closed_by_server(stream, Duration::from_secs(5)).await,
            "an idle connection stayed open"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(healthz(address).await.starts_with("HTTP/1.1 200 OK"));
    stop.send(()).expect("server still running");
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

#[tokio::test]
async fn connections_beyond_the_bound_are_closed_at_once_and_those_within_it_are_served() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("local address");
    let mut gateway_config = config(CLOSED_GRPC_URL);
    gateway_config.connection_limits = points_gateway::connections::ConnectionLimits {
        connections_max: 50,
        idle_timeout: Duration::from_secs(60),
        header_read_timeout: Duration::from_secs(10),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, gateway_config, async {
        let _ = stopped.await;
    }));
    let _held = idle_connections(address, 50).await;
    let mut extra = idle_connections(address, 5).await;
    for stream in &mut extra {
        assert!(
            closed_by_server(stream, Duration::from_secs(2)).await,
            "a connection beyond the bound stayed open"
        );
    }
    drop(_held);
    // Freed places are taken again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            .await;
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        if response.starts_with("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "places were not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).expect("server still running");
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

/// Writes `bytes` one at a time, `pause` apart, until the server closes the connection or they run out; true if it
/// closed the connection.
async fn trickle(stream: &mut tokio::net::TcpStream, bytes: &[u8], pause: Duration) -> bool {
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    false
}

/// True once the server has ended `stream` (whatever it wrote first), waiting at most `within`.
async fn ended_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(within, stream.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn slowloris_connections_are_closed_within_the_header_read_timeout_and_others_are_served() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("local address");
    let mut gateway_config = config(CLOSED_GRPC_URL);
    // The idle timeout is long: trickled bytes keep a connection out of it, the header-read timeout must close it.
    gateway_config.connection_limits = points_gateway::connections::ConnectionLimits {
        connections_max: 10_000,
        idle_timeout: Duration::from_secs(60),
        header_read_timeout: Duration::from_millis(1_000),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, gateway_config, async {
        let _ = stopped.await;
    }));
    let started = std::time::Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut clients = Vec::new();
    for slow in 0..20 {
        clients.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            if slow % 2 == 1 {
                // The request line and Host at once (past the first bytes), then the rest of the headers slowly.
                stream.write_all(&request[..40]).await.expect("write");
                trickle(&mut stream, &request[40..], Duration::from_millis(100)).await
                    || ended_by_server(&mut stream, Duration::from_secs(3)).await
            } else {
                // Even the first bytes slowly.
                trickle(&mut stream, request, Duration::from_millis(200)).await
                    || ended_by_server(&mut stream, Duration::from_secs(3)).await
            }
        }));
    }
    // Served meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(healthz(address).await.starts_with("HTTP/1.1 200 OK"));
    for client in clients {
        assert!(
            client.await.expect("client task"),
            "a slowloris connection was never closed"
        );
    }
    // Each trickling client would need 6 s or more to finish; the header-read timeout is 1 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(healthz(address).await.starts_with("HTTP/1.1 200 OK"));
    stop.send(()).expect("server still running");
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
