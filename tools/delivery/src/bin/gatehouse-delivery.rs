//! `gatehouse-delivery image --dist DIR --out DIR --tag TAG FILTER...`
//!   writes one OCI image layout per filter (`OUT/<filter>/`) and prints
//!   `<filter> <manifest digest> <layer bytes>` per image.
//! `gatehouse-delivery render-ecds --manifests DIR --dist DIR --out DIR`
//!   writes the ECDS file of every WasmPlugin (`OUT/<filter>.json`) and
//!   prints the HTTP filter entries (JSON) in gateway order.
use gatehouse_delivery::{istio, oci};
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
    let m = istio::Manifests::load(&a.get("manifests")?)?;
    let plugins = m.wasm_plugins()?;
    let filters =
        istio::render_ecds(&plugins, &a.get("dist")?, &a.get("out")?).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&filters).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let result = parse(args).and_then(|a| match cmd.as_str() {
        "image" => image(&a),
        "render-ecds" => render_ecds(&a),
        _ => Err("usage: gatehouse-delivery image|render-ecds ... (see the source header)".into()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-delivery: {e}");
            ExitCode::FAILURE
        }
    }
}
