//! `make run-cluster`: two Envoy replicas (`--concurrency 2` each) running
//! client-id then rate-limit in global mode, one `gatehouse-ratelimit`
//! service with a real Redis, an echo upstream, and curl lines that show one
//! client's limit shared by both replicas. Ctrl-C stops everything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::run::{port_from_env, wait_for_stop};
use gatehouse_e2e::run_cluster::{
    cluster_demo_lines, Cluster, ClusterPorts, BANNER_END, DEMO_LIMIT, RLS_CLUSTER,
};
use gatehouse_e2e::{dist_dir, envoy_bin};

fn main() {
    let ports = ClusterPorts {
        http_a: port_from_env("GATEHOUSE_HTTP_PORT", 10000),
        http_b: port_from_env("GATEHOUSE_HTTP_PORT_B", 10001),
        admin_a: port_from_env("GATEHOUSE_ADMIN_PORT", 9901),
        admin_b: port_from_env("GATEHOUSE_ADMIN_PORT_B", 9902),
    };
    for f in ["client-id", "rate-limit"] {
        if !dist_dir().join(format!("{f}.wasm")).is_file() {
            eprintln!(
                "{}/{f}.wasm is missing: run `make build`",
                dist_dir().display()
            );
            std::process::exit(1);
        }
    }
    let cluster = match Cluster::start(&ports) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let admin = |p: u16| format!("http://127.0.0.1:{p}/stats?filter=rate_limit");
    println!();
    println!(
        "gatehouse cluster: two Envoy replicas ({}) sharing one rate limit",
        envoy_bin().display()
    );
    println!(
        "  filters     client-id -> rate-limit (global mode: {DEMO_LIMIT} per minute per client, asked of cluster `{RLS_CLUSTER}`)"
    );
    println!(
        "  replica A   http://127.0.0.1:{}  admin {}",
        ports.http_a,
        admin(ports.admin_a)
    );
    println!(
        "  replica B   http://127.0.0.1:{}  admin {}",
        ports.http_b,
        admin(ports.admin_b)
    );
    println!(
        "  service     gatehouse-ratelimit {} (Redis {})",
        cluster.service.addr,
        cluster.redis.url()
    );
    println!("  upstream    echo :{}", cluster.echo.port);
    println!(
        "  logs        {}  {}  {}",
        cluster.a.dir.join("envoy.log").display(),
        cluster.b.dir.join("envoy.log").display(),
        cluster.service.dir.join("ratelimit.log").display()
    );
    println!();
    println!("Try:");
    for line in cluster_demo_lines(&ports) {
        println!("{line}");
    }
    println!();
    println!("{BANNER_END}");

    wait_for_stop(&[
        ("Envoy replica A", cluster.a.pid()),
        ("Envoy replica B", cluster.b.pid()),
        ("gatehouse-ratelimit", cluster.service.pid()),
        ("redis-server", cluster.redis.pid()),
    ]);
    drop(cluster);
    println!("stopped.");
}
