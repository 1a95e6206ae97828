//! `gatehouse-delivery image --dist DIR --out DIR --tag TAG FILTER...`
//!   writes one OCI image layout per filter (`OUT/<filter>/`) and prints
//!   `<filter> <manifest digest> <layer bytes>` per image.
//! `gatehouse-delivery render-ecds --manifests DIR --dist DIR --out DIR`
//!   renders DIR with `kubectl kustomize` ($KUBECTL or the .venv one), writes
//!   the ECDS file of every plugin, TrafficExtension or WasmPlugin
//!   (`OUT/<filter>.json`), and prints the HTTP filter entries (JSON) in
//!   gateway order.
//! `gatehouse-delivery check FILE...` (`-` = stdin)
//!   checks every TrafficExtension, Gateway API Gateway and HTTPRoute in the
//!   YAML files against the project's schema (`schema.rs`); prints each error
//!   and exits 1 if there is one, else prints how many documents it checked
//!   (other kinds are counted as not its business).
use gatehouse_delivery::{istio, oci, schema};
use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    flags: Vec<(String, String)>,
    rest: Vec<String>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut flags = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.peekable();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or(format!("--{name} needs a value"))?;
            flags.push((name.to_string(), v));
        } else {
            rest.push(a);
        }
    }
    Ok(Args { flags, rest })
}

impl Args {
    fn get(&self, name: &str) -> Result<PathBuf, String> {
        self.flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| PathBuf::from(v))
            .ok_or(format!("--{name} is required"))
    }
}

fn image(a: &Args) -> Result<(), String> {
    let dist = a.get("dist")?;
    let out = a.get("out")?;
    let tag = a.get("tag")?.display().to_string();
    if a.rest.is_empty() {
        return Err("no filter named".into());
    }
    for f in &a.rest {
        let wasm_path = dist.join(format!("{f}.wasm"));
        let wasm = std::fs::read(&wasm_path)
            .map_err(|e| format!("{}: {e} (run `make build`)", wasm_path.display()))?;
        let img =
            oci::build_layout(f, &wasm, &tag, &out.join(f)).map_err(|e| format!("{f}: {e}"))?;
        println!("{f} {} {}", img.manifest.digest, img.layer.size);
    }
    Ok(())
}

fn render_ecds(a: &Args) -> Result<(), String> {
    let dir = a.get("manifests")?;
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let m = istio::Manifests::render(&istio::kubectl(&root)?, &dir)?;
    let plugins = m.plugins()?;
    let filters =
        istio::render_ecds(&plugins, &a.get("dist")?, &a.get("out")?).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&filters).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn check(a: &Args) -> Result<(), String> {
    if a.rest.is_empty() {
        return Err("no file named".into());
    }
    let (mut checked, mut other, mut errors) = (0, 0, 0);
    for f in &a.rest {
        let text = if f == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| e.to_string())?;
            s
        } else {
            std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?
        };
        for doc in istio::parse_yaml_docs(&text).map_err(|e| format!("{f}: {e}"))? {
            let kind = doc
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            let name = doc
                .pointer("/metadata/name")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            match schema::check(&doc) {
                None => other += 1,
                Some(errs) => {
                    checked += 1;
                    for e in &errs {
                        println!("{f}: {kind} {name}: {e}");
                    }
                    errors += errs.len();
                }
            }
        }
    }
    if errors > 0 {
        return Err(format!("{errors} schema error(s)"));
    }
    println!("{checked} documents valid (TrafficExtension, Gateway API); {other} of other kinds not checked here");
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let result = parse(args).and_then(|a| match cmd.as_str() {
        "image" => image(&a),
        "render-ecds" => render_ecds(&a),
        "check" => check(&a),
        _ => Err(
            "usage: gatehouse-delivery image|render-ecds|check ... (see the source header)".into(),
        ),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-delivery: {e}");
            ExitCode::FAILURE
        }
    }
}
