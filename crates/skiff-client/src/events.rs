//! Events, as client-go's recorder writes them: core/v1 Events with a `source.component`,
//! aggregated so a repeat (same object, type, reason, message) bumps `count` and
//! `lastTimestamp` on the existing event instead of writing a new one.
//!
//! Recording never blocks the caller: events go through bounded queues to background
//! writers and are dropped (with a debug log) when those are full, as client-go drops them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

/// Writers per recorder; one key always goes to the same writer, so its count is exact.
const WRITERS: usize = 4;
const QUEUE: usize = 4096;

struct Pending {
    regarding: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
}

#[derive(Clone)]
pub struct EventRecorder {
    writers: Arc<Vec<mpsc::Sender<Pending>>>,
}

impl EventRecorder {
    /// A recorder for `component` (`deployment-controller`, `default-scheduler`, …);
    /// `host` is set for node components (the kubelet's events name their node).
    pub fn new(client: Client, component: &str, host: Option<&str>) -> Self {
        let source = EventSource {
            component: Some(component.to_string()),
            host: host.map(str::to_string),
        };
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_events(client.clone(), source.clone(), rx));
            writers.push(tx);
        }
        EventRecorder {
            writers: Arc::new(writers),
        }
    }

    pub fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        self.record(reference(obj), "Normal", reason, message);
    }

    pub fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        self.record(reference(obj), "Warning", reason, message);
    }

    pub fn record(
        &self,
        regarding: ObjectReference,
        type_: &'static str,
        reason: &str,
        message: String,
    ) {
        let mut h = DefaultHasher::new();
        (&regarding.uid, &regarding.name, reason).hash(&mut h);
        let writer = &self.writers[(h.finish() as usize) % self.writers.len()];
        let pending = Pending {
            regarding,
            type_,
            reason: reason.to_string(),
            message,
        };
        if writer.try_send(pending).is_err() {
            tracing::debug!(reason, "event queue full: event dropped");
        }
    }
}

/// An object reference to `obj`, as events and bindings carry it.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

type Key = (Option<String>, Option<String>, &'static str, String, String);

async fn write_events(client: Client, source: EventSource, mut rx: mpsc::Receiver<Pending>) {
    // Key → (event name, count) of events this writer made.
    let mut seen: HashMap<Key, (String, i32)> = HashMap::new();
    while let Some(p) = rx.recv().await {
        let namespace = p
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api = Api::<Event>::namespaced(client.clone(), &namespace);
        let key: Key = (
            p.regarding.uid.clone(),
            p.regarding.name.clone(),
            p.type_,
            p.reason.clone(),
            p.message.clone(),
        );
        let now = Timestamp::now();
        let previous = seen.get(&key).cloned();
        if let Some((name, count)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": Time(now)});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                seen.insert(key, (name, count + 1));
                continue;
            }
            // Expired or deleted: write a new one.
        }
        let name = format!(
            "{}.{:x}",
            p.regarding.name.as_deref().unwrap_or("event"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: p.regarding,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(p.type_.to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(source.clone()),
            reporting_component: source.component.clone(),
            reporting_instance: source.host.clone().or_else(|| source.component.clone()),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() > 10_000 {
                    // A bounded memory of what to aggregate: forget, start counting anew.
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => tracing::debug!(error = %e, "writing an event"),
        }
    }
}
