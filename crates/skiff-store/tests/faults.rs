//! Faults: damaged data files, a data file already in use, etcd going away and coming back.

mod support;

use std::time::Duration;

use skiff_store::{EmbeddedStore, EtcdConfig, EtcdStore, RangeRequest, Store, StoreError};
use skiff_testkit::EtcdServer;
use support::{b, next_event};

/// Writes a few keys to a fresh file and closes it.
async fn populated_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("state.redb");
    let store = EmbeddedStore::open(&path).unwrap();
    for i in 0..200 {
        store
            .create(&format!("/k/{i}"), b(&"x".repeat(512)))
            .await
            .unwrap();
    }
    drop(store);
    path
}

fn assert_corrupt(result: Result<EmbeddedStore, StoreError>, path: &std::path::Path) {
    match result {
        Err(err @ StoreError::Corrupt { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "names the file: {message}"
            );
            assert!(
                message.contains("move it aside"),
                "says what to do: {message}"
            );
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged file opened without complaint"),
    }
}

#[tokio::test]
async fn truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated_file(dir.path()).await;
    let len = std::fs::metadata(&path).unwrap().len();
    for keep in [0, 100, 4096, len / 2] {
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(keep).unwrap();
        drop(file);
        if keep == 0 {
            // An empty file is what a crash during the very first start leaves: redb
            // initialises it as a new database, which is the right outcome.
            let store = EmbeddedStore::open(&path).unwrap();
            assert_eq!(
                store.range(RangeRequest::prefix("/")).await.unwrap().kvs,
                []
            );
            drop(store);
            continue;
        }
        assert_corrupt(EmbeddedStore::open(&path), &path);
    }
}

#[tokio::test]
async fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();
    assert_corrupt(EmbeddedStore::open(&path), &path);
}

#[tokio::test]
async fn corrupted_pages_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated_file(dir.path()).await;
    let mut bytes = std::fs::read(&path).unwrap();
    // Leave the header alone and scribble over the data pages behind it.
    for (i, byte) in bytes.iter_mut().enumerate().skip(8192) {
        *byte ^= (i % 251) as u8 | 1;
    }
    std::fs::write(&path, bytes).unwrap();
    let result = EmbeddedStore::open(&path);
    // Depending on where the damage lands, redb refuses at open or at first read; either way
    // the answer is an error, never a panic or silently wrong data.
    if let Ok(store) = result {
        let read = store.range(RangeRequest::prefix("/k/")).await;
        assert!(read.is_err(), "damaged pages were read as data: {read:?}");
    }
}

#[tokio::test]
async fn another_programs_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("meta");
            txn.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_corrupt(EmbeddedStore::open(&path), &path);
}

#[tokio::test]
async fn a_file_in_use_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let _first = EmbeddedStore::open(&path).unwrap();
    match EmbeddedStore::open(&path) {
        Err(err @ StoreError::InUse { .. }) => {
            assert!(err.to_string().contains("--data-dir"), "{err}");
        }
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("opened the same file twice"),
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = EmbeddedStore::open(&path).unwrap();
    let kv = store.create("/a", b("1")).await.unwrap();
    let revision = store.current_revision().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get("/a").await.unwrap().kv, Some(kv));
    assert_eq!(store.current_revision().await.unwrap(), revision);
    let next = store.create("/b", b("2")).await.unwrap();
    assert_eq!(next.mod_revision, revision + 1);
    // History from before the restart is still watchable.
    let mut watch = store.watch("/", revision - 1).await.unwrap();
    assert_eq!(next_event(&mut watch).await.kv.key, "/a");
    assert_eq!(next_event(&mut watch).await.kv.key, "/b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_is_retried_and_watches_resume() {
    let mut etcd = EtcdServer::start().unwrap();
    let store = EtcdStore::connect(EtcdConfig::new(&etcd.endpoint()))
        .await
        .unwrap();
    let before = store.create("/o/before", b("1")).await.unwrap();
    let mut watch = store.watch("/o/", before.mod_revision).await.unwrap();

    etcd.kill();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.create("/o/during", b("2")).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if writer.is_finished() {
        panic!(
            "the write should wait for etcd instead of ending: {:?}",
            writer.await
        );
    }
    etcd.restart().unwrap();

    let during = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the write completes once etcd is back")
        .unwrap()
        .unwrap();
    let after = store.create("/o/after", b("3")).await.unwrap();
    // The watch reconnected from where it was: both writes, in order, nothing repeated.
    assert_eq!(next_event(&mut watch).await.kv, during);
    assert_eq!(next_event(&mut watch).await.kv, after);
}

#[tokio::test]
async fn etcd_that_stays_away_is_a_clear_error() {
    let mut etcd = EtcdServer::start().unwrap();
    let endpoint = etcd.endpoint();
    etcd.kill();
    let mut config = EtcdConfig::new(&endpoint);
    config.retry_for = Duration::from_millis(800);
    let store = EtcdStore::connect(config).await.unwrap();
    let err = store.get("/x").await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        err.to_string().contains(&endpoint),
        "names the endpoint: {err}"
    );
}

#[tokio::test]
async fn etcd_config_mistakes_are_clear_errors() {
    let err = EtcdStore::connect(EtcdConfig::new(" , "))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("--datastore-endpoint"), "{err}");
    let mut config = EtcdConfig::new("https://127.0.0.1:1");
    config.cert_file = Some("/nonexistent/cert.pem".into());
    let err = EtcdStore::connect(config).await.err().unwrap();
    assert!(err.to_string().contains("--datastore-keyfile"), "{err}");
    let mut config = EtcdConfig::new("https://127.0.0.1:1");
    config.ca_file = Some("/nonexistent/ca.pem".into());
    let err = EtcdStore::connect(config).await.err().unwrap();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
