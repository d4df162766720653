//! One informer per resource for every component in a process (client-go's shared informer
//! factory). `skiff server` runs the controllers and the scheduler side by side; sharing
//! means one watch and one copy of each pod for all of them instead of one each.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;

use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::informer::{Informer, Synced, wait_all};

trait Erased: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn synced(&self) -> Synced;
    fn start(self: Box<Self>) -> JoinHandle<()>;
}

impl<K> Erased for Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn synced(&self) -> Synced {
        Informer::synced(self)
    }

    fn start(self: Box<Self>) -> JoinHandle<()> {
        Informer::start(*self)
    }
}

/// Informers by resource type (and namespace, for a namespaced watch). Components register
/// their handlers on `all::<K>()` / `namespaced::<K>(ns)`, then one `start` runs them all.
pub struct InformerFactory {
    client: Client,
    informers: HashMap<(TypeId, Option<String>), Box<dyn Erased>>,
}

impl InformerFactory {
    pub fn new(client: Client) -> Self {
        InformerFactory {
            client,
            informers: HashMap::new(),
        }
    }

    /// The informer watching every `K` in the cluster.
    pub fn all<K>(&mut self) -> &mut Informer<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default,
    {
        let client = self.client.clone();
        self.get((TypeId::of::<K>(), None), || Api::all(client))
    }

    /// The informer watching `K` in one namespace.
    pub fn namespaced<K>(&mut self, namespace: &str) -> &mut Informer<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default,
    {
        let client = self.client.clone();
        self.get((TypeId::of::<K>(), Some(namespace.to_string())), || {
            Api::namespaced(client, namespace)
        })
    }

    fn get<K>(
        &mut self,
        key: (TypeId, Option<String>),
        api: impl FnOnce() -> Api<K>,
    ) -> &mut Informer<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.informers
            .entry(key)
            .or_insert_with(|| Box::new(Informer::new(api(), watcher::Config::default())))
            .as_any()
            .downcast_mut::<Informer<K>>()
            .expect("keyed by its type")
    }

    /// Starts every informer and waits until each has listed once.
    pub async fn start(self) -> Vec<JoinHandle<()>> {
        let synced: Vec<Synced> = self.informers.values().map(|i| i.synced()).collect();
        let handles = self.informers.into_values().map(|i| i.start()).collect();
        wait_all(synced).await;
        handles
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};

    #[tokio::test]
    async fn one_informer_per_type_and_namespace() {
        // A client that is never used: nothing starts here.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let mut f = InformerFactory::new(Client::try_from(config).unwrap());
        let a = f.all::<Pod>().store();
        let b = f.all::<Pod>().store();
        assert!(a.same_as(&b), "the same pod informer");
        f.all::<Node>();
        f.namespaced::<Pod>("kube-system");
        assert_eq!(f.informers.len(), 3);
    }
}
