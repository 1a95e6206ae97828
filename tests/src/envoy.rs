//! Starting, probing and stopping a real Envoy.

use crate::client::{self, Request, Response};
use crate::config::EnvoyConfig;
use crate::process::Process;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long Envoy may take to become ready (V8 compiles each module per
/// worker; a loaded CI machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a gatehouse metric read waits for the filters' counter flush:
/// three flush periods (the tick can run late on a loaded worker).
pub const COUNTER_FLUSH_WAIT: Duration = Duration::from_millis(300);

/// A running Envoy. Killed on drop; its log is printed if the test panicked.
pub struct Envoy {
    process: Process,
    pub dir: PathBuf,
    pub admin_port: u16,
    pub http_port: u16,
    pub tls_port: Option<u16>,
}

/// Envoy did not become ready: its exit status (if it exited) and log.
#[derive(Debug)]
pub struct StartFailure {
    pub exited: Option<i32>,
    pub log: String,
}

impl Envoy {
    /// Starts Envoy with `cfg`; panics with Envoy's log if it does not start.
    pub fn start(cfg: &EnvoyConfig) -> Envoy {
        match Envoy::try_start(cfg) {
            Ok(e) => e,
            Err(f) => panic!("Envoy did not start (exit {:?}). Log:\n{}", f.exited, f.log),
        }
    }

    /// Starts Envoy; `Err` carries the log when it exits or never gets ready.
    pub fn try_start(cfg: &EnvoyConfig) -> Result<Envoy, StartFailure> {
        Envoy::try_start_with(cfg, &crate::envoy_bin(), &[])
    }

    /// Starts a given Envoy binary with extra command-line arguments.
    pub fn try_start_with(
        cfg: &EnvoyConfig,
        bin: &Path,
        extra_args: &[&str],
    ) -> Result<Envoy, StartFailure> {
        let dir = crate::scratch_dir("envoy");
        let cfg_path = dir.join("envoy.json");
        std::fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(&cfg.bootstrap()).unwrap(),
        )
        .unwrap();
        Envoy::spawn(
            &dir,
            &cfg_path,
            cfg.concurrency,
            cfg.tls.is_some(),
            bin,
            extra_args,
        )
    }

    /// Starts Envoy on an existing bootstrap file (YAML or JSON).
    pub fn spawn(
        dir: &Path,
        cfg_path: &Path,
        concurrency: u32,
        expect_tls: bool,
        bin: &Path,
        extra_args: &[&str],
    ) -> Result<Envoy, StartFailure> {
        let log_path = dir.join("envoy.log");
        let admin_file = dir.join("admin-address");
        let _ = std::fs::remove_file(&admin_file);
        let log_file = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(cfg_path)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-level")
            .arg("info")
            .arg("--log-format")
            .arg("[%Y-%m-%d %T.%e][%t][%l][%n] %v")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut envoy = Envoy {
            process: Process::new("Envoy", child, dir.to_path_buf(), log_path),
            dir: dir.to_path_buf(),
            admin_port: 0,
            http_port: 0,
            tls_port: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(exited) = envoy.process.exited() {
                return Err(StartFailure {
                    exited,
                    log: envoy.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(StartFailure {
                    exited: None,
                    log: envoy.log(),
                });
            }
            if envoy.admin_port == 0 {
                if let Ok(s) = std::fs::read_to_string(&admin_file) {
                    if let Some(p) = s.trim().rsplit(':').next().and_then(|p| p.parse().ok()) {
                        envoy.admin_port = p;
                    }
                }
            }
            if envoy.admin_port != 0
                && envoy
                    .admin_get("/ready")
                    .map(|b| b.trim() == "LIVE")
                    .unwrap_or(false)
            {
                if let Some(ports) = envoy.listener_ports() {
                    if let Some(p) = ports.get("plain") {
                        envoy.http_port = *p;
                        envoy.tls_port = ports.get("tls").copied();
                        if !expect_tls || envoy.tls_port.is_some() {
                            return Ok(envoy);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Listener name → bound port, from the admin API.
    pub fn listener_ports(&self) -> Option<BTreeMap<String, u16>> {
        let body = self.admin_get("/listeners?format=json")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let mut out = BTreeMap::new();
        for l in v.get("listener_statuses")?.as_array()? {
            let name = l.get("name")?.as_str()?.to_string();
            let port = l
                .pointer("/local_address/socket_address/port_value")?
                .as_u64()?;
            if port != 0 {
                out.insert(name, u16::try_from(port).ok()?);
            }
        }
        Some(out)
    }

    /// GET on the admin port; the body on 2xx.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        admin_request(self.admin_port, "GET", path)
    }

    /// POST on the admin port (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) -> Option<String> {
        admin_request(self.admin_port, "POST", path)
    }

    /// All counters and gauges (`/stats`), name → value.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let body = self.admin_get("/stats").unwrap_or_default();
        body.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// A counter or gauge by exact name. A name Envoy does not have fails
    /// the test (a typo must never read as 0), listing the names that share
    /// its first segment.
    pub fn counter(&self, name: &str) -> u64 {
        let stats = self.stats();
        match stats.get(name) {
            Some(v) => *v,
            None => panic!("{}", missing_stat(name, &stats)),
        }
    }

    /// A gatehouse metric: Envoy exposes Wasm metrics with a `wasmcustom.`
    /// prefix; this accepts the name with or without it. A name Envoy does
    /// not have fails the test: filters define their counters at
    /// configuration time, so an absent name is a typo or a missing counter.
    pub fn metric(&self, name: &str) -> u64 {
        self.metric_opt(name)
            .unwrap_or_else(|| panic!("{}", missing_stat(name, &self.stats())))
    }

    /// A gatehouse metric that may legitimately not exist (yet): `None`
    /// when Envoy has no such name. The filters count in the VM and hand
    /// their counters to Envoy on a tick (every 100 ms,
    /// `gatehouse_proxy::counters::FLUSH_PERIOD`), so the read first waits
    /// [`COUNTER_FLUSH_WAIT`]: everything answered before the call is then
    /// in the stats.
    pub fn metric_opt(&self, name: &str) -> Option<u64> {
        std::thread::sleep(COUNTER_FLUSH_WAIT);
        let stats = self.stats();
        stats
            .get(name)
            .or_else(|| stats.get(&format!("wasmcustom.{name}")))
            .copied()
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until the log contains `needle` (bounded).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends `req` over HTTP/1.1 to the plain listener.
    pub fn send_h1(&self, req: &Request) -> Response {
        client::send_h1(self.http_port, req)
    }

    /// Sends `req` over HTTP/2 (prior knowledge) to the plain listener.
    pub fn send_h2(&self, req: &Request) -> Response {
        client::send_h2(self.http_port, req)
    }

    /// Sends raw bytes to the plain listener and parses the HTTP/1.1 answer.
    pub fn send_raw(&self, bytes: &[u8]) -> Response {
        client::send_raw(self.http_port, bytes)
    }

    /// Sends `req` over HTTP/1.1 + TLS to the TLS listener.
    pub fn send_h1_tls(&self, req: &Request, tls: &client::TlsClient) -> Response {
        let port = self.tls_port.expect("this Envoy has no TLS listener");
        client::send_h1_tls(port, req, tls)
    }

    /// The process id (for resource measurements).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops Envoy now.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

fn admin_request(port: u16, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .ok()?;
    let buf = client::read_response(&mut s, false);
    let resp = client::parse_response(&buf)?;
    if (200..300).contains(&resp.status) {
        Some(String::from_utf8_lossy(&resp.body).to_string())
    } else {
        None
    }
}

/// The failure message for a stat name Envoy does not have.
fn missing_stat(name: &str, stats: &BTreeMap<String, u64>) -> String {
    let bare = name.strip_prefix("wasmcustom.").unwrap_or(name);
    let first = bare.split('.').next().unwrap_or(bare);
    let near: Vec<&String> = stats
        .keys()
        .filter(|k| {
            k.strip_prefix("wasmcustom.")
                .unwrap_or(k)
                .starts_with(first)
        })
        .take(60)
        .collect();
    format!("Envoy has no stat `{name}`; names starting with `{first}`: {near:?}")
}
