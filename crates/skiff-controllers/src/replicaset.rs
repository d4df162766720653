//! The ReplicaSet controller: keeps `spec.replicas` active pods matching each ReplicaSet's
//! selector. It adopts matching orphans and releases owned pods that stopped matching
//! (through their owner references), creates missing pods in slow-start batches, deletes
//! surplus pods in upstream's order (unscheduled, pending, not ready, doubled-up, newest
//! first), and reports replicas / fullyLabeledReplicas / readyReplicas / availableReplicas.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_client::informer::{key_of, split_key};
use skiff_client::objects::{
    controller_of, controller_reference, delete_only, is_deleting, pod_condition, pod_is_active,
    pod_is_available, pod_is_ready, pod_node, pod_phase, selector_matches, set_owner_references,
};
use skiff_client::{Change, EventRecorder, InformerFactory, Store, WorkQueue};

use crate::Error;
use crate::expectations::Expectations;

/// Most pods created or deleted in one sync (upstream's burstReplicas).
const BURST: usize = 500;
const WORKERS: usize = 5;

pub struct ReplicaSetController {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
    events: EventRecorder,
}

impl ReplicaSetController {
    pub fn new(client: Client, informers: &mut InformerFactory) -> Arc<Self> {
        let c = Arc::new(ReplicaSetController {
            events: EventRecorder::new(client.clone(), "replicaset-controller", None),
            client,
            sets: informers.all::<ReplicaSet>().store(),
            pods: informers.all::<Pod>().store(),
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
        });
        let me = c.clone();
        informers.all::<ReplicaSet>().on_change(move |change| {
            let rs = change.object();
            let key = key_of(rs.as_ref());
            if matches!(change, Change::Deleted(_)) {
                me.expectations.forget(&key);
            }
            me.queue.add(key);
        });
        let me = c.clone();
        informers
            .all::<Pod>()
            .on_change(move |change| me.pod_changed(change));
        c
    }

    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let owner = controller_of(pod).filter(|r| r.kind == "ReplicaSet")?;
        Some(format!(
            "{}/{}",
            pod.namespace().unwrap_or_default(),
            owner.name
        ))
    }

    fn pod_changed(&self, change: &Change<Pod>) {
        let pod_key = key_of(change.object().as_ref());
        match change {
            Change::Added(pod) => match self.owner_key(pod) {
                Some(owner) => {
                    self.expectations.creation_observed(&owner);
                    if is_deleting(pod.as_ref()) {
                        self.expectations.deletion_observed(&owner, &pod_key);
                    }
                    self.queue.add(owner);
                }
                None => self.queue_matching(pod),
            },
            Change::Updated { old, new } => {
                let (old_owner, new_owner) = (self.owner_key(old), self.owner_key(new));
                if is_deleting(new.as_ref())
                    && let Some(owner) = &new_owner
                {
                    self.expectations.deletion_observed(owner, &pod_key);
                }
                if old_owner != new_owner
                    && let Some(owner) = old_owner
                {
                    self.queue.add(owner);
                }
                match new_owner {
                    Some(owner) => self.queue.add(owner),
                    None if old.labels() != new.labels() || old_owner_dropped(old, new) => {
                        self.queue_matching(new)
                    }
                    None => {}
                }
            }
            Change::Deleted(pod) => {
                if let Some(owner) = self.owner_key(pod) {
                    self.expectations.deletion_observed(&owner, &pod_key);
                    self.queue.add(owner);
                }
            }
        }
    }

    /// An orphan: the ReplicaSets whose selector it matches may adopt it.
    fn queue_matching(&self, pod: &Pod) {
        if is_deleting(pod) {
            return;
        }
        for rs in self.sets.in_namespace(&pod.namespace().unwrap_or_default()) {
            if rs
                .spec
                .as_ref()
                .is_some_and(|s| selector_matches(&s.selector, pod.metadata.labels.as_ref()))
            {
                self.queue.add(key_of(rs.as_ref()));
            }
        }
    }

    pub async fn run(self: Arc<Self>) {
        self.queue.run_reconciler(WORKERS, self.clone()).await;
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let Some(rs) = self.sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let (ns, _) = split_key(key);
        let satisfied = self.expectations.satisfied(key);
        let pods = self.claim_pods(&rs, ns).await?;
        let active: Vec<Arc<Pod>> = pods.into_iter().filter(|p| pod_is_active(p)).collect();
        let mut failure = None;
        if satisfied && !is_deleting(rs.as_ref()) {
            failure = self.manage_replicas(&rs, key, &active).await.err();
        }
        let requeue = self.update_status(&rs, &active, failure.as_ref()).await?;
        match failure {
            Some((_, e)) => Err(e.into()),
            None => Ok(requeue),
        }
    }

    /// The pods this ReplicaSet controls, after adopting matching orphans and releasing
    /// owned pods that no longer match.
    async fn claim_pods(&self, rs: &ReplicaSet, ns: &str) -> Result<Vec<Arc<Pod>>, Error> {
        let uid = rs.uid().unwrap_or_default();
        let selector = rs.spec.as_ref().map(|s| &s.selector);
        let matches =
            |pod: &Pod| selector.is_some_and(|s| selector_matches(s, pod.metadata.labels.as_ref()));
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        let mut claimed = Vec::new();
        // Owned pods come from the owner index; orphans need a look at the namespace.
        for pod in self.pods.controlled_by(&uid) {
            if matches(&pod) || is_deleting(rs) {
                claimed.push(pod);
            } else {
                release(&api, &pod, &uid).await?;
            }
        }
        if is_deleting(rs) {
            return Ok(claimed);
        }
        for pod in self.pods.in_namespace(ns) {
            if controller_of(pod.as_ref()).is_some() || is_deleting(pod.as_ref()) || !matches(&pod)
            {
                continue;
            }
            if adopt(&api, &pod, rs).await? {
                claimed.push(pod);
            }
        }
        Ok(claimed)
    }

    /// Creates or deletes pods toward `spec.replicas`; a failure says which it was
    /// (`FailedCreate` / `FailedDelete`, the ReplicaFailure condition's reason).
    async fn manage_replicas(
        &self,
        rs: &Arc<ReplicaSet>,
        key: &str,
        active: &[Arc<Pod>],
    ) -> Result<(), (&'static str, kube::Error)> {
        let want = rs
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as usize;
        let (ns, _) = split_key(key);
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        if active.len() < want {
            let missing = (want - active.len()).min(BURST);
            self.expectations.expect_creations(key, missing);
            let template = pod_from_template(rs);
            let post = PostParams::default();
            let mut created = 0;
            let mut batch = 1;
            let mut error = None;
            // Slow start: 1, 2, 4, … so a failing template costs one request, not hundreds.
            while created < missing && error.is_none() {
                let n = batch.min(missing - created);
                let results = join_all((0..n).map(|_| api.create(&post, &template))).await;
                for result in results {
                    match result {
                        Ok(pod) => self.events.normal(
                            rs.as_ref(),
                            "SuccessfulCreate",
                            format!("Created pod: {}", pod.name_any()),
                        ),
                        Err(e) => {
                            self.expectations.creation_observed(key);
                            self.events.warning(
                                rs.as_ref(),
                                "FailedCreate",
                                format!("Error creating: {}", api_message(&e)),
                            );
                            error = Some(e);
                        }
                    }
                }
                created += n;
                batch *= 2;
            }
            // Never attempted: not expected either.
            for _ in created..missing {
                self.expectations.creation_observed(key);
            }
            return error.map_or(Ok(()), |e| Err(("FailedCreate", e)));
        }
        if active.len() > want {
            let surplus = (active.len() - want).min(BURST);
            let doomed = pods_to_delete(active, surplus);
            self.expectations
                .expect_deletions(key, doomed.iter().map(|p| key_of(p.as_ref())));
            let api = &api;
            let results = join_all(doomed.iter().map(|pod| async move {
                (
                    pod,
                    api.delete(&pod.name_any(), &delete_only(pod.uid())).await,
                )
            }))
            .await;
            let mut error = None;
            for (pod, result) in results {
                match result {
                    Ok(_) => self.events.normal(
                        rs.as_ref(),
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", pod.name_any()),
                    ),
                    Err(e) if skiff_client::is_status(&e, 404) => {
                        self.expectations
                            .deletion_observed(key, &key_of(pod.as_ref()));
                    }
                    Err(e) => {
                        self.expectations
                            .deletion_observed(key, &key_of(pod.as_ref()));
                        self.events.warning(
                            rs.as_ref(),
                            "FailedDelete",
                            format!("Error deleting: {}", api_message(&e)),
                        );
                        error = Some(e);
                    }
                }
            }
            return error.map_or(Ok(()), |e| Err(("FailedDelete", e)));
        }
        Ok(())
    }

    /// Writes the observed counts (only when they changed); asks to be run again when a
    /// ready pod will become available once `minReadySeconds` has passed.
    async fn update_status(
        &self,
        rs: &ReplicaSet,
        active: &[Arc<Pod>],
        failure: Option<&(&'static str, kube::Error)>,
    ) -> Result<Option<Duration>, Error> {
        let spec = rs.spec.as_ref();
        let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let template_labels = spec
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let now = Timestamp::now();
        let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
        let replicas = active.len() as i32;
        let fully_labeled = count(&|p: &Pod| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
        let ready = count(&|p: &Pod| pod_is_ready(p));
        let available = count(&|p: &Pod| pod_is_available(p, min_ready, now));
        let old = rs.status.clone().unwrap_or_default();
        let mut conditions: Vec<Value> = old
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.type_ != "ReplicaFailure")
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect();
        if let Some((reason, e)) = failure {
            conditions.push(json!({
                "type": "ReplicaFailure", "status": "True", "reason": reason,
                "message": api_message(e), "lastTransitionTime": skiff_client::objects::now(),
            }));
        }
        let nonzero = |n: i32| if n == 0 { Value::Null } else { json!(n) };
        let generation = rs.metadata.generation;
        let unchanged = old.replicas == replicas
            && old.fully_labeled_replicas.unwrap_or(0) == fully_labeled
            && old.ready_replicas.unwrap_or(0) == ready
            && old.available_replicas.unwrap_or(0) == available
            && old.observed_generation == generation
            && old.conditions.as_ref().map_or(0, Vec::len) == conditions.len()
            && failure.is_none();
        if !unchanged {
            let patch = json!({"status": {
                "replicas": replicas,
                "fullyLabeledReplicas": nonzero(fully_labeled),
                "readyReplicas": nonzero(ready),
                "availableReplicas": nonzero(available),
                "observedGeneration": generation,
                "conditions": if conditions.is_empty() { Value::Null } else { json!(conditions) },
            }});
            let api = Api::<ReplicaSet>::namespaced(
                self.client.clone(),
                &rs.namespace().unwrap_or_default(),
            );
            match api
                .patch_status(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if skiff_client::is_status(&e, 404) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        if min_ready > 0 && ready != available {
            return Ok(Some(Duration::from_secs(1)));
        }
        Ok(None)
    }
}

fn old_owner_dropped(old: &Pod, new: &Pod) -> bool {
    controller_of(old).is_some() && controller_of(new).is_none()
}

/// The message of an API error (its Status message), for events.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// A new pod from a ReplicaSet's template, named by the server from `<rs>-`.
pub(crate) fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(format!("{}-", rs.name_any()));
    meta.namespace = rs.namespace();
    meta.owner_references = Some(vec![controller_reference(rs)]);
    meta.resource_version = None;
    meta.uid = None;
    Pod {
        metadata: meta,
        spec: template.spec,
        status: None,
    }
}

async fn adopt(api: &Api<Pod>, pod: &Pod, rs: &ReplicaSet) -> Result<bool, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(controller_reference(rs));
    Ok(set_owner_references(api, pod, &refs).await?)
}

async fn release(api: &Api<Pod>, pod: &Pod, owner_uid: &str) -> Result<(), Error> {
    let refs: Vec<_> = pod
        .owner_references()
        .iter()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    set_owner_references(api, pod, &refs).await?;
    Ok(())
}

/// The `n` pods to delete first, in upstream's order: unscheduled before scheduled, pending
/// before unknown before running, not ready before ready, on a node crowded with this set's
/// pods before a lonelier one, ready more recently first, more restarts first, newer first.
pub(crate) fn pods_to_delete(pods: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(node) = pod_node(p) {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let phase_rank = |p: &Pod| match pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let ready_since = |p: &Pod| {
        pod_condition(p, "Ready")
            .filter(|c| c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(0)
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum::<i32>())
            .unwrap_or(0)
    };
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0)
    };
    let mut ranked: Vec<Arc<Pod>> = pods.to_vec();
    ranked.sort_by_key(|p| {
        (
            pod_node(p).is_some(),
            phase_rank(p),
            pod_is_ready(p),
            Reverse(pod_node(p).map_or(0, |n| on_node[n])),
            Reverse(ready_since(p)),
            Reverse(restarts(p)),
            Reverse(created(p)),
        )
    });
    ranked.truncate(n);
    ranked
}

impl skiff_client::Reconcile for ReplicaSetController {
    type Error = Error;

    fn reconcile(&self, key: &str) -> impl Future<Output = Result<Option<Duration>, Error>> + Send {
        self.sync(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase, "conditions": [{"type": "Ready",
                    "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn surplus_pods_go_in_upstreams_order() {
        let pods = vec![
            pod(
                "running-old",
                Some("a"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "running-new",
                Some("b"),
                "Running",
                true,
                "2026-01-02T00:00:00Z",
            ),
            pod(
                "not-ready",
                Some("a"),
                "Running",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "pending",
                Some("b"),
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
        ];
        let names: Vec<String> = pods_to_delete(&pods, 5)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "running-new",
                "running-old"
            ]
        );
    }

    #[test]
    fn crowded_nodes_lose_pods_first() {
        let pods = vec![
            pod("alone", Some("b"), "Running", true, "2026-01-02T00:00:00Z"),
            pod(
                "crowd-1",
                Some("a"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "crowd-2",
                Some("a"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
        ];
        let first = pods_to_delete(&pods, 1);
        assert!(first[0].name_any().starts_with("crowd"));
    }
}
