//! Patches by content type: JSON patch (RFC 6902) and JSON merge patch (RFC 7386).

use serde_json::Value;

/// The patch formats, by their `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub const MEDIA_TYPES: &'static [&'static str] = &[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// What custom resources accept: no strategic merge, which needs patch strategies only
    /// built-in types declare.
    pub const CUSTOM_MEDIA_TYPES: &'static [&'static str] = &[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];

    pub fn from_content_type(content_type: &str) -> Option<PatchKind> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        Some(match essence {
            "application/json-patch+json" => PatchKind::Json,
            "application/merge-patch+json" => PatchKind::Merge,
            "application/strategic-merge-patch+json" => PatchKind::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchKind::Apply,
            _ => return None,
        })
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces
/// (`json_patch::merge`, under the name the handlers and the strategic merge use).
pub use json_patch::merge as merge_patch;

/// RFC 6902. The error names the failing operation, as a 422 message (upstream answers a
/// failing test or a missing path with 422 Invalid... and a malformed document with 400).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| JsonPatchError::Malformed(e.to_string()))?;
    json_patch::patch(target, &ops).map_err(|e| JsonPatchError::Failed(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum JsonPatchError {
    /// Not a JSON patch document (400).
    #[error("{0}")]
    Malformed(String),
    /// A well-formed patch that cannot apply to this object (422).
    #[error("{0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn json_patch_applies_and_reports() {
        let mut doc = json!({"spec": {"replicas": 1}});
        json_patch(
            &mut doc,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
        )
        .unwrap();
        assert_eq!(doc["spec"]["replicas"], 3);
        assert!(matches!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])),
            Err(JsonPatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(&mut doc, &json!({"op": "remove"})),
            Err(JsonPatchError::Malformed(_))
        ));
    }

    #[test]
    fn content_types_pick_the_kind() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }
}
