//! Reproducible OCI images that Istio can pull for a `WasmPlugin`.
//!
//! The image is the "standard OCI image" variant Istio's image fetcher
//! accepts: an OCI image manifest whose **last layer** is a tar+gzip holding
//! one file, `plugin.wasm`. It is written as an OCI image layout on disk
//! (`oci-layout`, `index.json`, `blobs/sha256/...`), which `skopeo copy
//! oci:DIR:TAG docker://...` pushes unchanged.
//!
//! The layer carries no `org.opencontainers.image.title` annotation: artifact
//! tools (oras) would save the gzip blob under that name, i.e. a tar+gzip
//! file called `plugin.wasm`. Istio does not need it: its image fetcher
//! (istio/istio pkg/wasm/imagefetcher.go) takes the last layer by media type
//! and looks inside the tar for the entry whose base name is `plugin.wasm`.
//!
//! Reproducible by construction: the tar entry has fixed metadata (mtime 0,
//! uid/gid 0, mode 0644, no user names), the gzip header has mtime 0 and no
//! file name, JSON is serialised in a fixed key order and no timestamp or
//! build-host fact enters any blob. The manifest digest (the `sha256` a
//! WasmPlugin pins) therefore depends only on the `.wasm` bytes and the
//! filter name, never on the tag or the time of the build.

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::Path;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file Istio looks for in the last layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// A content descriptor (digest `sha256:<hex>` and size in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// What [`build_layout`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image manifest: its digest is what `WasmPlugin.spec.sha256` pins.
    pub manifest: Blob,
    pub config: Blob,
    /// The tar+gzip layer holding `plugin.wasm`.
    pub layer: Blob,
    /// sha256 of the uncompressed layer tar (the config's `diff_id`).
    pub diff_id: String,
}

/// `sha256:<lowercase hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in sum {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn blob(bytes: &[u8]) -> Blob {
    Blob {
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
    }
}

/// The uncompressed layer: a tar with one regular file `plugin.wasm`.
pub fn layer_tar(wasm: &[u8]) -> io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE)?;
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    builder.into_inner()
}

/// gzip with a fixed header (mtime 0, no name, OS "unknown") at level 9.
pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    enc.write_all(data)?;
    enc.finish()
}

/// The three blobs of the image (config, layer, manifest), as bytes.
pub struct ImageBlobs {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    pub image: Image,
}

/// Builds the image blobs for the filter `name` from its `.wasm` bytes.
pub fn image_blobs(name: &str, wasm: &[u8]) -> io::Result<ImageBlobs> {
    let tar = layer_tar(wasm)?;
    let diff_id = sha256_digest(&tar);
    let layer = gzip(&tar)?;
    let layer_blob = blob(&layer);
    let config = to_json(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    let config_blob = blob(&config);
    let manifest = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_blob.digest,
            "size": config_blob.size,
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_blob.digest,
            "size": layer_blob.size,
        }],
        "annotations": {
            "org.opencontainers.image.title": format!("gatehouse-{name}"),
            "org.opencontainers.image.description": format!("gatehouse {name} proxy-wasm filter (Istio TrafficExtension/WasmPlugin image)"),
        },
    }))?;
    let manifest_blob = blob(&manifest);
    Ok(ImageBlobs {
        image: Image {
            manifest: manifest_blob,
            config: config_blob,
            layer: layer_blob,
            diff_id,
        },
        config,
        layer,
        manifest,
    })
}

fn to_json(v: &Value) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io::Error::other)
}

fn hex_of(digest: &str) -> io::Result<&str> {
    digest
        .strip_prefix("sha256:")
        .ok_or_else(|| io::Error::other(format!("not a sha256 digest: {digest}")))
}

/// Writes the OCI image layout for filter `name` into `out` (replacing a
/// previous layout there), tagged `tag` in `index.json`.
pub fn build_layout(name: &str, wasm: &[u8], tag: &str, out: &Path) -> io::Result<Image> {
    if out.exists() {
        let is_layout = out.join("oci-layout").is_file();
        let is_empty = std::fs::read_dir(out)?.next().is_none();
        if !is_layout && !is_empty {
            return Err(io::Error::other(format!(
                "{} exists and is not an OCI layout; refusing to replace it",
                out.display()
            )));
        }
        std::fs::remove_dir_all(out)?;
    }
    let blobs = image_blobs(name, wasm)?;
    let dir = out.join("blobs").join("sha256");
    std::fs::create_dir_all(&dir)?;
    for (bytes, b) in [
        (&blobs.config, &blobs.image.config),
        (&blobs.layer, &blobs.image.layer),
        (&blobs.manifest, &blobs.image.manifest),
    ] {
        std::fs::write(dir.join(hex_of(&b.digest)?), bytes)?;
    }
    std::fs::write(
        out.join("oci-layout"),
        to_json(&json!({"imageLayoutVersion": "1.0.0"}))?,
    )?;
    let index = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": blobs.image.manifest.digest,
            "size": blobs.image.manifest.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }))?;
    std::fs::write(out.join("index.json"), index)?;
    Ok(blobs.image)
}

/// Reads a blob of a layout by digest.
pub fn read_blob(layout: &Path, digest: &str) -> io::Result<Vec<u8>> {
    std::fs::read(layout.join("blobs").join("sha256").join(hex_of(digest)?))
}

/// The `plugin.wasm` inside a tar+gzip layer, the way Istio extracts it.
pub fn plugin_wasm_from_layer(layer_gz: &[u8]) -> io::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(GzDecoder::new(layer_gz));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() == PLUGIN_FILE {
            let mut out = Vec::new();
            entry.read_to_end(&mut out)?;
            return Ok(out);
        }
    }
    Err(io::Error::other(format!("no {PLUGIN_FILE} in the layer")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_digests_and_layer_round_trips() {
        let wasm = b"\0asm\x01\0\0\0 pretend module".to_vec();
        let a = image_blobs("request-id", &wasm).unwrap();
        let b = image_blobs("request-id", &wasm).unwrap();
        assert_eq!(a.image, b.image);
        assert_eq!(plugin_wasm_from_layer(&a.layer).unwrap(), wasm);
        // gzip header: magic, deflate, no flags, mtime 0.
        assert_eq!(&a.layer[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let other = image_blobs("request-id", b"\0asm\x01\0\0\0 other").unwrap();
        assert_ne!(a.image.manifest, other.image.manifest);
    }

    #[test]
    fn layout_has_index_with_tag_and_all_blobs() {
        let dir = std::env::temp_dir().join(format!("gh-oci-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let img = build_layout("x", b"\0asm\x01\0\0\0", "1.2.3", &dir).unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            img.manifest.digest.as_str()
        );
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "1.2.3"
        );
        let m: Value =
            serde_json::from_slice(&read_blob(&dir, &img.manifest.digest).unwrap()).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        // No title annotation: tools would name the gzip blob plugin.wasm.
        assert!(m["layers"][0].get("annotations").is_none(), "{m}");
        // Building again over the same directory is allowed and identical.
        let again = build_layout("x", b"\0asm\x01\0\0\0", "other-tag", &dir).unwrap();
        assert_eq!(img, again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
