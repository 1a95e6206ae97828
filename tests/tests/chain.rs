//! `make run` as a user meets it: the real `gatehouse-run` binary (what
//! `make run` starts) on free ports, and every curl line it prints run
//! exactly as printed (`bash -c`, the real `curl`), each answer checked
//! against its demo (status, key headers, what the upstream saw). The curl
//! lines in the docs that target the `make run` Envoy (127.0.0.1 on
//! 10000/10443/9901) are run the same way against it.
use gatehouse_e2e::launcher::{
    check_demo, free_ports, parse_answer, printed_demo_lines, require_tools, run_line, Launched,
};
use gatehouse_e2e::run::{demos, filters_in_repo, RunPorts};
use gatehouse_e2e::*;

/// The last line of the banner.
const BANNER_END: &str = "Ctrl-C stops Envoy and the upstreams.";

/// Starts the `make run` binary on free ports and reads its banner.
fn start_make_run() -> Launched<RunPorts> {
    for f in filters_in_repo() {
        wasm_path(f);
    }
    require_tools(&["curl", "jq"]);
    Launched::start(env!("CARGO_BIN_EXE_gatehouse-run"), BANNER_END, || {
        let [http, https, admin] = free_ports();
        let ports = RunPorts { http, https, admin };
        let env = vec![
            ("GATEHOUSE_HTTP_PORT", http.to_string()),
            ("GATEHOUSE_HTTPS_PORT", https.to_string()),
            ("GATEHOUSE_ADMIN_PORT", admin.to_string()),
            // Its scratch files (certificates, Envoy's dir) under target/tmp.
            (
                "CARGO_TARGET_TMPDIR",
                env!("CARGO_TARGET_TMPDIR").to_string(),
            ),
        ];
        (ports, env)
    })
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
        if let Err(e) = check_demo(demo, &a, run.ports.https) {
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
