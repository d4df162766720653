//! The embedded registry with a real client: an image built offline (a layer holding
//! Debian's static busybox) is pushed with skopeo, inspected, copied between repositories
//! (a cross-repository mount), pulled back byte for byte, and read raw with curl.

use std::process::Command;

use serde_json::{Value, json};
use skiff_e2e::TestServer;
use skiff_e2e::images::{busybox_image, ok, run, skopeo_copy};

fn curl(args: &[&str]) -> (u16, String) {
    let out = ok(Command::new("curl")
        .args(["-s", "-o", "/dev/stdout", "-w", "\n%{http_code}"])
        .args(args));
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn skopeo_pushes_inspects_mounts_and_pulls() {
    let server = TestServer::start_api_only();
    let dir = tempfile::tempdir().unwrap();
    let (archive, layer, manifest) = busybox_image(dir.path());
    let registry = server.registry.to_string();
    let image = format!("docker://{registry}/test/busybox:v1");
    let source = format!("oci-archive:{}:v1", archive.display());

    // Pushing needs the cluster's token.
    let denied = skopeo_copy(&source, &image, "skiff:wrong");
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("unauthorized") || stderr.contains("401"),
        "{stderr}"
    );

    let creds = format!("skiff:{}", server.token());
    let pushed = skopeo_copy(&source, &image, &creds);
    assert!(pushed.status.success(), "{pushed:?}");

    let inspected: Value = serde_json::from_str(&ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &image,
    ])))
    .unwrap();
    let (_, stored) = curl(&[
        "-H",
        "Authorization: Bearer anonymous",
        &format!("http://{registry}/v2/test/busybox/manifests/v1"),
    ]);
    let local = std::fs::read_to_string(
        dir.path().join("layout/blobs/sha256").join(
            manifest["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    )
    .unwrap();
    assert_eq!(stored, local);
    assert_eq!(inspected["Digest"], manifest["digest"]);
    assert_eq!(inspected["Layers"], json!([layer["digest"]]));
    assert_eq!(inspected["Architecture"], "amd64");

    // Registry to registry: the layer is mounted across repositories, not sent again.
    let other = format!("docker://{registry}/other/copy:latest");
    ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &image,
        &other,
    ]));

    // Pulled back byte for byte.
    let out = dir.path().join("pulled");
    ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &other,
        &format!("oci:{}:v1", out.display()),
    ]));
    let hex = layer["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(out.join("blobs/sha256").join(hex)).unwrap(),
        std::fs::read(dir.path().join("layout/blobs/sha256").join(hex)).unwrap()
    );

    // Raw: catalog, tags, Range, digests, errors.
    let base = format!("http://{registry}/v2");
    let (code, body) = curl(&[&format!("{base}/_catalog")]);
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"repositories": ["other/copy", "test/busybox"]}))
    );
    let (_, body) = curl(&[&format!("{base}/test/busybox/tags/list")]);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"name": "test/busybox", "tags": ["v1"]})
    );
    let layer_url = format!(
        "{base}/test/busybox/blobs/{}",
        layer["digest"].as_str().unwrap()
    );
    let ranged = ok(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        "Range: bytes=0-3",
        &layer_url,
    ]));
    assert_eq!(ranged, "206 4");
    let (code, _) = curl(&[
        "-I",
        &format!(
            "{base}/test/busybox/manifests/{}",
            manifest["digest"].as_str().unwrap()
        ),
    ]);
    assert_eq!(code, 200);
    let (code, body) = curl(&[&format!("{base}/test/busybox/manifests/v9")]);
    assert_eq!(code, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["errors"][0]["code"],
        "MANIFEST_UNKNOWN"
    );
    let (code, body) = curl(&[&format!(
        "{base}/nobody/blobs/{}",
        layer["digest"].as_str().unwrap()
    )]);
    assert_eq!(
        (
            code,
            serde_json::from_str::<Value>(&body).unwrap()["errors"][0]["code"].clone()
        ),
        (404, json!("BLOB_UNKNOWN"))
    );

    // Deletion: the copy's manifest goes (skopeo deletes by digest); the original stays.
    ok(Command::new("skopeo").args(["delete", "--tls-verify=false", "--creds", &creds, &other]));
    let gone = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &other]));
    assert!(!gone.status.success(), "the deleted manifest is gone");
    ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", &image]));
    let other_layer = format!(
        "{base}/other/copy/blobs/{}",
        layer["digest"].as_str().unwrap()
    );
    let (code, _) = curl(&[
        "-u",
        &format!("skiff:{}", server.token()),
        "-X",
        "DELETE",
        &other_layer,
    ]);
    assert_eq!(code, 202);
    let (code, _) = curl(&["-I", &other_layer]);
    assert_eq!(code, 404);
    let (code, _) = curl(&["-I", &layer_url]);
    assert_eq!(code, 200, "still linked into test/busybox");

    // A blob whose bytes do not match the digest it is sent as is refused.
    let auth = format!("skiff:{}", server.token());
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let (code, body) = curl(&[
        "-u",
        &auth,
        "-X",
        "POST",
        "--data-binary",
        "hello",
        &format!("{base}/test/busybox/blobs/uploads/?digest={wrong}"),
    ]);
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["errors"][0]["code"],
        "DIGEST_INVALID"
    );
}
