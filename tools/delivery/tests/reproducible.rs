//! Reproducible across machines, not only across directories: the same
//! commit built from two checkouts at different paths, with different cargo
//! homes (so the registry sources, which panic locations name, live at
//! different paths), gives byte-identical modules and image digests.
//!
//! Checkout A is this repository with the cargo home of the caller. Checkout
//! B is a copy of its tracked files under target/reproducible/ with its own
//! cargo home (the registry index and downloaded .crate files are shared by
//! symlink, offline; the sources are unpacked again into B's own
//! registry/src). Both are built with `make module MODULE=request-id` (the
//! flags `make build` uses, from the Makefile of each checkout). One small
//! filter keeps the time bounded; B's target dir is kept between runs. (Built
//! alone, a filter is not byte-identical to the same filter built in one
//! cargo invocation with the others, as `make build` does: cargo unifies
//! dependency features across the packages of an invocation. Both are
//! reproducible; this test covers the remapping that makes them so.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

const MODULE: &str = "request-id";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn cargo_home() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"),
    }
    .canonicalize()
    .unwrap()
}

/// `make module` in `checkout` with `cargo_home`; returns the module.
fn build(checkout: &Path, cargo_home: &Path) -> Vec<u8> {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(checkout)
        .arg("--no-print-directory")
        .arg("module")
        .arg(format!("MODULE={MODULE}"))
        .env("CARGO_HOME", cargo_home)
        .env("CARGO_NET_OFFLINE", "true");
    // What the caller's environment (e.g. an outer make) set must not leak
    // in: each checkout's Makefile decides.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("CARGO_TARGET_")
            || k == "RUSTFLAGS"
            || k == "CARGO_ENCODED_RUSTFLAGS"
            || k == "CARGO_TARGET_DIR"
        {
            cmd.env_remove(&k);
        }
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "make module in {}: {}{}",
        checkout.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let wasm = checkout
        .join("target/wasm32-wasip1/release")
        .join(format!("{}.wasm", MODULE.replace('-', "_")));
    std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()))
}

/// Copies the tracked files of the repository (as they are in the work
/// tree) to `to`, replacing what was there except `target/`.
fn copy_checkout(from: &Path, to: &Path) {
    let o = Command::new("git")
        .arg("-C")
        .arg(from)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    if to.exists() {
        for e in std::fs::read_dir(to).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "target" {
                let p = e.path();
                if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
    }
    for rel in o.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).unwrap());
        let src = from.join(rel);
        if !src.is_file() || rel.starts_with(".venv") {
            continue; // deleted in the work tree, or the shared venv link
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
}

/// A second cargo home: index and .crate cache shared by symlink, its own
/// (initially empty) registry/src.
fn second_cargo_home(dir: &Path, first: &Path) -> PathBuf {
    let home = dir.join("cargo-home");
    let registry = home.join("registry");
    std::fs::create_dir_all(&registry).unwrap();
    for d in ["index", "cache"] {
        let link = registry.join(d);
        if !link.exists() {
            std::os::unix::fs::symlink(first.join("registry").join(d), &link).unwrap();
        }
    }
    home
}

fn image_digest(wasm: &[u8]) -> String {
    gatehouse_delivery::oci::image_blobs(MODULE, wasm)
        .unwrap()
        .image
        .manifest
        .digest
}

/// Every printable run of at least 8 bytes that looks like a path.
fn paths_in(wasm: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for run in wasm.split(|b| !(0x20..0x7f).contains(b)) {
        if run.len() >= 8 {
            let s = String::from_utf8_lossy(run);
            if s.contains(".rs") {
                out.push(s.to_string());
            }
        }
    }
    out
}

#[test]
fn two_checkouts_with_different_cargo_homes_build_identical_modules() {
    let a = root();
    let home_a = cargo_home();
    let work = a.join("target/reproducible");
    let b = work.join("checkout");
    let home_b = second_cargo_home(&work, &home_a);
    copy_checkout(&a, &b);
    assert_ne!(a, b);
    assert_ne!(home_a, home_b.canonicalize().unwrap());

    let wasm_a = build(&a, &home_a);
    let wasm_b = build(&b, &home_b);
    // B really unpacked its own registry sources.
    assert!(
        std::fs::read_dir(home_b.join("registry/src"))
            .unwrap()
            .next()
            .is_some(),
        "B must use its own registry/src"
    );

    let paths_a = paths_in(&wasm_a);
    for (what, p) in [
        ("checkout A", a.display().to_string()),
        ("checkout B", b.display().to_string()),
        ("cargo home A", home_a.display().to_string()),
        ("cargo home B", home_b.display().to_string()),
    ] {
        for (name, paths) in [("A", &paths_a), ("B", &paths_in(&wasm_b))] {
            assert!(
                !paths.iter().any(|s| s.contains(&p)),
                "module {name} holds the path of {what} ({p}): {paths:?}"
            );
        }
    }
    assert!(
        paths_a.iter().any(|s| s.contains("/cargo/registry/src/")),
        "registry paths are remapped to /cargo: {paths_a:?}"
    );
    assert!(
        wasm_a == wasm_b,
        "request-id.wasm differs between the checkouts ({} vs {} bytes); paths: A {:?} B {:?}",
        wasm_a.len(),
        wasm_b.len(),
        paths_a,
        paths_in(&wasm_b)
    );
    assert_eq!(image_digest(&wasm_a), image_digest(&wasm_b));
    eprintln!(
        "identical: {} bytes, image {}",
        wasm_a.len(),
        image_digest(&wasm_a)
    );
}
