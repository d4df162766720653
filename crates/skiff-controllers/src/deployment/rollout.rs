//! One sync of one Deployment: upstream's `syncDeployment` with its rolling, recreate and
//! scaling paths, over the ReplicaSets the Deployment controls (kept up to date in place as
//! this sync changes them, so each step sees the previous one's result).

use std::cmp::Reverse;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_client::objects::{is_deleting, pod_phase};

use super::progress::{self, PAUSED, PROGRESSING, RESUMED, TIMED_OUT};
use super::util::*;
use super::{DeploymentController, new_replicaset};
use crate::Error;

pub(super) struct Rollout<'a> {
    pub c: &'a DeploymentController,
    pub api: Api<ReplicaSet>,
    pub d: Deployment,
    /// Oldest first.
    pub sets: Vec<ReplicaSet>,
}

fn created(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_nanosecond() as i64)
}

impl Rollout<'_> {
    pub async fn run(&mut self) -> Result<Option<Duration>, Error> {
        self.sets.sort_by_key(|rs| (created(rs), rs.name_any()));
        if is_deleting(&self.d) {
            let new = self.find_new();
            return self
                .write_status(progress::calculate(
                    &self.sets,
                    new.map(|i| &self.sets[i]),
                    &self.d,
                ))
                .await
                .map(|()| None);
        }
        self.check_paused_conditions().await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event() {
            return self.sync_scale(paused).await;
        }
        if is_recreate(&self.d) {
            self.recreate().await
        } else {
            self.rolling().await
        }
    }

    fn replicas(&self) -> i32 {
        replicas(&self.d)
    }

    fn find_new(&self) -> Option<usize> {
        let template = &self.d.spec.as_ref()?.template;
        self.sets.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| same_template(t, template))
        })
    }

    fn olds(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != new).collect()
    }

    fn total_replicas(&self) -> i32 {
        self.sets.iter().map(rs_replicas).sum()
    }

    /// The new ReplicaSet (created if `create` and missing), with revisions in step:
    /// the new one is always the highest revision, and the Deployment carries it.
    async fn new_replicaset(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let new = self.find_new();
        let max_old = self
            .olds(new)
            .iter()
            .map(|i| revision(&self.sets[*i]))
            .max()
            .unwrap_or(0);
        let next = max_old + 1;
        let new = match new {
            Some(i) => {
                self.sync_new_annotations(i, next).await?;
                Some(i)
            }
            None if create => Some(self.create_new(next).await?),
            None => None,
        };
        if let Some(i) = new {
            let rev = revision(&self.sets[i]).to_string();
            if self.d.annotations().get(REVISION) != Some(&rev) {
                let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
                let updated = Api::<Deployment>::namespaced(
                    self.c.client.clone(),
                    &self.d.namespace().unwrap_or_default(),
                )
                .patch(
                    &self.d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                self.d.metadata.annotations = updated.metadata.annotations;
                self.d.metadata.resource_version = updated.metadata.resource_version;
            }
        }
        Ok(new)
    }

    /// Brings an existing new ReplicaSet's annotations up to date: the Deployment's own,
    /// and the next revision if it was an old one (an undo), remembering the old number.
    async fn sync_new_annotations(&mut self, i: usize, next: i64) -> Result<(), Error> {
        let rs = &self.sets[i];
        let mut annotations = rs.annotations().clone();
        for (k, v) in copied_annotations(&self.d) {
            annotations.insert(k, v);
        }
        let current = revision(rs);
        if current < next {
            if current > 0 {
                let history = match annotations.get(REVISION_HISTORY) {
                    Some(h) if !h.is_empty() => format!("{h},{current}"),
                    _ => current.to_string(),
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            annotations.insert(REVISION.into(), next.to_string());
        }
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if &annotations == rs.annotations() && min_ready.unwrap_or(0) == rs_min_ready.unwrap_or(0) {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"annotations": annotations, "resourceVersion": rs.resource_version()},
            "spec": {"minReadySeconds": min_ready},
        });
        self.sets[i] = self
            .api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn create_new(&mut self, revision: i64) -> Result<usize, Error> {
        let d = &self.d;
        let spec = d.spec.clone().unwrap_or_default();
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let n = self.replicas();
        let replicas = if is_recreate(d) {
            n
        } else {
            let max_total = n + max_surge(d);
            let current = self.total_replicas();
            if current >= max_total {
                0
            } else {
                (max_total - current).min(n)
            }
        };
        let rs = new_replicaset(d, &hash, replicas, revision);
        let name = rs.name_any();
        let created = match self.api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(e) if skiff_client::is_status(&e, 409) => {
                let existing = self.api.get(&name).await?;
                let ours = skiff_client::objects::controller_of(&existing)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| same_template(t, &spec.template));
                if ours && same {
                    existing
                } else {
                    // A hash collision: count it so the next hash differs, and try again.
                    let mut status = d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collisions.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::Api(e));
                }
            }
            Err(e) => return Err(e.into()),
        };
        if replicas > 0 {
            self.c.events.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        if progress::progress_deadline(&self.d).is_some() {
            progress::set_condition(
                &mut status,
                progress::new_condition(
                    PROGRESSING,
                    "True",
                    progress::NEW_RS_CREATED,
                    format!("Created new replica set \"{name}\""),
                ),
            );
            self.d.status = Some(status);
        }
        self.sets.retain(|rs| rs.name_any() != name);
        self.sets.push(created);
        Ok(self.sets.len() - 1)
    }

    /// Sets a ReplicaSet's replicas (and the Deployment's size annotations on it); true if
    /// the size changed.
    async fn scale(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        let rs = &self.sets[i];
        let old = rs_replicas(rs);
        let desired = self.replicas();
        let max = desired + max_surge(&self.d);
        if old == size
            && annotation_i32(rs, DESIRED_REPLICAS) == Some(desired)
            && annotation_i32(rs, MAX_REPLICAS) == Some(max)
        {
            return Ok(false);
        }
        let patch = json!({
            // The resourceVersion makes a decision taken on a stale copy fail (and be taken
            // again on fresh data) instead of scaling twice.
            "metadata": {
                "annotations": {DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: max.to_string()},
                "resourceVersion": rs.resource_version(),
            },
            "spec": {"replicas": size},
        });
        let name = rs.name_any();
        self.sets[i] = self
            .api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if old != size {
            let direction = if size > old { "up" } else { "down" };
            self.c.events.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {name} from {old} to {size}"),
            );
        }
        Ok(old != size)
    }

    async fn rolling(&mut self) -> Result<Option<Duration>, Error> {
        let new = self.new_replicaset(true).await?;
        if self.reconcile_new(new).await? || self.reconcile_old(new).await? {
            return self.sync_rollout_status(new).await;
        }
        if progress::complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    async fn reconcile_new(&mut self, new: Option<usize>) -> Result<bool, Error> {
        let Some(i) = new else {
            return Ok(false);
        };
        let n = self.replicas();
        let current = rs_replicas(&self.sets[i]);
        if current == n {
            return Ok(false);
        }
        if current > n {
            return self.scale(i, n).await;
        }
        let max_total = n + max_surge(&self.d);
        let total = self.total_replicas();
        let size = if total >= max_total {
            current
        } else {
            current + (max_total - total).min(n - current)
        };
        self.scale(i, size).await
    }

    async fn reconcile_old(&mut self, new: Option<usize>) -> Result<bool, Error> {
        let olds: Vec<usize> = self
            .olds(new)
            .into_iter()
            .filter(|i| rs_replicas(&self.sets[*i]) > 0)
            .collect();
        if olds.is_empty() {
            return Ok(false);
        }
        let min_available = self.replicas() - max_unavailable(&self.d);
        let new_unavailable = new.map_or(0, |i| {
            rs_replicas(&self.sets[i]) - rs_status(&self.sets[i]).2
        });
        let max_scaled_down = self.total_replicas() - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // First the old pods that are not available anyway (they cost no availability).
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let replicas = rs_replicas(&self.sets[i]);
            let unhealthy = replicas - rs_status(&self.sets[i]).2;
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            self.scale(i, replicas - down).await?;
            cleaned += down;
        }
        // Then available ones, as far as minAvailable allows.
        let available: i32 = self.sets.iter().map(|rs| rs_status(rs).2).sum();
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for &i in &olds {
                if scaled >= budget {
                    break;
                }
                let replicas = rs_replicas(&self.sets[i]);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(budget - scaled);
                self.scale(i, replicas - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn recreate(&mut self) -> Result<Option<Duration>, Error> {
        let mut new = self.new_replicaset(false).await?;
        let mut scaled = false;
        for i in self.olds(new) {
            if rs_replicas(&self.sets[i]) > 0 {
                scaled |= self.scale(i, 0).await?;
            }
        }
        if scaled || self.old_pods_running(new) {
            return self.sync_rollout_status(new).await;
        }
        if new.is_none() {
            new = self.new_replicaset(true).await?;
        }
        if let Some(i) = new {
            let n = self.replicas();
            self.scale(i, n).await?;
        }
        if progress::complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    fn old_pods_running(&self, new: Option<usize>) -> bool {
        self.olds(new).into_iter().any(|i| {
            let rs = &self.sets[i];
            rs_status(rs).0 > 0
                || self
                    .c
                    .pods
                    .controlled_by(&rs.uid().unwrap_or_default())
                    .iter()
                    .any(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
        })
    }

    /// A scaling event: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&self) -> bool {
        let n = self.replicas();
        self.sets
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| annotation_i32(rs, DESIRED_REPLICAS).is_some_and(|desired| desired != n))
    }

    /// Paused or resized: only scale (proportionally when several ReplicaSets are active).
    async fn sync_scale(&mut self, paused: bool) -> Result<Option<Duration>, Error> {
        let new = self.new_replicaset(false).await?;
        self.scale_proportionally(new).await?;
        if paused {
            self.cleanup(new).await?;
        }
        let status = progress::calculate(&self.sets, new.map(|i| &self.sets[i]), &self.d);
        self.write_status(status).await?;
        Ok(None)
    }

    async fn scale_proportionally(&mut self, new: Option<usize>) -> Result<(), Error> {
        let n = self.replicas();
        let active: Vec<usize> = (0..self.sets.len())
            .filter(|i| rs_replicas(&self.sets[*i]) > 0)
            .collect();
        // One active ReplicaSet (or none: the newest) takes the whole size.
        let only = match active.len() {
            0 => new.or_else(|| self.sets.len().checked_sub(1)),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            self.scale(i, n).await?;
            return Ok(());
        }
        // Saturated: the new one is complete, the old ones go.
        if let Some(i) = new {
            let rs = &self.sets[i];
            if rs_replicas(rs) == n
                && annotation_i32(rs, DESIRED_REPLICAS) == Some(n)
                && rs_status(rs).2 == n
            {
                for j in self.olds(new) {
                    if rs_replicas(&self.sets[j]) > 0 {
                        self.scale(j, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if is_recreate(&self.d) {
            return Ok(());
        }
        let surge = max_surge(&self.d);
        let allowed = if n > 0 { n + surge } else { 0 };
        let current: i32 = active.iter().map(|i| rs_replicas(&self.sets[*i])).sum();
        let to_add = allowed - current;
        let mut order = active.clone();
        if to_add > 0 {
            // Bigger first; among equals the newer.
            order.sort_by_key(|i| {
                (
                    Reverse(rs_replicas(&self.sets[*i])),
                    Reverse(created(&self.sets[*i])),
                )
            });
        } else {
            order.sort_by_key(|i| {
                (
                    Reverse(rs_replicas(&self.sets[*i])),
                    created(&self.sets[*i]),
                )
            });
        }
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for &i in &order {
            let rs = &self.sets[i];
            let proportion = if to_add == 0 || to_add == added {
                0
            } else {
                let fraction = self.fraction(rs, surge);
                let allowed_left = to_add - added;
                if to_add > 0 {
                    fraction.min(allowed_left)
                } else {
                    fraction.max(allowed_left)
                }
            };
            sizes.push((i, rs_replicas(rs) + proportion));
            added += proportion;
        }
        // What rounding left over goes to the biggest.
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale(i, size).await?;
        }
        Ok(())
    }

    /// How many replicas a ReplicaSet gains (or loses) in proportion to its share of the
    /// size it was made for (its max-replicas annotation).
    fn fraction(&self, rs: &ReplicaSet, surge: i32) -> i32 {
        let n = self.replicas();
        if n == 0 {
            return -rs_replicas(rs);
        }
        let target = n + surge;
        let annotated = annotation_i32(rs, MAX_REPLICAS)
            .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .max(1);
        let size = f64::from(rs_replicas(rs)) * f64::from(target) / f64::from(annotated);
        size.round() as i32 - rs_replicas(rs)
    }

    /// Deletes old, empty ReplicaSets beyond revisionHistoryLimit, lowest revisions first.
    async fn cleanup(&mut self, new: Option<usize>) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut olds: Vec<usize> = self
            .olds(new)
            .into_iter()
            .filter(|i| !is_deleting(&self.sets[*i]))
            .collect();
        let excess = olds.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        olds.sort_by_key(|i| revision(&self.sets[*i]));
        for &i in olds.iter().take(excess as usize) {
            let rs = &self.sets[i];
            let settled =
                rs.status.as_ref().and_then(|s| s.observed_generation) >= rs.metadata.generation;
            if rs_status(rs).0 != 0 || rs_replicas(rs) != 0 || !settled {
                continue;
            }
            let result = self
                .api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await;
            skiff_client::tolerating(result, &[404])?;
        }
        Ok(())
    }

    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress::progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        let reason = progress::condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let shown = reason.as_deref() == Some(PAUSED);
        let condition: DeploymentCondition = match (paused, shown) {
            (true, false) => progress::new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
            ),
            (false, true) => progress::new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
            ),
            _ => return Ok(()),
        };
        progress::set_condition(&mut status, condition);
        self.write_status(status).await
    }

    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<Option<Duration>, Error> {
        let new_rs = new.map(|i| &self.sets[i]);
        let mut status = progress::calculate(&self.sets, new_rs, &self.d);
        let requeue = progress::update_progressing(&self.d, new_rs, &mut status);
        self.write_status(status).await?;
        Ok(requeue)
    }

    async fn write_status(
        &mut self,
        status: k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        let api = Api::<Deployment>::namespaced(
            self.c.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let name = self.d.name_any();
        let mut result = api
            .replace_status(&name, &PostParams::default(), &self.d)
            .await;
        if matches!(&result, Err(e) if skiff_client::is_status(e, 409)) {
            // Our copy was behind (often: behind our own last write). The status describes
            // the ReplicaSets, not the copy, so it still holds for the same generation.
            let mut fresh = api.get(&name).await?;
            if fresh.metadata.generation == self.d.metadata.generation {
                fresh.status = self.d.status.clone();
                result = api
                    .replace_status(&name, &PostParams::default(), &fresh)
                    .await;
            }
        }
        if let Some(updated) = skiff_client::tolerating(result, &[404])? {
            self.d = updated;
        }
        Ok(())
    }
}
