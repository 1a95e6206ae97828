//! `make run`: Envoy with every built gatehouse filter chained (each with its
//! `filters/<name>/example.json`), echo upstreams named `echo`, `webapp` and
//! `catalog`, a plain listener and a TLS listener (certificate made at start),
//! and curl lines that show the filters working. Ctrl-C stops everything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::run::{chain_config, demo_pki, port_from_env, RunPorts, CHAIN_ORDER};
use gatehouse_e2e::{dist_dir, scratch_dir, Echo, Envoy};

fn main() {
    let ports = RunPorts {
        http: port_from_env("GATEHOUSE_HTTP_PORT", 10000),
        https: port_from_env("GATEHOUSE_HTTPS_PORT", 10443),
        admin: port_from_env("GATEHOUSE_ADMIN_PORT", 9901),
    };
    let built: Vec<&str> = CHAIN_ORDER
        .iter()
        .copied()
        .filter(|f| dist_dir().join(format!("{f}.wasm")).is_file())
        .collect();
    if built.is_empty() {
        eprintln!("no filters in {}: run `make build`", dist_dir().display());
        std::process::exit(1);
    }
    let echo = Echo::start("echo");
    let webapp = Echo::start("webapp");
    let catalog = Echo::start("catalog");
    let pki = demo_pki(&scratch_dir("run-pki"), &built);
    let cfg = chain_config(&built, &ports, &echo, &webapp, &catalog, &pki);
    let envoy = match Envoy::try_start(&cfg) {
        Ok(e) => e,
        Err(f) => {
            eprintln!("Envoy did not start (exit {:?}). Log:\n{}", f.exited, f.log);
            std::process::exit(1);
        }
    };
    let h = ports.http;
    let s = ports.https;
    println!();
    println!(
        "gatehouse is running in Envoy ({})",
        gatehouse_e2e::envoy_bin().display()
    );
    println!("  filters (in order): {}", built.join(" -> "));
    println!("  plain HTTP  http://127.0.0.1:{h}");
    println!(
        "  HTTPS       https://127.0.0.1:{s}  (self-signed test CA: {})",
        pki.ca_pem.display()
    );
    println!(
        "  admin       http://127.0.0.1:{}/stats?filter=gatehouse",
        ports.admin
    );
    println!(
        "  upstreams   echo :{}  webapp :{}  catalog :{}",
        echo.port, webapp.port, catalog.port
    );
    println!("  Envoy log   {}", envoy.dir.join("envoy.log").display());
    println!();
    println!("Try:");
    for line in gatehouse_e2e::run::demo_lines(&built, &ports, &pki) {
        println!("{line}");
    }
    println!();
    println!("Ctrl-C stops Envoy and the upstreams.");

    gatehouse_e2e::run::wait_for_stop(&[("Envoy", envoy.pid())]);
    drop(envoy);
    println!("stopped.");
}
