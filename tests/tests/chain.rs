//! `make run` as a user meets it: the real `gatehouse-run` binary (what
//! `make run` starts) on free ports, and every curl line it prints run
//! exactly as printed (`bash -c`, the real `curl`), each answer checked
//! against its demo (status, key headers, what the upstream saw). The curl
//! lines in the docs that target the `make run` Envoy (127.0.0.1 on
//! 10000/10443/9901) are run the same way against it.
use gatehouse_e2e::run::{demos, filters_in_repo, Demo, Expect, RunPorts};
use gatehouse_e2e::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `gatehouse-run` may take to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one printed command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The last line of the banner.
const BANNER_END: &str = "Ctrl-C stops Envoy and the upstreams.";

/// A running `gatehouse-run`; stopped (SIGTERM, as Ctrl-C) when dropped.
struct MakeRun {
    child: Child,
    ports: RunPorts,
    /// Everything it printed up to the end of the banner.
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for MakeRun {
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
            panic!("gatehouse-run did not stop on SIGTERM within 10 s");
        }
    }
}

/// Three free loopback ports (bound, then released for the launcher).
fn free_ports() -> RunPorts {
    let l: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let p = |i: usize| l[i].local_addr().unwrap().port();
    RunPorts {
        http: p(0),
        https: p(1),
        admin: p(2),
    }
}

/// Starts the `make run` binary on free ports and reads its banner. A port
/// taken in the instant between choosing and binding makes Envoy fail to
/// start: then it is tried again on other ports (3 attempts).
fn start_make_run() -> MakeRun {
    for f in filters_in_repo() {
        wasm_path(f);
    }
    for tool in ["curl", "jq"] {
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
    let mut failures = Vec::new();
    for _ in 0..3 {
        let ports = free_ports();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse-run"))
            .env("GATEHOUSE_HTTP_PORT", ports.http.to_string())
            .env("GATEHOUSE_HTTPS_PORT", ports.https.to_string())
            .env("GATEHOUSE_ADMIN_PORT", ports.admin.to_string())
            // Its scratch files (certificates, Envoy's dir) under target/tmp.
            .env("CARGO_TARGET_TMPDIR", env!("CARGO_TARGET_TMPDIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gatehouse-run");
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
        let mut run = MakeRun {
            child,
            ports,
            stdout: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let end = line == BANNER_END;
                    run.stdout.push(line);
                    if end {
                        return run;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "gatehouse-run printed no `{BANNER_END}` within {START_TIMEOUT:?}:\n{}",
                        run.stdout.join("\n")
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
    panic!("gatehouse-run did not start:\n{}", failures.join("\n---\n"));
}

/// The answer of one command: the status codes printed before the full
/// answer (`-w '%{http_code}'` loops), then the full answer (`curl -si`).
#[derive(Debug)]
struct Answer {
    early: Vec<String>,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `curl -si` output (possibly after interim `-w` lines): the
/// last HTTP response in it.
fn parse_answer(out: &str) -> Option<Answer> {
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
fn run_line(line: &str) -> String {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(line)
        .current_dir(repo_root())
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
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{line}` took longer than {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    assert!(
        status.success(),
        "`{line}` failed ({status}):\nstderr: {err}\nstdout: {out}"
    );
    out
}

/// The (comment, command) pairs `make run` printed after `Try:`.
fn printed_demo_lines(stdout: &[String]) -> Vec<(String, String)> {
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

fn check_demo(demo: &Demo, a: &Answer, ports: &RunPorts) -> Result<(), String> {
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
                let port = match ports.https {
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

#[test]
fn iface_make_run_prints_curl_lines_that_work_as_printed() {
    let built = filters_in_repo();
    assert!(built.contains(&"request-id"), "{built:?}");
    let run = start_make_run();
    let printed = printed_demo_lines(&run.stdout);
    let list = demos(&built);
    assert_eq!(
        printed.len(),
        list.len(),
        "make run printed {} demo lines for {} demos:\n{}",
        printed.len(),
        list.len(),
        run.stdout.join("\n")
    );
    for ((comment, line), demo) in printed.iter().zip(&list) {
        assert_eq!(
            comment,
            &format!("# {} (expect {})", demo.what, demo.expect_status)
        );
        let out = run_line(line);
        let a =
            parse_answer(&out).unwrap_or_else(|| panic!("`{line}` printed no HTTP answer:\n{out}"));
        if let Err(e) = check_demo(demo, &a, &run.ports) {
            panic!("demo `{}`: {e}\n  {line}\nanswered:\n{out}", demo.what);
        }
        if built.contains(&"request-id") {
            assert!(
                a.header("x-request-id").is_some(),
                "{line}: no x-request-id"
            );
        }
        // The status codes a repeated demo prints first are answers too.
        assert_eq!(a.early.len() as u32, demo.repeat - 1, "{line}:\n{out}");
    }

    // The admin address it prints serves the filters' metrics.
    let admin = run
        .stdout
        .iter()
        .find_map(|l| l.trim().strip_prefix("admin"))
        .expect("admin line")
        .trim()
        .to_string();
    let out = run_line(&format!("curl -si '{admin}'"));
    let a = parse_answer(&out).unwrap();
    assert_eq!(a.status, 200, "{out}");
    assert!(a.body.contains("gatehouse"), "{admin}: {out}");
}

/// A curl line of the docs that targets the `make run` Envoy.
#[derive(Debug)]
struct DocLine {
    at: String,
    /// Variable assignments before it in the same code block.
    prelude: Vec<String>,
    command: String,
    status: Option<u16>,
    headers: Vec<(String, String)>,
}

/// The comment after a command (`# ...`), outside quotes.
fn trailing_comment(line: &str) -> Option<&str> {
    let (mut single, mut double) = (false, false);
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => return Some(line[i + 1..].trim()),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    None
}

/// Every curl line in the fenced code blocks of `file` (`$ ` prompts
/// allowed, `\` continuations joined), with the outcome the docs state: a
/// leading status in its comment (`# 401: ...`) and/or the output shown
/// under it (`HTTP/1.1 301 ...`, `name: value`). Lines that do not target
/// 127.0.0.1 on the `make run` ports go to `others`.
fn doc_lines(file: &std::path::Path, out: &mut Vec<DocLine>, others: &mut Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let rel = file
        .strip_prefix(repo_root())
        .unwrap()
        .display()
        .to_string();
    let mut in_block = false;
    let mut prelude: Vec<String> = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, raw)) = lines.next() {
        if raw.trim_start().starts_with("```") {
            in_block = !in_block;
            prelude.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        let mut logical = raw
            .trim()
            .strip_prefix("$ ")
            .unwrap_or(raw.trim())
            .to_string();
        let mut last = logical.clone();
        while logical.ends_with('\\') {
            let Some((_, next)) = lines.next() else { break };
            logical.push('\n');
            logical.push_str(next);
            last = next.to_string();
        }
        let word = logical.split_whitespace().next().unwrap_or("");
        if word.contains('=') && !word.starts_with('-') && word != "curl" {
            prelude.push(logical);
            continue;
        }
        if word != "curl" {
            continue;
        }
        let at = format!("{rel}:{}", n + 1);
        let local = ["127.0.0.1:10000", ":10443", "127.0.0.1:9901"]
            .iter()
            .any(|p| logical.contains(p));
        if !local {
            others.push(at);
            continue;
        }
        let mut status = trailing_comment(&last)
            .and_then(|c| c.get(..3))
            .and_then(|c| c.parse().ok());
        let mut headers = Vec::new();
        // Output shown under a `$ curl` line.
        if raw.trim_start().starts_with("$ ") {
            while let Some((_, o)) = lines.peek() {
                let o = o.trim();
                if o.is_empty() || o.starts_with("$ ") || o.starts_with("```") {
                    break;
                }
                if o.starts_with("HTTP/") {
                    status = o.split_whitespace().nth(1).and_then(|s| s.parse().ok());
                } else if let Some((k, v)) = o.split_once(": ") {
                    headers.push((k.to_ascii_lowercase(), v.to_string()));
                }
                lines.next();
            }
        }
        out.push(DocLine {
            at,
            prelude: prelude.clone(),
            command: logical,
            status,
            headers,
        });
    }
}

/// The docs' ports (the `make run` defaults) replaced by the run's ones.
fn with_ports(s: &str, p: &RunPorts) -> String {
    s.replace("127.0.0.1:10000", &format!("127.0.0.1:{}", p.http))
        .replace(":10443", &format!(":{}", p.https))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{}", p.admin))
}

#[test]
fn documented_curl_lines_work_against_make_run() {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for dir in [root.join("docs"), root.join("filters")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            } else if p.join("README.md").is_file() {
                files.push(p.join("README.md"));
            }
        }
    }
    files.sort();
    let (mut lines, mut others) = (Vec::new(), Vec::new());
    for f in &files {
        doc_lines(f, &mut lines, &mut others);
    }
    // The docs that show curl lines for `make run` or docker compose.
    for must in [
        "docs/docker-compose.md",
        "filters/client-id/README.md",
        "filters/https-redirect/README.md",
    ] {
        assert!(
            lines.iter().any(|l| l.at.starts_with(must)),
            "no curl line found in {must}: {lines:#?}"
        );
    }
    eprintln!("not for the make-run Envoy (not run): {others:?}");

    let run = start_make_run();
    let mut failures = Vec::new();
    for l in &lines {
        let Some(status) = l.status else {
            failures.push(format!(
                "{}: state the expected status (`# 200: ...` or the output under `$ curl`)",
                l.at
            ));
            continue;
        };
        let script = format!(
            "set -eu\n{}\n{}",
            l.prelude.join("\n"),
            with_ports(&l.command, &run.ports)
        );
        let out = run_line(&script);
        let Some(a) = parse_answer(&out) else {
            failures.push(format!(
                "{}: no HTTP status in its output (use curl -si):\n{out}",
                l.at
            ));
            continue;
        };
        if a.status != status {
            failures.push(format!(
                "{}: answered {} (documented: {status})\n{out}",
                l.at, a.status
            ));
        }
        for (k, v) in &l.headers {
            let want = with_ports(v, &run.ports);
            if a.header(k) != Some(want.as_str()) {
                failures.push(format!(
                    "{}: {k}: {:?} (documented: {want})",
                    l.at,
                    a.header(k)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "documented curl lines:\n{}",
        failures.join("\n")
    );
}
