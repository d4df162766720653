//! Images built offline for tests, with ordinary tools (tar, gzip, sha256sum) rather than
//! skiff's own code, so what skiff reads is what other tools write: an OCI layout archive
//! (as `skopeo copy … oci-archive:` writes) and a `docker save` archive, both of a layer
//! holding Debian's static busybox.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install skopeo)"))
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `bytes` as a blob of an OCI layout; answers its descriptor.
fn blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    let digest = sha256(&tmp);
    let dest = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::rename(&tmp, dest).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

/// An OCI image layout archive of one busybox layer, tagged `v1`; answers (archive, layer
/// descriptor, manifest descriptor).
pub fn busybox_image(dir: &Path) -> (PathBuf, Value, Value) {
    let (layer_tar, diff_id) = busybox_layer(dir, "layer");
    // Compressed, as pushed layers are (skopeo would compress an uncompressed one).
    ok(Command::new("gzip").arg("-n").arg(&layer_tar));
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let gzipped = std::fs::read(dir.join("layer.tar.gz")).unwrap();
    let layer = blob(
        &layout,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &gzipped,
    );
    let config = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    let config = blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer]});
    let mut manifest_desc = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    manifest_desc["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
    std::fs::write(
        layout.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [manifest_desc]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("busybox.tar");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    (archive, layer, manifest_desc)
}

/// The busybox rootfs as an uncompressed layer tar `dir/NAME.tar`; answers (path, diff ID).
fn busybox_layer(dir: &Path, name: &str) -> (PathBuf, String) {
    let rootfs = dir.join(format!("{name}-rootfs"));
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox (apt-get install busybox-static)");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let layer = dir.join(format!("{name}.tar"));
    ok(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("bin"));
    let diff_id = sha256(&layer);
    (layer, diff_id)
}

/// `skopeo copy` to a plain-HTTP registry with `user:password` credentials.
pub fn skopeo_copy(source: &str, dest: &str, creds: &str) -> std::process::Output {
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        source,
        dest,
    ]))
}

/// A `docker save` archive (manifest.json, config, `<id>/layer.tar`) of the busybox layer
/// under `names`; answers the archive's path.
pub fn docker_save_archive(dir: &Path, names: &[&str]) -> PathBuf {
    let (layer, diff_id) = busybox_layer(dir, "docker-layer");
    let tree = dir.join("docker-save");
    let layer_dir = diff_id.trim_start_matches("sha256:");
    std::fs::create_dir_all(tree.join(layer_dir)).unwrap();
    std::fs::rename(&layer, tree.join(layer_dir).join("layer.tar")).unwrap();
    let config = json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    std::fs::write(tree.join("config.json"), config.to_string()).unwrap();
    let manifest = json!([{"Config": "config.json", "RepoTags": names,
        "Layers": [format!("{layer_dir}/layer.tar")]}]);
    std::fs::write(tree.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = dir.join("docker-save.tar");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    archive
}

/// A layer (still open for more entries) of Debian's static busybox in `bin/` with a
/// symlink per applet, as built with skiff's own image builder.
pub fn busybox_layer_builder(applets: &[&str]) -> skiff_image::build::LayerBuilder {
    let busybox = std::fs::read("/bin/busybox").expect("busybox (apt-get install busybox-static)");
    let mut layer =
        skiff_image::build::LayerBuilder::new()
            .dir("bin/")
            .file("bin/busybox", &busybox, 0o755);
    for applet in applets {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer
}
