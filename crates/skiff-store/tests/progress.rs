//! `WatchStream::progress`: how a cache fed by a watch knows it is as new as the store.

use bytes::Bytes;
use skiff_store::{EmbeddedStore, Store};

#[tokio::test]
async fn embedded_streams_report_progress_past_other_prefixes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("s.redb")).unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/a/", start).await.unwrap();
    assert_eq!(watch.progress(), Some(start));

    // A write elsewhere: nothing to deliver, and the stream is complete up to it.
    let other = store
        .create("/b/1", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(watch.progress(), Some(other.mod_revision));

    // A write under the prefix: not complete until the event has been taken.
    let mine = store
        .create("/a/1", Bytes::from_static(b"y"))
        .await
        .unwrap();
    assert_eq!(watch.progress(), None);
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(event.revision(), mine.mod_revision);
    assert_eq!(watch.progress(), Some(mine.mod_revision));
}

#[tokio::test]
async fn etcd_streams_report_progress_when_asked() {
    let etcd = skiff_testkit::EtcdServer::start().unwrap();
    let store = skiff_store::EtcdStore::connect(skiff_store::EtcdConfig::new(&etcd.endpoint()))
        .await
        .unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/a/", start).await.unwrap();
    let other = store
        .create("/b/1", Bytes::from_static(b"x"))
        .await
        .unwrap();
    // etcd knows nothing was written under /a/ only once asked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        watch.request_progress();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if watch.progress().is_some_and(|p| p >= other.mod_revision) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no progress report from etcd"
        );
    }
    let mine = store
        .create("/a/1", Bytes::from_static(b"y"))
        .await
        .unwrap();
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(event.revision(), mine.mod_revision);
    assert!(watch.progress().is_some_and(|p| p >= mine.mod_revision));
}
