//! The echo upstream as a program: `echo NAME PORT` (for `make run` and
//! docker-compose). Answers every request with what it received, as JSON.
use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "echo".to_string());
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18080".to_string())
        .parse()
        .unwrap_or_else(|e| {
            eprintln!("usage: echo NAME ADDR:PORT ({e})");
            std::process::exit(2)
        });
    eprintln!("echo upstream `{name}` listening on {addr}");
    if let Err(e) = gatehouse_e2e::echo::serve_on(addr, name).await {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}
