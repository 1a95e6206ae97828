//! `make run-cluster` as a user meets it: the real `gatehouse-run-cluster`
//! binary (two Envoys, gatehouse-ratelimit, Redis) on free ports, every curl
//! line it prints run exactly as printed (real curl), each answer checked
//! against its demo: one client's limit is shared by both replicas, another
//! client is not affected. Stopping it (SIGTERM, as Ctrl-C) stops every
//! process it started.
use gatehouse_e2e::launcher::{
    check_demo, free_ports, parse_answer, printed_demo_lines, require_tools, run_line, Launched,
};
use gatehouse_e2e::run_cluster::{cluster_demos, ClusterPorts, BANNER_END};
use gatehouse_e2e::*;

fn start_run_cluster() -> Launched<ClusterPorts> {
    wasm_path("client-id");
    wasm_path("rate-limit");
    gatehouse_e2e::ratelimit_service::ratelimit_bin();
    require_tools(&["curl", "redis-server"]);
    Launched::start(
        env!("CARGO_BIN_EXE_gatehouse-run-cluster"),
        BANNER_END,
        || {
            let [http_a, http_b, admin_a, admin_b] = free_ports();
            let ports = ClusterPorts {
                http_a,
                http_b,
                admin_a,
                admin_b,
            };
            let env = vec![
                ("GATEHOUSE_HTTP_PORT", http_a.to_string()),
                ("GATEHOUSE_HTTP_PORT_B", http_b.to_string()),
                ("GATEHOUSE_ADMIN_PORT", admin_a.to_string()),
                ("GATEHOUSE_ADMIN_PORT_B", admin_b.to_string()),
                (
                    "CARGO_TARGET_TMPDIR",
                    env!("CARGO_TARGET_TMPDIR").to_string(),
                ),
            ];
            (ports, env)
        },
    )
}

/// The pids of the processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // A zombie is gone for our purpose.
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn make_run_cluster_prints_curl_lines_that_share_one_limit_across_replicas() {
    let run = start_run_cluster();
    let printed = printed_demo_lines(&run.stdout);
    let list = cluster_demos();
    assert_eq!(
        printed.len(),
        list.len(),
        "printed {} demo lines for {} demos:\n{}",
        printed.len(),
        list.len(),
        run.stdout.join("\n")
    );
    for ((comment, line), d) in printed.iter().zip(&list) {
        let demo = &d.demo;
        assert_eq!(
            comment,
            &format!("# {} (expect {})", demo.what, demo.expect_status)
        );
        assert!(
            line.contains(&format!("127.0.0.1:{}/", run.ports.http(d.replica))),
            "{line}: not sent to replica {:?}",
            d.replica
        );
        let out = run_line(line);
        let a =
            parse_answer(&out).unwrap_or_else(|| panic!("`{line}` printed no HTTP answer:\n{out}"));
        if let Err(e) = check_demo(demo, &a, 0) {
            panic!("demo `{}`: {e}\n  {line}\nanswered:\n{out}", demo.what);
        }
        // The answers before the last one of a repeated request all pass.
        assert_eq!(
            a.early,
            vec!["200".to_string(); demo.repeat as usize - 1],
            "{line}:\n{out}"
        );
    }

    // Ctrl-C (SIGTERM here) stops every process it started.
    let children = children_of(run.child.id());
    assert!(
        children.len() >= 4,
        "expected 2 Envoys, gatehouse-ratelimit and redis-server as children: {children:?}"
    );
    drop(run);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while children.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left: Vec<u32> = children.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");
}
