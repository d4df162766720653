//! Lists served a page at a time from the watch cache (upstream's ListFromCacheSnapshot,
//! on by default since 1.33). The first page of a paginated list is cut from the cache, and
//! the rest of that snapshot is kept, so the pages after it come from memory at the first
//! page's revision instead of the datastore decoding every object again — what each
//! informer does when it starts (kube-rs and client-go list 500 at a time).
//!
//! Invariants: a page continues exactly the snapshot its token names (same revision, same
//! resource, namespace and selectors), after the token's key; a snapshot is kept at most
//! `KEEP_FOR` (upstream's 75 s) and `MAX_HELD` at a time. A token whose snapshot is gone
//! falls back to the datastore, which answers 410 once that revision is compacted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_store::Revision;

use crate::watch_cache::Cached;

const KEEP_FOR: Duration = Duration::from_secs(75);
const MAX_HELD: usize = 32;

/// What a paginated list asks for, apart from its position: pages continue only a
/// snapshot taken for the same question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub resource: String,
    pub namespace: Option<String>,
    pub labels: String,
    pub fields: String,
}

/// One page: its objects, the revision of its snapshot, and the key of its last object
/// when more follow (the continue token's position).
pub struct Page {
    pub revision: Revision,
    pub items: Vec<Arc<Cached>>,
    pub last_key: Option<String>,
}

struct Held {
    query: ListQuery,
    revision: Revision,
    taken: Instant,
    /// By datastore key, in key order.
    entries: Arc<Vec<(String, Arc<Cached>)>>,
}

#[derive(Default)]
pub struct ListSnapshots {
    held: Mutex<VecDeque<Held>>,
}

impl ListSnapshots {
    /// The first page of `entries` (a snapshot at `revision`, in key order); the snapshot
    /// is kept when more pages follow.
    pub fn first_page(
        &self,
        query: ListQuery,
        revision: Revision,
        entries: Vec<(String, Arc<Cached>)>,
        limit: usize,
    ) -> Page {
        let page = cut(&entries, 0, limit, revision);
        if page.last_key.is_some() {
            let now = Instant::now();
            let mut held = self.held.lock().expect("list snapshots lock");
            held.retain(|h| now.duration_since(h.taken) <= KEEP_FOR);
            if held.len() == MAX_HELD {
                held.pop_front();
            }
            held.push_back(Held {
                query,
                revision,
                taken: now,
                entries: Arc::new(entries),
            });
        }
        page
    }

    /// The page after `start_after` of the snapshot `query` took at `revision`, if it is
    /// still held.
    pub fn next_page(
        &self,
        query: &ListQuery,
        revision: Revision,
        start_after: &str,
        limit: usize,
    ) -> Option<Page> {
        let entries = {
            let held = self.held.lock().expect("list snapshots lock");
            let h = held.iter().find(|h| {
                h.revision == revision && h.query == *query && h.taken.elapsed() <= KEEP_FOR
            })?;
            h.entries.clone()
        };
        let start = entries.partition_point(|(key, _)| key.as_str() <= start_after);
        Some(cut(&entries, start, limit, revision))
    }
}

fn cut(entries: &[(String, Arc<Cached>)], start: usize, limit: usize, revision: Revision) -> Page {
    let end = start.saturating_add(limit.max(1)).min(entries.len());
    let start = start.min(end);
    Page {
        revision,
        items: entries[start..end].iter().map(|(_, c)| c.clone()).collect(),
        last_key: (end < entries.len()).then(|| entries[end - 1].0.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<(String, Arc<Cached>)> {
        (0..n)
            .map(|i| {
                let name = format!("cm-{i:02}");
                let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default"}});
                (
                    format!("/configmaps/default/{name}"),
                    Arc::new(Cached::new(
                        &crate::registry::core::configmap::ConfigMaps,
                        obj,
                    )),
                )
            })
            .collect()
    }

    fn query(labels: &str) -> ListQuery {
        ListQuery {
            resource: "configmaps".into(),
            namespace: Some("default".into()),
            labels: labels.into(),
            fields: String::new(),
        }
    }

    fn names(page: &Page) -> Vec<String> {
        page.items
            .iter()
            .map(|c| {
                let obj: serde_json::Value = serde_json::from_slice(&c.bytes).unwrap();
                obj["metadata"]["name"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn pages_continue_the_snapshot_the_first_page_took() {
        let snapshots = ListSnapshots::default();
        let first = snapshots.first_page(query(""), 7, entries(5), 2);
        assert_eq!(names(&first), ["cm-00", "cm-01"]);
        let mut after = first.last_key.clone().unwrap();
        let mut seen = names(&first);
        loop {
            let page = snapshots.next_page(&query(""), 7, &after, 2).unwrap();
            assert_eq!(page.revision, 7);
            seen.extend(names(&page));
            match page.last_key {
                Some(k) => after = k,
                None => break,
            }
        }
        assert_eq!(seen, ["cm-00", "cm-01", "cm-02", "cm-03", "cm-04"]);
        // The rest at once, when no limit is given.
        let rest = snapshots
            .next_page(&query(""), 7, "/configmaps/default/cm-00", usize::MAX)
            .unwrap();
        assert_eq!(names(&rest).len(), 4);
        assert!(rest.last_key.is_none());
    }

    #[test]
    fn only_the_same_question_at_the_same_revision_continues_a_snapshot() {
        let snapshots = ListSnapshots::default();
        let first = snapshots.first_page(query("app=web"), 7, entries(3), 1);
        let key = first.last_key.unwrap();
        assert!(snapshots.next_page(&query("app=web"), 7, &key, 1).is_some());
        assert!(snapshots.next_page(&query(""), 7, &key, 1).is_none());
        assert!(snapshots.next_page(&query("app=web"), 8, &key, 1).is_none());
        // A list that fits in one page keeps nothing.
        let whole = snapshots.first_page(query("tier=db"), 9, entries(2), 5);
        assert!(whole.last_key.is_none());
        assert!(
            snapshots
                .next_page(&query("tier=db"), 9, "/configmaps/default/cm-00", 5)
                .is_none()
        );
    }

    #[test]
    fn at_most_max_held_snapshots_are_kept() {
        let snapshots = ListSnapshots::default();
        for revision in 1..=(MAX_HELD as Revision + 1) {
            snapshots.first_page(query(""), revision, entries(2), 1);
        }
        let key = "/configmaps/default/cm-00";
        assert!(
            snapshots.next_page(&query(""), 1, key, 1).is_none(),
            "the oldest went"
        );
        assert!(snapshots.next_page(&query(""), 2, key, 1).is_some());
    }
}
