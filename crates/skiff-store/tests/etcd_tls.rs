//! The etcd backend over TLS with client-certificate authentication, against a real etcd.

mod support;

use std::time::Duration;

use skiff_store::{DatastoreConfig, EtcdConfig, StoreError};
use skiff_testkit::EtcdServer;
use support::{b, next_event};

fn config(etcd: &EtcdServer) -> EtcdConfig {
    let tls = etcd.tls().expect("a TLS etcd");
    let mut config = EtcdConfig::new(&etcd.endpoint());
    config.ca_file = Some(tls.ca_file.clone());
    config.cert_file = Some(tls.client_cert_file.clone());
    config.key_file = Some(tls.client_key_file.clone());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_watches_over_mutual_tls() {
    let etcd = EtcdServer::start_tls().unwrap();
    assert!(etcd.endpoint().starts_with("https://"));
    let store = skiff_store::open(DatastoreConfig::Etcd(config(&etcd)))
        .await
        .unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/tls/", start).await.unwrap();
    let kv = store.create("/tls/a", b("secret")).await.unwrap();
    assert_eq!(store.get("/tls/a").await.unwrap().kv, Some(kv.clone()));
    assert_eq!(next_event(&mut watch).await.kv, kv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_its_certificate_is_refused_clearly() {
    let etcd = EtcdServer::start_tls().unwrap();
    let mut config = config(&etcd);
    config.cert_file = None;
    config.key_file = None;
    config.retry_for = Duration::from_secs(1);
    let store = skiff_store::open(DatastoreConfig::Etcd(config))
        .await
        .unwrap();
    let err = store.get("/tls/a").await.unwrap_err();
    assert!(matches!(err, StoreError::Etcd { .. }), "{err:?}");
    assert!(err.to_string().contains(&etcd.endpoint()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_another_ca_is_not_trusted() {
    let etcd = EtcdServer::start_tls().unwrap();
    let other = EtcdServer::start_tls().unwrap();
    let mut config = config(&etcd);
    config.ca_file = Some(other.tls().unwrap().ca_file.clone());
    config.retry_for = Duration::from_secs(1);
    let store = skiff_store::open(DatastoreConfig::Etcd(config))
        .await
        .unwrap();
    let err = store.get("/tls/a").await.unwrap_err();
    assert!(matches!(err, StoreError::Etcd { .. }), "{err:?}");
}
