//! The tower layer under a plain hyper 1 server, over a real socket.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vishnu::{Session, SessionLayer};

async fn handler(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let session = req
        .extensions()
        .get::<Session>()
        .cloned()
        .expect("SessionLayer installed");
    let n = session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await
        .unwrap_or(0);
    Ok(Response::new(Full::new(Bytes::from(n.to_string()))))
}

async fn raw_get(addr: std::net::SocketAddr, cookie: Option<&str>) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{cookie}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn works_under_plain_hyper_1() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = common::builder().build().expect("config");
    let service = tower::ServiceBuilder::new()
        .layer(SessionLayer::new(config))
        .service_fn(handler);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let svc = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let first = raw_get(addr, None).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.ends_with("\r\n\r\n1"), "{first}");
    let set_cookie = first
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a Set-Cookie header");
    let pair = set_cookie.split(';').next().expect("pair");
    let second = raw_get(addr, Some(pair)).await;
    assert!(second.ends_with("\r\n\r\n2"), "{second}");
    server.abort();
}
