//! The launchers (`make run`, `make run-cluster`) as a user meets them: the
//! real binary started on free ports, its banner read, and every curl line
//! it prints run exactly as printed (`bash -c`, the real `curl`), each
//! answer parsed and checked against its [`Demo`]. Used by
//! tests/tests/chain.rs and tests/tests/run_cluster.rs.

use crate::run::{Demo, Expect};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a launcher may take to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one printed command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running launcher; stopped (SIGTERM, as Ctrl-C) when dropped, which
/// must end it within 10 s.
pub struct Launched<P> {
    pub child: Child,
    pub ports: P,
    /// Everything it printed up to the end of the banner.
    pub stdout: Vec<String>,
    pub stderr: Arc<Mutex<String>>,
    name: String,
}

impl<P> Drop for Launched<P> {
    fn drop(&mut self) {
        // The certificates it made (the printed CA's directory).
        if let Some(ca) = self.stdout.iter().find_map(|l| {
            l.split_once("self-signed test CA: ")
                .map(|(_, p)| p.trim_end_matches(')').to_string())
        }) {
            if let Some(dir) = std::path::Path::new(&ca).parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // It did not stop on SIGTERM: that is a failure of the launcher.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            panic!("{} did not stop on SIGTERM within 10 s", self.name);
        }
    }
}

/// `N` free loopback ports (bound together, then released for the launcher).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let l: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| l[i].local_addr().unwrap().port())
}

/// Fails the test when a command-line tool the printed lines use is missing.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = Command::new("bash")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is missing: the demo and doc lines run with it (Debian package {tool})"
        );
    }
}

impl<P: std::fmt::Debug + Clone> Launched<P> {
    /// Starts the binary `bin` with the environment `pick` returns (its
    /// ports) and reads its banner up to the line `banner_end`. A port taken
    /// in the instant between choosing and binding makes the launcher fail
    /// to start: then it is tried again on other ports (3 attempts).
    pub fn start(
        bin: &str,
        banner_end: &str,
        pick: impl Fn() -> (P, Vec<(&'static str, String)>),
    ) -> Launched<P> {
        let name = std::path::Path::new(bin)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| bin.to_string());
        let mut failures = Vec::new();
        for _ in 0..3 {
            let (ports, env) = pick();
            let mut cmd = Command::new(bin);
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
            let stderr = Arc::new(Mutex::new(String::new()));
            let mut err_pipe = child.stderr.take().unwrap();
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = String::new();
                let _ = err_pipe.read_to_string(&mut buf);
                sink.lock().unwrap().push_str(&buf);
            });
            let (tx, rx) = mpsc::channel();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut run = Launched {
                child,
                ports: ports.clone(),
                stdout: Vec::new(),
                stderr,
                name: name.clone(),
            };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => {
                        let end = line == banner_end;
                        run.stdout.push(line);
                        if end {
                            return run;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!(
                            "{name} printed no `{banner_end}` within {START_TIMEOUT:?}:\n{}\n{}",
                            run.stdout.join("\n"),
                            run.stderr.lock().unwrap()
                        );
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            // It exited before the end of its banner.
            let _ = run.child.wait();
            std::thread::sleep(Duration::from_millis(100));
            failures.push(format!(
                "ports {ports:?}:\n{}\n{}",
                run.stdout.join("\n"),
                run.stderr.lock().unwrap()
            ));
        }
        panic!("{name} did not start:\n{}", failures.join("\n---\n"));
    }
}

/// The answer of one command: the status codes printed before the full
/// answer (`-w '%{http_code}'` loops), then the full answer (`curl -si`).
#[derive(Debug)]
pub struct Answer {
    pub early: Vec<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `curl -si` output (possibly after interim `-w` lines): the
/// last HTTP response in it.
pub fn parse_answer(out: &str) -> Option<Answer> {
    let lines: Vec<&str> = out.split('\n').collect();
    let start = lines.iter().rposition(|l| l.starts_with("HTTP/"))?;
    let early = lines[..start]
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let status = lines[start].split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut i = start + 1;
    while i < lines.len() {
        let l = lines[i].trim_end_matches('\r');
        i += 1;
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Some(Answer {
        early,
        status,
        headers,
        body: lines[i.min(lines.len())..].join("\n"),
    })
}

/// Runs one command line with `bash -c` (bounded in time) in the
/// repository root; returns its stdout. Fails the test when it fails.
pub fn run_line(line: &str) -> String {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(line)
        .current_dir(crate::repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = crate::process::wait_until(&mut child, deadline, Duration::from_millis(20))
        .unwrap_or_else(|| panic!("`{line}` took longer than {COMMAND_TIMEOUT:?}"));
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    assert!(
        status.success(),
        "`{line}` failed ({status}):\nstderr: {err}\nstdout: {out}"
    );
    out
}

/// The (comment, command) pairs a launcher printed after `Try:`.
pub fn printed_demo_lines(stdout: &[String]) -> Vec<(String, String)> {
    let start = stdout
        .iter()
        .position(|l| l == "Try:")
        .expect("`Try:` in the banner")
        + 1;
    let block: Vec<&str> = stdout[start..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        block.len().is_multiple_of(2),
        "demo lines come as comment + command: {block:#?}"
    );
    block
        .chunks(2)
        .map(|c| {
            assert!(c[0].starts_with("# "), "not a comment: {}", c[0]);
            assert!(
                c[1].starts_with("curl ") || c[1].starts_with("for "),
                "not a command: {}",
                c[1]
            );
            (c[0].to_string(), c[1].to_string())
        })
        .collect()
}

/// Checks an answer against its demo (status and [`Expect`]s); `https_port`
/// is the launcher's HTTPS listener (for redirects).
pub fn check_demo(demo: &Demo, a: &Answer, https_port: u16) -> Result<(), String> {
    if a.status != demo.expect_status {
        return Err(format!(
            "status {} (expected {})",
            a.status, demo.expect_status
        ));
    }
    for e in &demo.expect {
        let ok = match e {
            Expect::Header(k, v) => a.header(k) == Some(v.as_str()),
            Expect::HeaderPresent(k) => a.header(k).is_some(),
            Expect::RedirectToHttps(path) => {
                let port = match https_port {
                    443 => String::new(),
                    p => format!(":{p}"),
                };
                let want = format!("https://{}{port}{path}", demo.request.authority);
                a.header("location") == Some(want.as_str())
            }
            Expect::BodyHas(t) => a.body.contains(t.as_str()),
            Expect::BodyLacks(t) => !a.body.contains(t.as_str()),
        };
        if !ok {
            return Err(format!("expected {e:?}"));
        }
    }
    Ok(())
}
