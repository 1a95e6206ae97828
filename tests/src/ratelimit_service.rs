//! The `gatehouse-ratelimit` service binary (services/ratelimit), started
//! from the workspace's target dir (`cargo build --workspace --bin
//! gatehouse-ratelimit`; `make build` does it). A missing binary fails the
//! test. Killed on drop; its log is printed when the test failed.

use crate::process::Process;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LISTENING: &str = "gatehouse-ratelimit listening on ";

/// The binary: `$GATEHOUSE_RATELIMIT_BIN`, else `<target>/debug/gatehouse-ratelimit`.
pub fn ratelimit_bin() -> PathBuf {
    let p = match std::env::var_os("GATEHOUSE_RATELIMIT_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::repo_root().join("target"));
            target.join("debug/gatehouse-ratelimit")
        }
    };
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bin gatehouse-ratelimit` (or `make build`)",
        p.display()
    );
    p
}

pub struct RateLimitService {
    process: Process,
    /// Where it listens (`127.0.0.1:<port>`).
    pub addr: String,
    pub port: u16,
    pub dir: PathBuf,
}

/// The service refused to start: exit code and stderr.
#[derive(Debug)]
pub struct ServiceFailure {
    pub exited: Option<i32>,
    pub log: String,
}

impl RateLimitService {
    /// Starts the service on a free port with this filter configuration.
    pub fn start(config_json: &str, redis_url: &str) -> RateLimitService {
        match RateLimitService::try_start(config_json, redis_url, "127.0.0.1:0") {
            Ok(s) => s,
            Err(f) => panic!(
                "gatehouse-ratelimit did not start (exit {:?}):\n{}",
                f.exited, f.log
            ),
        }
    }

    /// Starts the service; `Err` when it exits before printing its listening line.
    pub fn try_start(
        config_json: &str,
        redis_url: &str,
        listen: &str,
    ) -> Result<RateLimitService, ServiceFailure> {
        let dir = crate::scratch_dir("ratelimit");
        let cfg = dir.join("ratelimit.json");
        std::fs::write(&cfg, config_json).unwrap();
        RateLimitService::spawn(&dir, &cfg, redis_url, listen)
    }

    fn spawn(
        dir: &Path,
        cfg: &Path,
        redis_url: &str,
        listen: &str,
    ) -> Result<RateLimitService, ServiceFailure> {
        let log_path = dir.join("ratelimit.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(ratelimit_bin())
            .arg("--config")
            .arg(cfg)
            .args(["--listen", listen, "--redis", redis_url])
            .env_remove("GATEHOUSE_RATELIMIT_CONFIG")
            .env_remove("GATEHOUSE_RATELIMIT_LISTEN")
            .env_remove("GATEHOUSE_RATELIMIT_REDIS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot run gatehouse-ratelimit");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let failed = |child: &mut Child| {
            let exited = child.wait().ok().and_then(|s| s.code());
            ServiceFailure {
                exited,
                log: std::fs::read_to_string(&log_path).unwrap_or_default(),
            }
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => {
                let addr = line
                    .strip_prefix(LISTENING)
                    .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
                    .trim()
                    .to_string();
                let port = addr.rsplit(':').next().unwrap().parse().unwrap();
                Ok(RateLimitService {
                    process: Process::new(
                        "gatehouse-ratelimit",
                        child,
                        dir.to_path_buf(),
                        log_path.clone(),
                    ),
                    addr,
                    port,
                    dir: dir.to_path_buf(),
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(failed(&mut child)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                Err(failed(&mut child))
            }
        }
    }

    /// `http://127.0.0.1:<port>` (for a gRPC client).
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the service now (SIGKILL).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}
