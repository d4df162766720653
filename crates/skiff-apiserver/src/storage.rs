//! Objects in the datastore: JSON values under each type's key prefix, with
//! `metadata.resourceVersion` taken from the store's mod revision on the way out (it is never
//! stored, so it can never disagree with the store).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::object::metadata_mut;
use skiff_api::{ApiError, ResourceType};
use skiff_store::{KeyValue, RangeRequest, Revision, Store, StoreError};

/// An object as read from the store, with the revision that guards its next write.
#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    pub mod_revision: Revision,
}

/// Maps a datastore error onto the API's answer for an operation on `rt`/`name`.
pub fn store_error(rt: &ResourceType, name: &str, err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound { .. } => ApiError::not_found(rt, name),
        StoreError::AlreadyExists { .. } => ApiError::already_exists(rt, name),
        StoreError::Conflict { .. } => ApiError::conflict(rt, name, ApiError::MODIFIED),
        StoreError::Compacted { requested, .. } => {
            ApiError::expired(format!("too old resource version: {requested}"))
        }
        e if e.is_unavailable() => {
            ApiError::unavailable(format!("the datastore is unavailable: {e}"))
        }
        e => ApiError::internal(format!("datastore: {e}")),
    }
}

/// Decodes a stored value as `rt` presents it, and stamps its resourceVersion.
pub fn decode(rt: &ResourceType, kv: &KeyValue) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!("stored object {} is not valid JSON: {e}", kv.key))
    })?;
    let mut obj = skiff_api::conversion::from_storage(rt, obj);
    metadata_mut(&mut obj).insert("resourceVersion".into(), kv.mod_revision.to_string().into());
    Ok(obj)
}

/// An object's name and its datastore key.
fn name_and_key(rt: &ResourceType, obj: &Value) -> (String, String) {
    let name = skiff_api::object::name(obj).unwrap_or_default().to_string();
    let key = rt.storage_key(skiff_api::object::namespace(obj), &name);
    (name, key)
}

/// Encodes an object of `rt` in its storage form, without its resourceVersion (or selfLink).
fn encode(rt: &ResourceType, obj: &Value) -> Result<Bytes, ApiError> {
    let bytes = if skiff_api::conversion::stored_as_served(rt) {
        serde_json::to_vec(&StorageForm(obj))
    } else {
        serde_json::to_vec(&StorageForm(&skiff_api::conversion::to_storage(
            rt,
            obj.clone(),
        )))
    };
    bytes
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// Metadata fields that are never stored: the store's revision is the resourceVersion.
const UNSTORED_METADATA: [&str; 2] = ["resourceVersion", "selfLink"];

/// An object as it is stored, written without copying it first.
struct StorageForm<'a>(&'a Value);

impl serde::Serialize for StorageForm<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else {
            return self.0.serialize(s);
        };
        let mut out = s.serialize_map(Some(fields.len()))?;
        for (key, value) in fields {
            match value {
                Value::Object(meta) if key == "metadata" => {
                    out.serialize_entry(key, &StoredMetadata(meta))?
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

struct StoredMetadata<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for StoredMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .filter(|(k, _)| !UNSTORED_METADATA.contains(&k.as_str())),
        )
    }
}

/// What a read of the object just written would answer, without decoding it again: the
/// object as written, stamped with the write's revision.
fn as_written(rt: &ResourceType, mut obj: Value, kv: &KeyValue) -> Result<Stored, ApiError> {
    if !skiff_api::conversion::stored_as_served(rt) {
        return Ok(Stored {
            object: decode(rt, kv)?,
            mod_revision: kv.mod_revision,
        });
    }
    let meta = metadata_mut(&mut obj);
    meta.remove("selfLink");
    meta.insert("resourceVersion".into(), kv.mod_revision.to_string().into());
    Ok(Stored {
        object: obj,
        mod_revision: kv.mod_revision,
    })
}

/// A page of a list: the objects, the revision it was read at, and the last key read (for
/// the continue token) when more remain.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub last_key: Option<String>,
}

/// Typed access to the datastore for the API's handlers.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Objects { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        let key = rt.storage_key(ns, name);
        let got = self
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(rt, name, e))?;
        let kv = got.kv.ok_or_else(|| ApiError::not_found(rt, name))?;
        Ok(Stored {
            object: decode(rt, &kv)?,
            mod_revision: kv.mod_revision,
        })
    }

    /// Reads up to `limit` objects (0: all) that pass `keep`, continuing after `after` at
    /// `at_revision` (a consistent snapshot across pages). Keeps reading past filtered-out
    /// objects so a page is full whenever more matches exist.
    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        limit: usize,
        after: Option<String>,
        at_revision: Option<Revision>,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Page, ApiError> {
        let prefix = rt.storage_list_prefix(ns);
        let mut items = Vec::new();
        let mut continue_after = after;
        let mut revision = at_revision;
        loop {
            let chunk = if limit == 0 {
                0
            } else {
                (limit - items.len()).max(64)
            };
            let page = self
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    limit: chunk,
                    continue_after: continue_after.clone(),
                    at_revision: revision,
                })
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } => ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    e => store_error(rt, "", e),
                })?;
            revision = Some(page.revision);
            for (i, kv) in page.kvs.iter().enumerate() {
                let obj = decode(rt, kv)?;
                if keep(&obj) {
                    items.push(obj);
                    if limit != 0 && items.len() == limit {
                        let more = page.more || i + 1 < page.kvs.len();
                        return Ok(Page {
                            items,
                            revision: page.revision,
                            last_key: more.then(|| kv.key.clone()),
                        });
                    }
                }
            }
            if !page.more || limit == 0 {
                return Ok(Page {
                    items,
                    revision: page.revision,
                    last_key: None,
                });
            }
            continue_after = page.kvs.last().map(|kv| kv.key.clone());
        }
    }

    pub async fn create(&self, rt: &ResourceType, obj: Value) -> Result<Stored, ApiError> {
        let (name, key) = name_and_key(rt, &obj);
        let kv = self
            .store
            .create(&key, encode(rt, &obj)?)
            .await
            .map_err(|e| store_error(rt, &name, e))?;
        as_written(rt, obj, &kv)
    }

    pub async fn update(
        &self,
        rt: &ResourceType,
        obj: Value,
        expected: Revision,
    ) -> Result<Stored, ApiError> {
        let (name, key) = name_and_key(rt, &obj);
        let kv = self
            .store
            .update(&key, encode(rt, &obj)?, expected)
            .await
            .map_err(|e| store_error(rt, &name, e))?;
        as_written(rt, obj, &kv)
    }

    /// Writes `new` over the object `read` was read as, if it is still that version: the
    /// write of an in-server loop that read the object a moment ago. `None` when it changed
    /// meanwhile or is gone (the change brings the loop another pass).
    pub async fn update_if_unchanged(
        &self,
        rt: &ResourceType,
        new: Value,
        read: &Value,
    ) -> Result<Option<Stored>, ApiError> {
        let revision = skiff_api::object::meta_str(read, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::internal("an object read without its resourceVersion"))?;
        match self.update(rt, new, revision).await {
            Ok(stored) => Ok(Some(stored)),
            Err(e) if e.code == 404 || e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the object if it is still at `expected`; answers the deleted object with the
    /// delete's revision as its resourceVersion.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        expected: Revision,
    ) -> Result<Value, ApiError> {
        let key = rt.storage_key(ns, name);
        let deleted = self
            .store
            .delete(&key, Some(expected))
            .await
            .map_err(|e| store_error(rt, name, e))?;
        let mut obj = decode(rt, &deleted.prev)?;
        metadata_mut(&mut obj).insert(
            "resourceVersion".into(),
            deleted.revision.to_string().into(),
        );
        Ok(obj)
    }
}
