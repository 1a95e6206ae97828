//! client-id with a remote JWKS: a local HTTP server behind an Envoy cluster
//! serves the keys; fetch, cache, rotation (a new `kid` is picked up),
//! bounded refreshes for unknown kids, stale keys served while the server is
//! down, and no keys at all => refused (never passed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::*;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant};

/// A tiny JWKS server on 127.0.0.1 (HTTP/1.1, one request per connection).
struct JwksServer {
    port: u16,
    delay: Arc<Mutex<StdDuration>>,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let delay = Arc::new(Mutex::new(StdDuration::ZERO));
        let (b, h, s, d) = (body.clone(), hits.clone(), stop.clone(), delay.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 10 minutes, stops when asked.
            let deadline = Instant::now() + StdDuration::from_secs(600);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let wait = *d.lock().unwrap();
                        serve(conn, &b, &h, wait)
                    }
                    Err(_) => std::thread::sleep(StdDuration::from_millis(5)),
                }
            }
            // The listener is dropped here: connections are refused.
        });
        JwksServer {
            port,
            delay,
            body,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn serve(mut conn: TcpStream, body: &Mutex<String>, hits: &AtomicU32, delay: StdDuration) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(StdDuration::from_secs(2)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    assert!(head.starts_with("GET /keys.json "), "{head}");
    hits.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(delay);
    let body = body.lock().unwrap().clone();
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
}

fn jwk(kp: &ES256KeyPair, kid: &str) -> Value {
    let mut j: Value = serde_json::from_str(&kp.public_key().to_jwk()).unwrap();
    j["kid"] = json!(kid);
    j
}

fn jwks(keys: &[Value]) -> String {
    // An encryption key and an unsupported key type are skipped, as real
    // IdPs publish such keys next to signing keys.
    let mut all = keys.to_vec();
    all.push(json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}));
    all.push(json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}));
    json!({"keys": all}).to_string()
}

fn token(kp: &ES256KeyPair, iss: &str, sub: &str) -> String {
    kp.sign(
        Claims::create(Duration::from_mins(10))
            .with_issuer(iss)
            .with_subject(sub),
    )
    .unwrap()
}

#[test]
fn iface_remote_jwks_fetch_cache_rotation_and_outage() {
    let echo = Echo::start("echo");
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let k2 = ES256KeyPair::generate().with_key_id("k2");
    let k3 = ES256KeyPair::generate().with_key_id("k3");
    let mut server = JwksServer::start(jwks(&[jwk(&k1, "k1")]));
    // A cluster where nothing listens: its issuer never has keys.
    let dead_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let remote = |cluster: &str| {
        json!({"cluster": cluster, "path": "/keys.json", "authority": "idp.test",
               "cache_seconds": 4, "min_refresh_interval_seconds": 2, "timeout_ms": 1000})
    };
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .cluster("jwks", server.port)
            .cluster("jwks-dead", dead_port)
            // One worker: one cache, so fetch counts are exact.
            .concurrency(1)
            .filter(WasmFilter::new(
                "client-id",
                json!({"jwt": {"issuers": [
                    {"issuer": "https://idp.test", "remote_jwks": remote("jwks")},
                    {"issuer": "https://down.test", "remote_jwks": remote("jwks-dead")}
                ]}}),
            )),
    );
    // HTTP/2: a local reply over HTTP/1.1 with `connection: close` is held
    // up to Envoy's 1 s delayed-close timeout, which would blur the timing.
    let send = |t: &str| {
        envoy.send_h2(
            &Request::get("/r")
                .header("authorization", &format!("Bearer {t}"))
                .header("x-client-id", "forged"),
        )
    };
    let ok = |t: &str, who: &str| {
        let r = send(t);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echo().header_all("x-client-id"), vec![who]);
    };

    // Signing is slow in a debug build: sign everything before the timed part.
    let [alice, bob, carol, mallory, dave, erin, down] = [
        (&k1, "https://idp.test", "alice"),
        (&k1, "https://idp.test", "bob"),
        (&k2, "https://idp.test", "carol"),
        (&k3, "https://idp.test", "mallory"),
        (&k1, "https://idp.test", "dave"),
        (&k2, "https://idp.test", "erin"),
        (&k1, "https://down.test", "frank"),
    ]
    .map(|(k, iss, sub)| token(k, iss, sub));

    // First use fetches; the next uses the cache.
    ok(&alice, "alice");
    assert_eq!(server.hits(), 1);
    ok(&bob, "bob");
    assert_eq!(server.hits(), 1);

    // Rotation: a token with the new kid triggers one refresh (the minimum
    // interval since the first fetch has passed).
    server.set(jwks(&[jwk(&k1, "k1"), jwk(&k2, "k2")]));
    std::thread::sleep(StdDuration::from_millis(2100));
    ok(&carol, "carol");
    assert_eq!(server.hits(), 2);

    // A kid nobody publishes: refused, and no refresh within the interval.
    for _ in 0..3 {
        let r = send(&mallory);
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"], "unknown_kid");
    }
    assert_eq!(server.hits(), 2);

    // Server down: once the keys are stale the refresh fails, and the stale
    // keys keep serving.
    server.shut_down();
    std::thread::sleep(StdDuration::from_millis(4200));
    ok(&dave, "dave");
    ok(&erin, "erin");
    assert_eq!(envoy.metric("gatehouse.client_id.jwks_fetch_failures"), 1);

    // An issuer whose JWKS was never fetched: refused, never passed.
    for _ in 0..2 {
        let r = send(&down);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"], "jwks_unavailable");
        assert_eq!(r.header("retry-after"), Some("2"));
    }
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.jwks_unavailable"),
        2
    );
    // The first attempt fetched (and failed); the second, within the
    // interval, did not try again.
    assert_eq!(envoy.metric("gatehouse.client_id.jwks_fetches"), 4);
    assert_eq!(envoy.metric("gatehouse.client_id.jwks_fetch_failures"), 2);
    assert_eq!(envoy.metric("gatehouse.client_id.identified.jwt"), 5);
    assert_eq!(envoy.metric("gatehouse.client_id.rejected.unknown_kid"), 3);
}

#[test]
fn concurrent_requests_share_one_fetch() {
    let echo = Echo::start("echo");
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let server = JwksServer::start(jwks(&[jwk(&k1, "k1")]));
    // A slow JWKS server: every request below arrives while the first
    // fetch is in flight.
    *server.delay.lock().unwrap() = StdDuration::from_millis(800);
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .cluster("jwks", server.port)
            .concurrency(1)
            .filter(WasmFilter::new(
                "client-id",
                json!({"jwt": {"issuers": [{"issuer": "https://idp.test",
                    "remote_jwks": {"cluster": "jwks", "path": "/keys.json", "timeout_ms": 3000}}]}}),
            )),
    );
    let tokens: Vec<(String, String)> = (0..6)
        .map(|i| {
            let sub = format!("client-{i}");
            (token(&k1, "https://idp.test", &sub), sub)
        })
        .collect();
    let results: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, (t, sub))| {
                let envoy = &envoy;
                scope.spawn(move || {
                    std::thread::sleep(StdDuration::from_millis(50 * i as u64));
                    let r = envoy.send_h2(
                        &Request::get("/c").header("authorization", &format!("Bearer {t}")),
                    );
                    let who = (r.status == 200)
                        .then(|| r.echo().header("x-client-id").map(str::to_string))
                        .flatten();
                    (r.status, who, sub.clone())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, who, sub) in &results {
        assert_eq!(*status, 200, "{sub}");
        assert_eq!(who.as_deref(), Some(sub.as_str()));
    }
    if gatehouse_e2e::config::Delivery::from_env() == gatehouse_e2e::config::Delivery::Fused {
        // In a fused chain a request cannot be resumed from another
        // request's context: each one fetches for itself (documented).
        assert!(envoy.metric("gatehouse.client_id.jwks_fetches") >= 2);
    } else {
        assert_eq!(server.hits(), 1, "one fetch for all waiting requests");
        assert_eq!(envoy.metric("gatehouse.client_id.jwks_fetches"), 1);
    }
    assert_eq!(envoy.metric("gatehouse.client_id.identified.jwt"), 6);
}

#[test]
fn a_waiter_is_not_stranded_when_the_fetching_request_goes_away() {
    let echo = Echo::start("echo");
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let server = JwksServer::start(jwks(&[jwk(&k1, "k1")]));
    *server.delay.lock().unwrap() = StdDuration::from_millis(1500);
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .cluster("jwks", server.port)
            .concurrency(1)
            .filter(WasmFilter::new(
                "client-id",
                json!({"jwt": {"issuers": [{"issuer": "https://idp.test",
                    "remote_jwks": {"cluster": "jwks", "path": "/keys.json", "timeout_ms": 3000}}]}}),
            )),
    );
    let quitter = token(&k1, "https://idp.test", "quitter");
    let patient = token(&k1, "https://idp.test", "patient");
    // The first request starts the fetch, then its client goes away.
    let mut a = TcpStream::connect(("127.0.0.1", envoy.http_port)).unwrap();
    a.write_all(
        format!("GET /a HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {quitter}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let r = std::thread::scope(|scope| {
        let b = scope.spawn(|| {
            std::thread::sleep(StdDuration::from_millis(150));
            envoy.send_h2(&Request::get("/b").header("authorization", &format!("Bearer {patient}")))
        });
        std::thread::sleep(StdDuration::from_millis(400));
        drop(a);
        b.join().unwrap()
    });
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().header("x-client-id"), Some("patient"));
    assert!(started.elapsed() < StdDuration::from_secs(8));
    if gatehouse_e2e::config::Delivery::from_env() != gatehouse_e2e::config::Delivery::Fused {
        // The abandoned fetch and the one the root sent for the waiter.
        assert_eq!(envoy.metric("gatehouse.client_id.jwks_fetches"), 2);
    }
}
