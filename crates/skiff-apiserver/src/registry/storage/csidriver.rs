//! CSIDrivers: what a CSI volume driver needs from Kubernetes.

use serde_json::{Value, json};
use skiff_api::object::meta_str;
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("storage.k8s.io", "v1",
    "CSIDriver", "csidrivers", "csidriver", namespaced: false, short: [], categories: [],
    sub: []);

pub struct CsiDrivers;

impl Kind for CsiDrivers {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// Upstream's `SetDefaults_CSIDriverSpec`.
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.entry("attachRequired").or_insert(json!(true));
        spec.entry("podInfoOnMount").or_insert(json!(false));
        spec.entry("storageCapacity").or_insert(json!(false));
        spec.entry("fsGroupPolicy")
            .or_insert(json!("ReadWriteOnceWithFSType"));
        spec.entry("requiresRepublish").or_insert(json!(false));
        spec.entry("seLinuxMount").or_insert(json!(false));
        spec.entry("volumeLifecycleModes")
            .or_insert(json!(["Persistent"]));
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(old) = old {
            for key in ["attachRequired", "podInfoOnMount", "volumeLifecycleModes"] {
                let now = obj.get("spec").and_then(|s| s.get(key));
                if now != old.get("spec").and_then(|s| s.get(key)) {
                    causes.push(Cause::invalid(
                        format!("spec.{key}"),
                        now.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        causes
    }
}

impl Printer for CsiDrivers {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "AttachRequired",
                "boolean",
                0,
                "Indicates this CSI volume driver requires an attach operation.",
            ),
            Column::new(
                "PodInfoOnMount",
                "boolean",
                0,
                "Indicates this CSI volume driver requires additional pod information during mount operations.",
            ),
            Column::new(
                "StorageCapacity",
                "boolean",
                0,
                "Indicates that the CSI volume driver wants pod scheduling to consider the storage capacity.",
            ),
            Column::new(
                "TokenRequests",
                "string",
                0,
                "Indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
            ),
            Column::new(
                "RequiresRepublish",
                "boolean",
                0,
                "RequiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called.",
            ),
            Column::new(
                "Modes",
                "string",
                0,
                "Defines the volume lifecycle modes that this driver supports.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let flag = |k: &str| {
            obj.get("spec")
                .and_then(|s| s.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let audiences: Vec<&str> = arr(obj, &["spec", "tokenRequests"])
            .iter()
            .filter_map(|t| t.get("audience").and_then(Value::as_str))
            .collect();
        let modes: Vec<&str> = arr(obj, &["spec", "volumeLifecycleModes"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        vec![
            text(meta_str(obj, "name")),
            flag("attachRequired").into(),
            flag("podInfoOnMount").into(),
            flag("storageCapacity").into(),
            if audiences.is_empty() {
                "<unset>".into()
            } else {
                audiences.join(",").into()
            },
            flag("requiresRepublish").into(),
            modes.join(",").into(),
            age_cell(obj, now),
        ]
    }
}
