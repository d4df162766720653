//! Images end to end: archives made by ordinary tools imported with `skiff image import`,
//! another pushed with skopeo, `skiff image ls/pull/rm` against the server, and the node
//! image store pulling them all by name and by digest through the cluster's registry.
//! Everything stays on loopback: the node store never falls back to public registries.

use std::process::{Command, Stdio};
use std::sync::Arc;

use skiff_e2e::TestServer;
use skiff_e2e::images::{busybox_image, docker_save_archive, ok, run, skopeo_copy};
use skiff_image::{Endpoint, ImageStore, Keyring, RegistriesConfig, RegistryClient};

/// The stderr of a `skiff` command that must fail.
fn skiff_fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// A node's image store that tries the cluster registry and nothing off the machine.
fn node_store(dir: &std::path::Path, registry: std::net::SocketAddr) -> ImageStore {
    let offline = RegistriesConfig {
        disable_default_endpoint: true,
        ..Default::default()
    };
    ImageStore::open(
        dir,
        RegistryClient::new(offline),
        Some(Endpoint::new(&format!("http://{registry}"))),
    )
    .unwrap()
}

#[test]
fn images_are_imported_pushed_copied_listed_pulled_by_nodes_and_removed() {
    let server = TestServer::start_api_only();
    let dir = tempfile::tempdir().unwrap();
    let registry = server.registry;
    let busybox = std::fs::read("/bin/busybox").expect("apt-get install busybox-static");

    // An OCI layout archive whose ref name is only a tag: --name gives the repository.
    let (oci_archive, _, _) = busybox_image(dir.path());
    let out = ok(&mut server.skiff(&[
        "image",
        "import",
        oci_archive.to_str().unwrap(),
        "--name",
        "busybox",
    ]));
    assert!(out.starts_with("imported busybox:v1 (sha256:"), "{out}");

    // A docker save archive with two names, from standard input.
    let docker_archive =
        docker_save_archive(dir.path(), &["gcr.io/p/hello-node:v1", "hello-node:latest"]);
    let mut import = server.skiff(&["image", "import", "-"]);
    import
        .stdin(std::fs::File::open(&docker_archive).unwrap())
        .stdout(Stdio::piped());
    let out = ok(&mut import);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("imported gcr.io/p/hello-node:v1 (sha256:"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("imported hello-node:latest (sha256:"),
        "{out}"
    );
    let hello_digest = lines[0].split(['(', ',']).nth(1).unwrap().to_string();

    // skopeo pushes under a name with the registry's own address.
    let creds = format!("skiff:{}", server.token());
    let pushed = skopeo_copy(
        &format!("oci-archive:{}:v1", oci_archive.display()),
        &format!("docker://{registry}/tools/busybox:v1"),
        &creds,
    );
    assert!(pushed.status.success(), "{pushed:?}");

    let ls = ok(&mut server.skiff(&["image", "ls"]));
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["IMAGE", "TAG", "DIGEST", "SIZE"]);
    let listed: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        listed,
        [
            ("busybox", "v1"),
            ("hello-node", "latest"),
            ("p/hello-node", "v1"),
            ("tools/busybox", "v1")
        ],
        "{ls}"
    );
    assert_eq!(
        rows[3][2],
        &hello_digest.trim_start_matches("sha256:")[..12]
    );

    // Nodes pull through the cluster registry, under every name an image goes by.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = tempfile::tempdir().unwrap();
    let store = node_store(node.path(), registry);
    let keyring = Keyring::default();
    let pulled = rt
        .block_on(store.pull("busybox:v1", &keyring, None))
        .unwrap();
    let rootfs = &pulled.layers[0];
    assert_eq!(std::fs::read(rootfs.join("bin/busybox")).unwrap(), busybox);
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    assert_eq!(
        pulled.config.config.cmd.as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    for name in [
        "docker.io/library/busybox:v1".to_string(),
        format!("{registry}/tools/busybox:v1"),
    ] {
        let again = rt.block_on(store.pull(&name, &keyring, None)).unwrap();
        assert_eq!(again.layers, pulled.layers, "{name} shares the layer");
    }
    let by_digest = rt
        .block_on(store.pull(
            &format!("gcr.io/p/hello-node@{hello_digest}"),
            &keyring,
            None,
        ))
        .unwrap();
    assert_eq!(by_digest.digest, hello_digest);
    assert_eq!(
        by_digest.config.config.env.as_deref(),
        Some(&["PATH=/bin".to_string()][..])
    );
    assert_eq!(
        std::fs::read(by_digest.layers[0].join("bin/busybox")).unwrap(),
        busybox
    );

    // `skiff image pull` copies from another registry (here one on loopback) into the cluster's.
    let remote_dir = tempfile::tempdir().unwrap();
    let (remote, _task) = rt.block_on(async {
        skiff_registry::serve(
            "127.0.0.1:0".parse().unwrap(),
            skiff_registry::Storage::open(remote_dir.path()).unwrap(),
            Arc::new(|t: &str| t == "remote-token"),
        )
        .await
        .unwrap()
    });
    let pushed = skopeo_copy(
        &format!("oci-archive:{}:v1", oci_archive.display()),
        &format!("docker://{remote}/team/app:v2"),
        "x:remote-token",
    );
    assert!(pushed.status.success(), "{pushed:?}");
    let out = ok(&mut server.skiff(&["image", "pull", &format!("{remote}/team/app:v2")]));
    assert!(
        out.starts_with(&format!(
            "pulled {remote}/team/app:v2 into the cluster registry (sha256:"
        )),
        "{out}"
    );
    // Nodes now find it in the cluster registry (the remote one is never asked).
    drop(_task);
    let app = rt
        .block_on(store.pull(&format!("{remote}/team/app:v2"), &keyring, None))
        .unwrap();
    assert_eq!(app.layers, pulled.layers);

    // Removing: the last tag takes the image with it.
    let out = ok(&mut server.skiff(&["image", "rm", "busybox:v1"]));
    assert!(out.starts_with("deleted busybox:v1 (sha256:"), "{out}");
    let ls = ok(&mut server.skiff(&["image", "ls"]));
    assert!(!ls.lines().any(|l| l.starts_with("busybox ")), "{ls}");
    let fresh = tempfile::tempdir().unwrap();
    let err = rt
        .block_on(node_store(fresh.path(), registry).pull("busybox:v1", &keyring, None))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pulling docker.io/library/busybox:v1: not found at http://{registry} (MANIFEST_UNKNOWN: manifest unknown: library/busybox:v1)"
        )
    );

    // Errors are one line naming the image and the cause.
    let err = skiff_fails(&mut server.skiff(&["image", "rm", "busybox:nope"]));
    assert_eq!(
        err,
        format!(
            "error: removing busybox:nope: not found at http://{registry} (MANIFEST_UNKNOWN: manifest unknown: library/busybox:nope)"
        )
    );
    let err = skiff_fails(&mut server.skiff(&["image", "pull", "127.0.0.1:1/app:v1"]));
    assert!(
        err.starts_with("error: pulling 127.0.0.1:1/app:v1: cannot reach http://127.0.0.1:1: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let wrong = dir.path().join("wrong-kubeconfig");
    let text = std::fs::read_to_string(server.kubeconfig()).unwrap();
    std::fs::write(&wrong, text.replace(server.token(), "not-the-token")).unwrap();
    let err = skiff_fails(
        Command::new(skiff_e2e::skiff_binary())
            .args([
                "image",
                "import",
                oci_archive.to_str().unwrap(),
                "--name",
                "busybox",
            ])
            .args([
                "--kubeconfig",
                wrong.to_str().unwrap(),
                "--registry",
                &registry.to_string(),
            ]),
    );
    assert!(
        err.starts_with(&format!("error: importing busybox:v1 into http://{registry}: http://{registry} refused the credentials (401 Unauthorized")),
        "{err}"
    );
    let err = skiff_fails(&mut server.skiff(&["image", "import", "/nonexistent.tar"]));
    assert_eq!(
        err,
        "error: reading the image archive /nonexistent.tar: cannot open /nonexistent.tar: No such file or directory (os error 2)"
    );
}

#[test]
fn service_account_tokens_push_images_and_reach_the_api() {
    let server = TestServer::start_api_only();
    let dir = tempfile::tempdir().unwrap();
    let (oci_archive, _, _) = busybox_image(dir.path());
    for minor in [28, 33] {
        let kubectl = server.kubectl(minor);
        let account = format!("builder-{minor}");
        kubectl.ok(&["create", "serviceaccount", &account]);
        let token = kubectl
            .ok(&["create", "token", &account])
            .trim()
            .to_string();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

        // The API takes it…
        let as_account = kubectl.ok(&[
            "--token",
            &token,
            "get",
            "serviceaccount",
            &account,
            "-o",
            "name",
        ]);
        assert_eq!(as_account.trim(), format!("serviceaccount/{account}"));
        // …and so does the registry, as a push password.
        let pushed = skopeo_copy(
            &format!("oci-archive:{}:v1", oci_archive.display()),
            &format!("docker://{}/ci/busybox:{minor}", server.registry),
            &format!("{account}:{token}"),
        );
        assert!(pushed.status.success(), "{pushed:?}");

        let err = kubectl.fails(&["create", "token", "nobody"]);
        assert!(
            err.contains("serviceaccounts \"nobody\" not found"),
            "{err}"
        );
        let err = kubectl.fails(&["create", "token", &account, "--duration", "5m"]);
        assert!(
            err.contains("may not specify a duration less than 10 minutes"),
            "{err}"
        );
    }
    // A token signed by anyone else is refused everywhere.
    let forged = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl";
    let refused = server
        .http("GET", "/api/v1/namespaces")
        .without_token()
        .header(&format!("Authorization: Bearer {forged}"))
        .send();
    assert_eq!(refused.code, 401);
    let denied = skopeo_copy(
        &format!("oci-archive:{}:v1", oci_archive.display()),
        &format!("docker://{}/ci/busybox:forged", server.registry),
        &format!("x:{forged}"),
    );
    assert!(!denied.status.success());
}
