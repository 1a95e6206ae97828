//! The OCI images, for real: `gatehouse-delivery image` (what `make image`
//! runs) builds every filter's image twice, in two processes, byte for byte
//! the same; `push.sh` (what `make push` runs) pushes them with skopeo to a
//! real registry (Debian's `docker-registry` on 127.0.0.1, a free port, no
//! auth); pulled back through the registry API and with skopeo, each image
//! has the media types Istio expects, its last layer holds `plugin.wasm`
//! equal to `dist/<filter>.wasm` (and carries no title annotation), and the
//! url and sha256 push.sh printed are the manifest digest the registry
//! serves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_delivery::oci::{self, plugin_wasm_from_layer, sha256_digest};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn dist() -> PathBuf {
    std::env::var_os("GATEHOUSE_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("dist"))
}

fn filters_in_repo() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join("filters"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.path()
                .join("src/filter.rs")
                .is_file()
                .then(|| e.file_name().to_string_lossy().to_string())
        })
        .collect();
    assert!(!out.is_empty());
    // The combined module is shipped as an image too (the shared-module
    // manifests variant pulls it).
    out.push("gatehouse".to_string());
    out.sort();
    for f in &out {
        let p = dist().join(format!("{f}.wasm"));
        assert!(p.is_file(), "{} is missing: run `make build`", p.display());
    }
    out
}

fn scratch(tag: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("gatehouse-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `gatehouse-delivery image` (the binary `make image` runs); returns
/// filter -> (manifest digest, layer size) from its output.
fn make_images(out: &Path, tag: &str, filters: &[String]) -> BTreeMap<String, (String, u64)> {
    let o = Command::new(env!("CARGO_BIN_EXE_gatehouse-delivery"))
        .arg("image")
        .arg("--dist")
        .arg(dist())
        .arg("--out")
        .arg(out)
        .arg("--tag")
        .arg(tag)
        .args(filters)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            assert_eq!(parts.len(), 3, "{l}");
            (
                parts[0].to_string(),
                (parts[1].to_string(), parts[2].parse().unwrap()),
            )
        })
        .collect()
}

fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn images_are_reproducible_and_hold_the_filters() {
    let filters = filters_in_repo();
    let a = scratch("oci-a");
    let b = scratch("oci-b");
    let first = make_images(&a, "0.1.0", &filters);
    std::thread::sleep(Duration::from_millis(1100)); // a later second
    let second = make_images(&b, "0.1.0", &filters);
    assert_eq!(first, second, "same .wasm, same digests");
    assert_eq!(files_of(&a), files_of(&b), "byte-identical layouts");
    // The tag is not part of the image: another tag, same digest.
    let c = scratch("oci-c");
    let third = make_images(&c, "other-tag", &filters);
    assert_eq!(first, third);
    for f in &filters {
        let (digest, _) = &first[f];
        let layout = a.join(f);
        let manifest = oci::read_blob(&layout, digest).unwrap();
        assert_eq!(&sha256_digest(&manifest), digest);
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        let layer = m["layers"].as_array().unwrap().last().unwrap();
        assert_eq!(layer["mediaType"], oci::LAYER_MEDIA_TYPE);
        let gz = oci::read_blob(&layout, layer["digest"].as_str().unwrap()).unwrap();
        let wasm = std::fs::read(dist().join(format!("{f}.wasm"))).unwrap();
        assert_eq!(plugin_wasm_from_layer(&gz).unwrap(), wasm, "{f}");
    }
}

/// Debian's docker-registry on 127.0.0.1, storage in a scratch dir.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    fn start() -> Registry {
        let dir = scratch("registry");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: gatehouse-test-only\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry; `make setup` installs it)");
        let r = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if r.get("/v2/", "*/*").map(|x| x.status) == Some(200) {
                return r;
            }
            assert!(Instant::now() < deadline, "registry not ready: {}", r.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn get(&self, path: &str, accept: &str) -> Option<HttpResponse> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: {accept}\r\nconnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        HttpResponse::parse(&buf)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("registry log:\n{}", self.log());
        }
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn parse(buf: &[u8]) -> Option<HttpResponse> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let body = buf[end + 4..].to_vec();
        let r = HttpResponse {
            status,
            headers,
            body,
        };
        assert!(
            r.header("transfer-encoding").is_none(),
            "chunked answers are not expected from the registry"
        );
        if let Some(len) = r.header("content-length") {
            assert_eq!(r.body.len(), len.parse::<usize>().unwrap());
        }
        Some(r)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[test]
fn push_to_a_real_registry_and_pull_back() {
    let filters = filters_in_repo();
    let work = scratch("push");
    let built = make_images(&work.join("oci"), "0.1.0", &filters);
    let registry = Registry::start();
    let repo = format!("127.0.0.1:{}/gatehouse", registry.port);
    let tag = "e2e-1";
    let o = Command::new(root().join("tools/delivery/push.sh"))
        .arg(work.join("oci"))
        .arg(&repo)
        .arg(tag)
        .args(&filters)
        .env("PUSH_TLS_VERIFY", "false")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "push.sh failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // What a user pastes: per image the url pinned by digest and the bare
    // hex for spec.sha256 (valid YAML).
    let stdout = String::from_utf8(o.stdout).unwrap();
    let printed: BTreeMap<String, BTreeMap<String, String>> = serde_yaml::from_str(&stdout)
        .unwrap_or_else(|e| panic!("push.sh output is not the documented YAML: {e}\n{stdout}"));
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        filters.iter().collect::<Vec<_>>()
    );

    for f in &filters {
        let digest = &built[f].0;
        let hex = digest.strip_prefix("sha256:").unwrap();
        // The digest printed is the one built here (skopeo changed nothing).
        assert_eq!(
            printed[f]["url"],
            format!("oci://{repo}/{f}@{digest}"),
            "{f}"
        );
        assert_eq!(printed[f]["sha256"], hex, "{f}");
        // The CRDs' pattern for sha256.
        assert!(hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));

        // Pull through the registry API, as Istio's fetcher does.
        let m = registry
            .get(
                &format!("/v2/gatehouse/{f}/manifests/{tag}"),
                oci::MANIFEST_MEDIA_TYPE,
            )
            .unwrap();
        // The printed url pins by digest: the registry serves it by digest too.
        let by_digest = registry
            .get(
                &format!("/v2/gatehouse/{f}/manifests/{digest}"),
                oci::MANIFEST_MEDIA_TYPE,
            )
            .unwrap();
        assert_eq!(by_digest.status, 200);
        assert_eq!(by_digest.body, m.body);
        assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
        assert_eq!(m.header("content-type"), Some(oci::MANIFEST_MEDIA_TYPE));
        assert_eq!(m.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(&sha256_digest(&m.body), digest);
        let manifest: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], oci::MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], oci::CONFIG_MEDIA_TYPE);
        let layers = manifest["layers"].as_array().unwrap();
        let last = layers.last().unwrap();
        assert_eq!(last["mediaType"], oci::LAYER_MEDIA_TYPE);
        assert!(last.get("annotations").is_none(), "{f}: {last}");

        let blob = |d: &str| {
            let b = registry
                .get(&format!("/v2/gatehouse/{f}/blobs/{d}"), "*/*")
                .unwrap();
            assert_eq!(b.status, 200, "blob {d}");
            assert_eq!(sha256_digest(&b.body), d);
            b.body
        };
        let layer = blob(last["digest"].as_str().unwrap());
        assert_eq!(layer.len() as u64, last["size"].as_u64().unwrap());
        let wasm = std::fs::read(dist().join(format!("{f}.wasm"))).unwrap();
        assert_eq!(
            plugin_wasm_from_layer(&layer).unwrap(),
            wasm,
            "{f}: plugin.wasm differs from dist/{f}.wasm"
        );
        let config: Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(config["rootfs"]["type"], "layers");

        // And with another client: skopeo copies it back to an OCI layout.
        let pulled = work.join("pulled").join(f);
        std::fs::create_dir_all(pulled.parent().unwrap()).unwrap();
        let o = Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{repo}/{f}:{tag}"))
            .arg(format!("oci:{}:{tag}", pulled.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let index: Value =
            serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest.as_str());
        let layer = oci::read_blob(&pulled, last["digest"].as_str().unwrap()).unwrap();
        assert_eq!(plugin_wasm_from_layer(&layer).unwrap(), wasm);
    }
    // A tag that was not pushed is not there (the checks above can fail).
    let missing = registry
        .get(
            "/v2/gatehouse/request-id/manifests/never-pushed",
            oci::MANIFEST_MEDIA_TYPE,
        )
        .unwrap();
    assert_eq!(missing.status, 404);
}
