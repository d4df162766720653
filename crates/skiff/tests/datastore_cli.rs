//! `skiff datastore …` driven as a user would: the real binary, a real store on disk or in etcd.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use skiff_store::{DatastoreConfig, EtcdConfig, Store};
use skiff_testkit::EtcdServer;

fn skiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one error line a failed command prints.
fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

async fn populate(store: &dyn Store) {
    store.create("/registry/a", "alpha".into()).await.unwrap();
    store.create("/registry/b", "beta".into()).await.unwrap();
    store.create("/other", "x".into()).await.unwrap();
}

#[tokio::test]
async fn reads_an_embedded_datastore() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    {
        let path = dir.path().join("db/state.redb");
        let store = skiff_store::open(DatastoreConfig::embedded(path))
            .await
            .unwrap();
        populate(&*store).await;
    }
    let status = skiff(&["datastore", "status", "--data-dir", data_dir]);
    assert!(status.status.success(), "{status:?}");
    let text = stdout(&status);
    assert!(text.contains("embedded datastore at"), "{text}");
    assert!(text.contains("revision:  4"), "{text}");
    assert!(text.contains("keys:      3"), "{text}");

    let get = skiff(&["datastore", "get", "/registry/b", "--data-dir", data_dir]);
    assert_eq!(stdout(&get), "beta");

    let list = skiff(&["datastore", "list", "/registry/", "--data-dir", data_dir]);
    let text = stdout(&list);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[1].ends_with("/registry/a") && rows[1].contains(" 5 "),
        "{text}"
    );

    let missing = skiff(&["datastore", "get", "/nope", "--data-dir", data_dir]);
    assert!(error_line(&missing).contains("key \"/nope\" not found"));
}

#[test]
fn explains_a_missing_or_damaged_datastore() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let line = error_line(&skiff(&["datastore", "status", "--data-dir", data_dir]));
    assert!(
        line.contains("no datastore at") && line.contains("--data-dir"),
        "{line}"
    );

    std::fs::create_dir_all(dir.path().join("db")).unwrap();
    std::fs::write(dir.path().join("db/state.redb"), vec![0x5a; 10_000]).unwrap();
    let line = error_line(&skiff(&["datastore", "status", "--data-dir", data_dir]));
    assert!(line.contains("state.redb cannot be opened"), "{line}");
    assert!(line.contains("move it aside"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_watches_etcd() {
    let etcd = EtcdServer::start().unwrap();
    let endpoint = etcd.endpoint();
    let store = skiff_store::open(DatastoreConfig::Etcd(EtcdConfig::new(&endpoint)))
        .await
        .unwrap();
    populate(&*store).await;
    let list = skiff(&[
        "datastore",
        "list",
        "/registry/",
        "--datastore-endpoint",
        &endpoint,
    ]);
    let text = stdout(&list);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("/registry/b"), "{text}");

    let from = store.current_revision().await.unwrap().to_string();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["datastore", "watch", "/registry/", "--from", &from])
        .args(["--datastore-endpoint", &endpoint])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    store.create("/registry/c", "gamma".into()).await.unwrap();
    store.delete("/registry/a", None).await.unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let a = lines.next().unwrap().unwrap();
        let b = lines.next().unwrap().unwrap();
        (a, b)
    })
    .await
    .unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(
        first.0.contains("CREATE") && first.0.contains("/registry/c"),
        "{first:?}"
    );
    assert!(
        first.1.contains("DELETE") && first.1.contains("/registry/a"),
        "{first:?}"
    );
}
