//! The echo upstream: answers every request with what it received, as JSON:
//! `{"upstream": NAME, "method": M, "path": P, "headers": [[name, value], ...], "body": B}`.
//! Header values that are not UTF-8 are sent lossily (tests never need them).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A running echo server (stops when the test process ends).
#[derive(Debug, Clone)]
pub struct Echo {
    pub name: String,
    pub port: u16,
}

impl Echo {
    /// Starts an echo server named `name` on a free loopback port, in a
    /// background thread.
    pub fn start(name: &str) -> Echo {
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = name.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
                let port = listener.local_addr().expect("addr").port();
                tx.send(port).expect("report port");
                serve(listener, owned).await;
            });
        });
        let port = rx.recv().expect("echo server started");
        Echo {
            name: name.to_string(),
            port,
        }
    }
}

/// Serves forever on `listener` (HTTP/1.1 and HTTP/2).
pub async fn serve(listener: TcpListener, name: String) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, name.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds and serves on `addr` (used by the `echo` binary).
pub async fn serve_on(addr: SocketAddr, name: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, name).await;
    Ok(())
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    name: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut headers: Vec<Value> = Vec::new();
    if let Some(auth) = req.uri().authority() {
        headers.push(json!([":authority", auth.as_str()]));
    }
    for (k, v) in req.headers() {
        headers.push(json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let doc = json!({
        "upstream": name,
        "method": method,
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let resp = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-echo-upstream", name.as_str())
        .body(Full::new(Bytes::from(doc.to_string())))
        .expect("response");
    Ok(resp)
}

/// What the echo upstream saw, parsed from its answer.
#[derive(Debug, Clone)]
pub struct EchoSeen {
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl EchoSeen {
    pub fn parse(v: &Value) -> Option<EchoSeen> {
        let headers = v
            .get("headers")?
            .as_array()?
            .iter()
            .filter_map(|pair| {
                let a = pair.as_array()?;
                Some((
                    a.first()?.as_str()?.to_string(),
                    a.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect();
        Some(EchoSeen {
            upstream: v.get("upstream")?.as_str()?.to_string(),
            method: v.get("method")?.as_str()?.to_string(),
            path: v.get("path")?.as_str()?.to_string(),
            headers,
            body: v.get("body")?.as_str()?.to_string(),
        })
    }

    /// First value of a request header as the upstream saw it (HTTP/1.1
    /// upstream: the host arrives as `host`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A fast upstream for benchmarks: answers every request `200 ok` without
/// looking at it.
pub fn start_fixed(name: &str) -> Echo {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr").port())
                .expect("report port");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    let port = rx.recv().expect("fixed upstream started");
    Echo {
        name: name.to_string(),
        port,
    }
}
