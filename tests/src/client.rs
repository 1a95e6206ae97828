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

/// Parses a complete HTTP/1.1 response (as [`read_response`] returns it).
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

/// Where the first complete HTTP/1.1 response in `buf` ends, by its
/// framing: `None` while more bytes are needed. Interim 1xx heads (except
/// 101) are part of the exchange and are skipped; a response to HEAD, a 204
/// and a 304 end with their head; `transfer-encoding: chunked` ends with
/// the last chunk and the trailers; `content-length` after that many bytes.
/// A response with neither framing header is delimited by the peer's close,
/// so it is never complete here (the caller reads to the end).
pub fn response_end(buf: &[u8], head_request: bool) -> Option<usize> {
    let mut start = 0;
    loop {
        let rest = buf.get(start..)?;
        let head_len = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(rest.get(..head_len)?).ok()?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let body_start = start + head_len;
        if (100..200).contains(&status) && status != 101 {
            start = body_start;
            continue;
        }
        if head_request || status == 204 || status == 304 || status == 101 {
            return Some(body_start);
        }
        let mut chunked = false;
        let mut length = None;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            }
        }
        if chunked {
            return chunked_end(buf.get(body_start..)?).map(|n| body_start + n);
        }
        let len = length?;
        return (buf.len() >= body_start + len).then_some(body_start + len);
    }
}

/// The length of a complete chunked body (chunks, last chunk, trailers and
/// the final empty line), or `None` while it is incomplete.
fn chunked_end(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let line_len = data.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(data.get(pos..pos + line_len)?).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        pos += line_len + 2;
        if size == 0 {
            // Trailers, each ending in CRLF, then an empty line.
            loop {
                let l = data.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
                pos += l + 2;
                if l == 0 {
                    return Some(pos);
                }
            }
        }
        pos += size + 2;
        if data.len() < pos {
            return None;
        }
    }
}

/// Reads one response from `r`: up to the end its framing gives (see
/// [`response_end`]), or to the peer's close when it has no framing. It does
/// not wait for the close after a framed response: Envoy delays closing a
/// `connection: close` connection until the client closes (up to its
/// `delayed_close_timeout`, 1 s), which the caller does by dropping the
/// stream. Bytes after the response are not read.
pub fn read_response<R: Read>(r: &mut R, head_request: bool) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = response_end(&buf, head_request) {
            buf.truncate(end);
            return buf;
        }
        match r.read(&mut chunk) {
            Ok(0) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A timeout or a reset: the caller reports what arrived.
            Err(_) => return buf,
        }
    }
}

/// Whether raw request bytes are a HEAD request (its answer has no body).
fn is_head(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HEAD ")
}

/// Sends raw bytes and reads the one answer (framed; see [`read_response`]).
pub fn send_raw(port: u16, bytes: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to Envoy");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(bytes).expect("send request");
    let buf = read_response(&mut s, is_head(bytes));
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
    let buf = read_response(&mut stream, req.method == "HEAD");
    parse_response(&buf).unwrap_or_else(|| {
        panic!(
            "no valid HTTP/1.1 response over TLS: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::response_end;

    #[test]
    fn a_response_ends_where_its_framing_says() {
        let cl = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcEXTRA";
        assert_eq!(response_end(cl, false), Some(cl.len() - 5));
        assert_eq!(response_end(&cl[..cl.len() - 6], false), None);
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(response_end(head, true), Some(head.len()));
        assert_eq!(response_end(head, false), None);
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(response_end(chunked, false), Some(chunked.len()));
        assert_eq!(response_end(&chunked[..chunked.len() - 2], false), None);
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(response_end(no_content, false), Some(no_content.len()));
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(response_end(interim, false), Some(interim.len()));
        // No framing header: delimited by the close only.
        assert_eq!(response_end(b"HTTP/1.0 200 OK\r\n\r\nabc", false), None);
    }
}
