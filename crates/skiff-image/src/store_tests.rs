//! The store against a real registry (skiff's own, on loopback), over plain HTTP and TLS.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use skiff_oci::Platform;
use skiff_oci::manifest::RunConfig;

use crate::build::{BuiltImage, Compression, LayerBuilder};
use crate::registry_client::{Endpoint, RegistryClient};
use crate::{GcPolicy, Keyring, PullError, PullEvent, RegistriesConfig};

const ADMIN: &str = "admin-token";

struct Registry {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    endpoint: Endpoint,
    _task: tokio::task::JoinHandle<()>,
}

async fn registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let storage = skiff_registry::Storage::open(&root).unwrap();
    let (addr, task) = skiff_registry::serve(
        "127.0.0.1:0".parse().unwrap(),
        storage,
        Arc::new(|t: &str| t == ADMIN),
    )
    .await
    .unwrap();
    Registry {
        _dir: dir,
        root,
        endpoint: Endpoint::new(&format!("http://{addr}")),
        _task: task,
    }
}

fn pusher(client: &RegistryClient, r: &Registry, repo: &str) -> crate::registry_client::Repository {
    let creds = crate::Credentials {
        username: "skiff".into(),
        password: ADMIN.into(),
    };
    client.repository(&r.endpoint, repo, Some(creds), true)
}

fn hello_image(version: &str, compression: Compression) -> BuiltImage {
    let base = LayerBuilder::new()
        .dir("bin/")
        .file("bin/hello", b"#!/bin/sh\necho hello\n", 0o755)
        .symlink("bin/sh", "hello")
        .file("etc/motd", b"welcome\n", 0o644)
        .finish(compression);
    let top = LayerBuilder::new()
        .file("etc/version", version.as_bytes(), 0o644)
        .file("etc/.wh.motd", b"", 0o644)
        .finish(compression);
    let run = RunConfig {
        cmd: Some(vec!["/bin/hello".into()]),
        ..Default::default()
    };
    BuiltImage::new(vec![base, top], run, &Platform::current())
}

/// Tests send nothing off the machine: no fall-back to docker.io and the like.
fn offline() -> RegistriesConfig {
    RegistriesConfig {
        disable_default_endpoint: true,
        ..Default::default()
    }
}

fn store(dir: &std::path::Path, embedded: Option<&Endpoint>) -> crate::ImageStore {
    crate::ImageStore::open(dir, RegistryClient::new(offline()), embedded.cloned()).unwrap()
}

#[tokio::test]
async fn images_pull_through_the_embedded_registry_under_any_name() {
    let reg = registry().await;
    let client = RegistryClient::new(RegistriesConfig::default());
    let image = hello_image("v1", Compression::Gzip);
    let digest = image
        .push(&pusher(&client, &reg, "p/hello-node"), "v1")
        .await
        .unwrap();
    assert_eq!(digest, image.digest());

    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), Some(&reg.endpoint));
    // gcr.io is not reachable from here; the cluster's registry has it under p/hello-node.
    let pulled = store
        .pull("gcr.io/p/hello-node:v1", &Keyring::default(), None)
        .await
        .unwrap();
    assert_eq!(pulled.digest, digest);
    assert_eq!(pulled.name, "gcr.io/p/hello-node:v1");
    assert_eq!(
        pulled.config.config.cmd.as_deref(),
        Some(&["/bin/hello".to_string()][..])
    );
    assert_eq!(pulled.layers.len(), 2);
    let base = &pulled.layers[0];
    assert_eq!(
        std::fs::read(base.join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        std::fs::read_link(base.join("bin/sh")).unwrap(),
        std::path::Path::new("hello")
    );
    assert_eq!(
        std::fs::read(pulled.layers[1].join("etc/version")).unwrap(),
        b"v1"
    );
    assert!(
        std::fs::symlink_metadata(pulled.layers[1].join("etc/motd")).is_ok(),
        "the whiteout"
    );

    // By digest, under another name of the same repository: no layer is fetched again.
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let progress: crate::Progress = Arc::new(move |e| seen.lock().unwrap().push(e));
    let by_digest = format!("{}/p/hello-node@{digest}", reg.endpoint.host());
    let again = store
        .pull(&by_digest, &Keyring::default(), Some(progress))
        .await
        .unwrap();
    assert_eq!(again.layers, pulled.layers, "layers are shared");
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, PullEvent::LayerProgress { .. })),
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, PullEvent::LayerPresent { .. }))
            .count(),
        2
    );
    assert!(store.image(&by_digest).is_some());
    assert!(
        store
            .image(&format!("gcr.io/p/hello-node@{digest}"))
            .is_some()
    );
    let names: Vec<String> = store.list().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        [
            format!("{}/p/hello-node@{digest}", reg.endpoint.host()),
            "gcr.io/p/hello-node:v1".to_string(),
            format!("gcr.io/p/hello-node@{digest}"),
        ]
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_fetch_each_layer_once() {
    let reg = registry().await;
    let client = RegistryClient::new(RegistriesConfig::default());
    let image = hello_image("zstd", Compression::Zstd);
    image
        .push(&pusher(&client, &reg, "library/busybox"), "1.36")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), Some(&reg.endpoint));
    let downloads = Arc::new(Mutex::new(HashSet::new()));
    let fetched = Arc::new(Mutex::new(0));
    let (seen, count) = (downloads.clone(), fetched.clone());
    let progress: crate::Progress = Arc::new(move |e| {
        if let PullEvent::LayerUnpacked { digest, .. } = e {
            seen.lock().unwrap().insert(digest);
            *count.lock().unwrap() += 1;
        }
    });
    let pulls = [
        "busybox:1.36",
        "docker.io/library/busybox:1.36",
        "busybox:1.36",
    ]
    .map(|name| {
        let (store, progress) = (store.clone(), progress.clone());
        tokio::spawn(async move { store.pull(name, &Keyring::default(), Some(progress)).await })
    });
    for pull in pulls {
        let image = pull.await.unwrap().unwrap();
        assert_eq!(
            std::fs::read(image.layers[1].join("etc/version")).unwrap(),
            b"zstd"
        );
    }
    assert_eq!(downloads.lock().unwrap().len(), 2);
    assert_eq!(*fetched.lock().unwrap(), 2, "each layer unpacked once");
}

#[tokio::test]
async fn failures_name_the_image_and_the_cause() {
    let reg = registry().await;
    let client = RegistryClient::new(RegistriesConfig::default());
    let image = hello_image("v1", Compression::Gzip);
    let host = reg.endpoint.host().to_string();
    image
        .push(&pusher(&client, &reg, "app"), "v1")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), None);

    // A missing tag.
    let err = store
        .pull(&format!("{host}/app:v2"), &Keyring::default(), None)
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "pulling {host}/app:v2: not found at http://{host} (MANIFEST_UNKNOWN: manifest unknown: app:v2)"
        )
    );

    // Wrong credentials: the token service refuses them (pushes always authenticate).
    let wrong = crate::Credentials {
        username: "u".into(),
        password: "wrong".into(),
    };
    let session = client.repository(&reg.endpoint, "app", Some(wrong), true);
    let err = image.push(&session, "v2").await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "http://{host} refused the credentials (401 Unauthorized: UNAUTHORIZED: wrong credentials: the password must be a cluster token); check the image pull secret or the registries config"
        )
    );

    // Nothing listens on port 1.
    let err = store
        .pull("127.0.0.1:1/app:v1", &Keyring::default(), None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("pulling 127.0.0.1:1/app:v1: cannot reach http://127.0.0.1:1: "),
        "{msg}"
    );
    assert!(msg.contains("Connection refused"), "{msg}");

    // Content that does not match its digest (a corrupted registry disk).
    let layer = image.layers[1].descriptor().digest;
    let blob = reg
        .root
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    std::fs::write(&blob, b"tampered").unwrap();
    let err = store
        .pull(&format!("{host}/app:v1"), &Keyring::default(), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pulling {host}/app:v1: layer {layer} arrived with digest {}; the content was refused",
            skiff_oci::sha256_digest(b"tampered")
        )
    );
    assert!(store.image(&format!("{host}/app:v1")).is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0,
        "no leftovers"
    );
}

#[tokio::test]
async fn a_layer_whose_content_does_not_match_the_config_is_refused() {
    let reg = registry().await;
    let client = RegistryClient::new(RegistriesConfig::default());
    let mut image = hello_image("v1", Compression::Gzip);
    // Claim another diff ID for the top layer.
    image.layers[1].diff_id = skiff_oci::sha256_digest(b"something else");
    let image = BuiltImage::new(image.layers, RunConfig::default(), &Platform::current());
    image
        .push(&pusher(&client, &reg, "library/liar"), "v1")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), Some(&reg.endpoint));
    let err = store
        .pull("liar:v1", &Keyring::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullError::DigestMismatch {
                what: "uncompressed layer",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_index_yields_the_image_for_this_platform() {
    let reg = registry().await;
    let client = RegistryClient::new(RegistriesConfig::default());
    let repo = pusher(&client, &reg, "library/multi");
    let here = Platform::current();
    let elsewhere = Platform {
        architecture: "s390x".into(),
        os: "linux".into(),
        variant: None,
    };
    let mine = hello_image("mine", Compression::Gzip);
    let other = BuiltImage::new(
        hello_image("other", Compression::Gzip).layers,
        RunConfig::default(),
        &elsewhere,
    );
    let mut manifests = Vec::new();
    for (image, platform) in [(&other, &elsewhere), (&mine, &here)] {
        let digest = image.push(&repo, &image.digest()).await.unwrap();
        manifests.push(serde_json::json!({
            "mediaType": skiff_oci::media_type::OCI_MANIFEST, "digest": digest,
            "size": image.manifest.len(), "platform": platform}));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": skiff_oci::media_type::OCI_INDEX, "manifests": manifests});
    repo.put_manifest(
        "v1",
        skiff_oci::media_type::OCI_INDEX,
        index.to_string().into(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), Some(&reg.endpoint));
    let pulled = store
        .pull("multi:v1", &Keyring::default(), None)
        .await
        .unwrap();
    assert_eq!(pulled.digest, mine.digest());
    assert_eq!(
        std::fs::read(pulled.layers[1].join("etc/version")).unwrap(),
        b"mine"
    );

    let only_other = serde_json::json!({"schemaVersion": 2, "mediaType": skiff_oci::media_type::OCI_INDEX, "manifests": [manifests[0]]});
    repo.put_manifest(
        "s390x",
        skiff_oci::media_type::OCI_INDEX,
        only_other.to_string().into(),
    )
    .await
    .unwrap();
    let err = store
        .pull("multi:s390x", &Keyring::default(), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pulling docker.io/library/multi:s390x: its index has no {here} image (it has linux/s390x)"
        )
    );
}

#[tokio::test]
async fn image_gc_removes_least_recently_used_images_not_in_use() {
    let reg = registry().await;
    let client = RegistryClient::new(RegistriesConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), Some(&reg.endpoint));
    let mut digests = Vec::new();
    for v in ["a", "b", "c"] {
        let image = BuiltImage::new(
            vec![
                LayerBuilder::new()
                    .file("data", &vec![v.as_bytes()[0]; 100_000], 0o644)
                    .finish(Compression::Gzip),
            ],
            RunConfig::default(),
            &Platform::current(),
        );
        digests.push(
            image
                .push(&pusher(&client, &reg, &format!("library/{v}")), "v1")
                .await
                .unwrap(),
        );
        store
            .pull(&format!("{v}:v1"), &Keyring::default(), None)
            .await
            .unwrap();
        // Distinct last-used times: a, then b, then c.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    store.touch("a:v1");
    // A disk whose capacity is a little more than the three images: ~90% full with all
    // three, under 80% once one goes.
    // Each image is one 100 kB layer.
    let layer_bytes = |store: &crate::ImageStore| {
        std::fs::read_dir(store.root().join("layers"))
            .unwrap()
            .count() as u64
            * 100_000
    };
    let capacity = 333_334;
    let usage = |_: &std::path::Path| Some((layer_bytes(&store), capacity));
    let in_use: HashSet<String> = [digests[1].clone()].into();
    let report = store.collect_garbage_with(&in_use, GcPolicy::default(), &usage);
    // b is in use, a was used most recently: c goes, and that is enough.
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        [
            "docker.io/library/c:v1".to_string(),
            format!("docker.io/library/c@{}", digests[2])
        ]
    );
    assert_eq!(report.removed.len(), 2);
    assert!(report.freed_bytes >= 100_000);
    assert!(store.image("c:v1").is_none());
    assert!(store.image("a:v1").is_some() && store.image("b:v1").is_some());
    // Under the high threshold nothing happens.
    let report = store.collect_garbage_with(&HashSet::new(), GcPolicy::default(), &usage);
    assert!(report.removed.is_empty());
}

#[tokio::test]
async fn tls_registries_need_a_trusted_certificate_or_the_insecure_setting() {
    let reg_dir = tempfile::tempdir().unwrap();
    let storage = skiff_registry::Storage::open(reg_dir.path().join("registry")).unwrap();
    let creds =
        skiff_apiserver::pki::load_or_create(reg_dir.path(), &["127.0.0.1".to_string()]).unwrap();
    let acceptor =
        skiff_tls::acceptor(&creds.serving_cert_pem, &creds.serving_key_pem, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = skiff_registry::router(
        storage,
        Arc::new(|t: &str| t == ADMIN),
        skiff_registry::Scheme::Https,
    );
    let _server = tokio::spawn(skiff_tls::serve(listener, acceptor, app));
    let ca_file = reg_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &creds.ca_pem).unwrap();
    let host = addr.to_string();

    let trusting = RegistriesConfig::parse(&format!(
        "disable_default_endpoint: true\nconfigs:\n  \"{host}\":\n    tls:\n      ca_file: {}\n",
        ca_file.display()
    ))
    .unwrap();
    let client = RegistryClient::new(trusting);
    let tls = Registry {
        _dir: tempfile::tempdir().unwrap(),
        root: Default::default(),
        endpoint: Endpoint::new(&format!("https://{host}")),
        _task: tokio::spawn(async {}),
    };
    hello_image("tls", Compression::Gzip)
        .push(&pusher(&client, &tls, "library/secure"), "v1")
        .await
        .unwrap();

    // 127.0.0.1 defaults to plain HTTP; the config's mirror entry says HTTPS.
    let dir = tempfile::tempdir().unwrap();
    let with_ca = crate::ImageStore::open(dir.path(), client, Some(tls.endpoint.clone())).unwrap();
    let image = with_ca
        .pull("secure:v1", &Keyring::default(), None)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(image.layers[1].join("etc/version")).unwrap(),
        b"tls"
    );

    let untrusting = crate::ImageStore::open(
        dir.path().join("b"),
        RegistryClient::new(offline()),
        Some(tls.endpoint.clone()),
    )
    .unwrap();
    let err = untrusting
        .pull("secure:v1", &Keyring::default(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("cannot reach https://{host}")) && err.contains("certificate"),
        "{err}"
    );

    let skipping = RegistriesConfig::parse(&format!("disable_default_endpoint: true\nconfigs:\n  \"{host}\":\n    tls: {{ insecure_skip_verify: true }}\n")).unwrap();
    let insecure = crate::ImageStore::open(
        dir.path().join("c"),
        RegistryClient::new(skipping),
        Some(tls.endpoint.clone()),
    )
    .unwrap();
    insecure
        .pull("secure:v1", &Keyring::default(), None)
        .await
        .unwrap();
}
