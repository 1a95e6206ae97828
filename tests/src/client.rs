//! Test clients: raw HTTP/1.1 (any bytes, any header), HTTP/2 with prior
//! knowledge (h2c), and HTTP/1.1 over TLS (optionally with a client cert).

use crate::echo::EchoSeen;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to send. Header values are bytes so tests can send anything.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// `Host` (HTTP/1.1) or `:authority` (HTTP/2). Default `example.com`.
    pub authority: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// HTTP/2 `:scheme` (default `http`; HTTP/1.1 has none).
    pub scheme: String,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            authority: "example.com".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            scheme: "http".to_string(),
        }
    }

    /// Sends this `:scheme` over HTTP/2 (e.g. a client claiming `https` on
    /// a plain connection).
    pub fn scheme(mut self, scheme: &str) -> Request {
        self.scheme = scheme.to_string();
        self
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    pub fn host(mut self, authority: &str) -> Request {
        self.authority = authority.to_string();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }

    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Request {
        self.headers.push((name.to_string(), value.to_vec()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self
    }

    /// The HTTP/1.1 bytes of this request (`connection: close`).
    pub fn to_h1_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, self.path).as_bytes());
        out.extend_from_slice(format!("host: {}\r\n", self.authority).as_bytes());
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response as the client received it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-case names, arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?} {}", self.status, self.text()))
    }

    /// What the echo upstream saw; panics when the answer is not the echo's.
    pub fn echo(&self) -> EchoSeen {
        let v = self.json();
        EchoSeen::parse(&v).unwrap_or_else(|| panic!("not an echo answer: {}", self.text()))
    }
}

/// Parses a complete HTTP/1.1 response (read until the peer closed).
pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let raw_body = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    // A response to HEAD (or a 1xx/204/304) has no body whatever its
    // framing headers say; with `connection: close` nothing follows.
    let body = if raw_body.is_empty() {
        Vec::new()
    } else if chunked {
        dechunk(raw_body)?
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        raw_body.get(..len)?.to_vec()
    } else {
        raw_body.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Sends raw bytes and reads the answer until the connection closes.
pub fn send_raw(port: u16, bytes: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to Envoy");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(bytes).expect("send request");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf).unwrap_or_else(|| {
        panic!(
            "no valid HTTP/1.1 response ({} bytes): {:?}",
            buf.len(),
            String::from_utf8_lossy(&buf)
        )
    })
}

pub fn send_h1(port: u16, req: &Request) -> Response {
    send_raw(port, &req.to_h1_bytes())
}

/// Sends one request over a new HTTP/2 connection (h2c prior knowledge).
pub fn send_h2(port: u16, req: &Request) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(IO_TIMEOUT, h2_request(port, req))
            .await
            .expect("HTTP/2 request timed out")
    })
}

async fn h2_request(port: u16, req: &Request) -> Response {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to Envoy");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri = format!("{}://{}{}", req.scheme, req.authority, req.path);
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(uri);
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_slice());
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body.clone())))
        .expect("valid HTTP/2 request");
    let resp = sender.send_request(request).await.expect("h2 response");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Response {
        status,
        headers,
        body,
    }
}

/// A TLS client configuration for tests.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
    /// SNI name to present.
    pub server_name: String,
}

/// Sends `req` over HTTP/1.1 + TLS.
pub fn send_h1_tls(port: u16, req: &Request, tls: &TlsClient) -> Response {
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to Envoy TLS");
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone()).expect("SNI");
    let conn = rustls::ClientConnection::new(tls.config.clone(), name).expect("TLS client");
    let mut stream = rustls::StreamOwned::new(conn, sock);
    stream.write_all(&req.to_h1_bytes()).expect("send over TLS");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    parse_response(&buf).unwrap_or_else(|| {
        panic!(
            "no valid HTTP/1.1 response over TLS: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}
