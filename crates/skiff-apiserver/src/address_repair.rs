//! The repair loop of service addresses, as upstream's cluster-IP and node-port repair
//! controllers: every address key (`allocators.rs`) that no stored Service holds is a leak —
//! a server that stopped between taking an address and storing its Service, or between
//! deleting a Service and giving its addresses back — and is released once it has been
//! one for [`LEAK_PASSES`] passes in a row (a create in flight holds its key for a moment
//! before its Service is stored). A Service holding an address whose key is missing gets
//! the key back, so the address is never handed out twice.
//!
//! A pass lists the keys before the Services: a key taken between the two reads is either
//! in neither list or held by a Service the second read sees, never a false leak.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ApiError;
use skiff_store::{KeyValue, RangeRequest, Store, StoreError};

use crate::allocators::{
    IP_PREFIX, OLD_IP_PREFIX, PORT_PREFIX, ServiceAllocator, owner_of, record, record_owner,
};
use crate::storage::Objects;

/// Passes a key must be a leak in before it is released (upstream's
/// `numRepairsBeforeLeakCleanup`).
pub const LEAK_PASSES: u32 = 3;

/// How often the loop runs (upstream's repair interval is 3 minutes).
pub const REPAIR_EVERY: Duration = Duration::from_secs(180);

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Keys released as leaked.
    pub released: Vec<String>,
    /// Keys made again for Services that hold their address.
    pub restored: Vec<String>,
}

pub struct AddressRepair {
    objects: Objects,
    /// Keys seen leaked, with how many passes in a row.
    suspects: HashMap<String, u32>,
}

impl AddressRepair {
    pub fn new(objects: Objects) -> AddressRepair {
        AddressRepair {
            objects,
            suspects: HashMap::new(),
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.objects.store()
    }

    /// One pass over every address key and every Service.
    pub async fn pass(&mut self) -> Result<Repaired, ApiError> {
        let mut keys = HashMap::new();
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            let page = self
                .store()
                .range(RangeRequest::prefix(prefix))
                .await
                .map_err(store_failure)?;
            keys.extend(page.kvs.into_iter().map(|kv| (kv.key.clone(), kv)));
        }
        let services = &crate::registry::core::service::RESOURCE;
        let stored = self
            .objects
            .list(services, None, 0, None, None, |_| true)
            .await?;
        let mut held: HashMap<String, String> = HashMap::new();
        for svc in &stored.items {
            let owner = owner_of(svc);
            for key in ServiceAllocator::held_by(svc).keys() {
                held.insert(key, owner.clone());
            }
        }

        let mut repaired = Repaired::default();
        let leaked: Vec<&KeyValue> = keys
            .values()
            .filter(|kv| !held.contains_key(&kv.key))
            .collect();
        // A suspect that is gone, or held again, is no longer one.
        self.suspects
            .retain(|k, _| keys.contains_key(k) && !held.contains_key(k));
        for kv in leaked {
            let passes = self.suspects.entry(kv.key.clone()).or_insert(0);
            *passes += 1;
            if *passes < LEAK_PASSES {
                continue;
            }
            // Only the key as it was seen: one taken again meanwhile stays.
            match self.store().delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    tracing::warn!(key = %kv.key, owner = %record_owner(&kv.value), "released a leaked service address");
                    self.suspects.remove(&kv.key);
                    repaired.released.push(kv.key.clone());
                }
                Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(store_failure(e)),
            }
        }

        for (key, owner) in held.iter().filter(|(k, _)| !keys.contains_key(*k)) {
            match self.store().create(key, record(key, owner)).await {
                Ok(_) => {
                    tracing::warn!(%key, %owner, "a service held an address without its key; restored it");
                    repaired.restored.push(key.clone());
                }
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(store_failure(e)),
            }
        }
        repaired.released.sort();
        repaired.restored.sort();
        Ok(repaired)
    }
}

fn store_failure(e: StoreError) -> ApiError {
    ApiError::internal(format!("repairing service addresses: {e}"))
}

/// Moves cluster IPs taken before they were IPAddress objects (`/ranges/serviceips/<ip>`)
/// to their IPAddress, at start, before any address is handed out.
pub async fn migrate_old_ip_keys(store: &Arc<dyn Store>) -> Result<usize, ApiError> {
    let old = store
        .range(RangeRequest::prefix(OLD_IP_PREFIX))
        .await
        .map_err(store_failure)?;
    for kv in &old.kvs {
        let ip = kv.key.trim_start_matches(OLD_IP_PREFIX);
        let key = format!("{IP_PREFIX}{ip}");
        let owner = String::from_utf8_lossy(&kv.value).into_owned();
        match store.create(&key, record(&key, &owner)).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(store_failure(e)),
        }
        match store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => return Err(store_failure(e)),
        }
    }
    Ok(old.kvs.len())
}

/// Runs a pass every `every`, for as long as the server runs.
pub async fn run(objects: Objects, every: Duration) {
    let mut repair = AddressRepair::new(objects);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = repair.pass().await {
            tracing::warn!(error = %e, "repairing service addresses (the next pass tries again)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    async fn objects() -> (tempfile::TempDir, Objects) {
        let dir = tempfile::tempdir().unwrap();
        let store = skiff_store::EmbeddedStore::open(dir.path().join("state.redb")).unwrap();
        (dir, Objects::new(Arc::new(store)))
    }

    fn service(name: &str, ip: &str, node_port: u16) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"port": 80, "nodePort": node_port}]},
        })
    }

    #[tokio::test]
    async fn leaked_keys_go_after_three_passes_and_held_ones_stay_or_come_back() {
        let (_dir, objects) = objects().await;
        let store = objects.store().clone();
        let leaked = format!("{IP_PREFIX}10.43.0.77");
        store
            .create(&leaked, Bytes::from("services/default/gone"))
            .await
            .unwrap();
        // A Service holding its addresses, one key of them there and one missing.
        let held = format!("{IP_PREFIX}10.43.0.5");
        store
            .create(&held, Bytes::from("services/default/web"))
            .await
            .unwrap();
        let rt = &crate::registry::core::service::RESOURCE;
        objects
            .create(rt, service("web", "10.43.0.5", 30080))
            .await
            .unwrap();

        let mut repair = AddressRepair::new(objects.clone());
        let first = repair.pass().await.unwrap();
        let missing = format!("{PORT_PREFIX}30080");
        assert_eq!(first.restored, std::slice::from_ref(&missing));
        assert!(first.released.is_empty(), "not on the first pass");
        assert_eq!(
            store.get(&missing).await.unwrap().kv.unwrap().value,
            Bytes::from("services/default/web")
        );
        assert!(repair.pass().await.unwrap().released.is_empty());
        let third = repair.pass().await.unwrap();
        assert_eq!(third.released, std::slice::from_ref(&leaked));
        assert!(store.get(&leaked).await.unwrap().kv.is_none());
        assert!(store.get(&held).await.unwrap().kv.is_some());
        assert_eq!(repair.pass().await.unwrap(), Repaired::default());
    }

    #[tokio::test]
    async fn a_key_that_is_held_again_before_the_third_pass_is_no_leak() {
        let (_dir, objects) = objects().await;
        let store = objects.store().clone();
        let key = format!("{IP_PREFIX}10.43.0.9");
        store
            .create(&key, Bytes::from("services/default/slow"))
            .await
            .unwrap();
        let mut repair = AddressRepair::new(objects.clone());
        repair.pass().await.unwrap();
        repair.pass().await.unwrap();
        // The create in flight lands: its Service now holds the key.
        let rt = &crate::registry::core::service::RESOURCE;
        objects
            .create(rt, service("slow", "10.43.0.9", 30090))
            .await
            .unwrap();
        let pass = repair.pass().await.unwrap();
        assert!(pass.released.is_empty(), "{pass:?}");
        assert!(store.get(&key).await.unwrap().kv.is_some());
    }

    #[tokio::test]
    async fn addresses_of_the_old_layout_become_ip_address_objects() {
        let (_dir, objects) = objects().await;
        assert_eq!(
            IP_PREFIX,
            crate::registry::networking::ipaddress::RESOURCE.storage_prefix()
        );
        let store = objects.store().clone();
        store
            .create(
                "/ranges/serviceips/10.43.0.7",
                Bytes::from("services/shop/web"),
            )
            .await
            .unwrap();
        assert_eq!(migrate_old_ip_keys(&store).await.unwrap(), 1);
        assert!(
            store
                .get("/ranges/serviceips/10.43.0.7")
                .await
                .unwrap()
                .kv
                .is_none()
        );
        let rt = &crate::registry::networking::ipaddress::RESOURCE;
        let ip = objects.get(rt, None, "10.43.0.7").await.unwrap().object;
        assert_eq!(ip["spec"]["parentRef"]["namespace"], "shop");
        assert_eq!(ip["spec"]["parentRef"]["name"], "web");
        assert_eq!(
            ip["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"],
            "ipallocator.k8s.io"
        );
        let value = store
            .get("/ipaddresses.networking.k8s.io/10.43.0.7")
            .await
            .unwrap()
            .kv
            .unwrap()
            .value;
        assert_eq!(record_owner(&value), "services/shop/web");
        assert_eq!(migrate_old_ip_keys(&store).await.unwrap(), 0);
    }
}
