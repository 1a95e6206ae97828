//! gatehouse-ratelimit: Envoy's rate-limit service API (RLS v3, gRPC) for
//! the rate-limit filter's global rules, counters in Redis.
//! See README.md.

mod limits;
mod service;
mod store;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str =
    "usage: gatehouse-ratelimit --config <file> --listen <addr:port> --redis <redis://host:port>
  (or GATEHOUSE_RATELIMIT_CONFIG, GATEHOUSE_RATELIMIT_LISTEN, GATEHOUSE_RATELIMIT_REDIS)";

#[derive(Debug, PartialEq, Eq)]
struct Args {
    config: String,
    listen: String,
    redis: String,
}

fn parse_args(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Args, String> {
    let (mut config, mut listen, mut redis) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let slot = match flag {
            "--config" => &mut config,
            "--listen" => &mut listen,
            "--redis" => &mut redis,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        *slot = Some(value);
    }
    let pick = |v: Option<String>, var: &str, flag: &str| {
        v.or_else(|| env(var))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{flag} (or {var}) is required\n{USAGE}"))
    };
    Ok(Args {
        config: pick(config, "GATEHOUSE_RATELIMIT_CONFIG", "--config")?,
        listen: pick(listen, "GATEHOUSE_RATELIMIT_LISTEN", "--listen")?,
        redis: pick(redis, "GATEHOUSE_RATELIMIT_REDIS", "--redis")?,
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv, |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gatehouse-ratelimit: {e}");
            return ExitCode::from(2);
        }
    };
    let json = match std::fs::read(&args.config) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("gatehouse-ratelimit: cannot read {}: {e}", args.config);
            return ExitCode::from(2);
        }
    };
    let limits = match limits::Limits::parse(&json) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "gatehouse-ratelimit: invalid configuration {}: {e}",
                args.config
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse-ratelimit: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args, limits)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-ratelimit: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(args: Args, limits: limits::Limits) -> Result<(), String> {
    let store = store::Store::new(&args.redis)
        .map_err(|e| format!("invalid --redis `{}`: {e}", args.redis))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let rules = limits.len();
    let svc = service::Service {
        limits: Arc::new(limits),
        store,
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "gatehouse-ratelimit listening on {addr}");
        let _ = out.flush();
    }
    eprintln!(
        "gatehouse-ratelimit: {rules} global rule(s), redis {}",
        args.redis
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // One service: served without tonic's router (no axum).
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(RateLimitServiceServer::new(svc), incoming, shutdown())
        .await
        .map_err(|e| format!("server: {e}"))
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_and_env_fallbacks() {
        let a = parse_args(
            &s(&[
                "--config",
                "c.json",
                "--listen=127.0.0.1:0",
                "--redis",
                "redis://x",
            ]),
            |_| None,
        )
        .unwrap();
        assert_eq!(a.listen, "127.0.0.1:0");
        let a = parse_args(&s(&["--config", "c.json"]), |k| match k {
            "GATEHOUSE_RATELIMIT_LISTEN" => Some("0.0.0.0:8081".into()),
            "GATEHOUSE_RATELIMIT_REDIS" => Some("redis://r:6379".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(a.redis, "redis://r:6379");
        assert!(parse_args(&s(&["--config"]), |_| None).is_err());
        assert!(parse_args(&s(&["--bogus", "x"]), |_| None).is_err());
        assert!(parse_args(&s(&["--config", "c"]), |_| None)
            .unwrap_err()
            .contains("--listen"));
    }
}
