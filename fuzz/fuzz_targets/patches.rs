//! Every patch engine, and protobuf encoding, on arbitrary documents: input is a JSON array
//! `[target, patch]`.
#![no_main]

use serde_json::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(pair)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let [target, patch] = pair.as_slice() else {
        return;
    };
    for (api_version, kind) in [("apps/v1", "Deployment"), ("v1", "Pod"), ("v1", "Service")] {
        let mut t = target.clone();
        let _ = skiff_api::strategic::strategic_merge_patch(api_version, kind, &mut t, patch);
    }
    let mut t = target.clone();
    skiff_api::patch::merge_patch(&mut t, patch);
    let mut t = target.clone();
    let _ = skiff_api::patch::json_patch(&mut t, patch);
    // Encoding arbitrary objects as protobuf answers an error, never panics.
    for (api_version, kind) in [("apps/v1", "Deployment"), ("v1", "Pod")] {
        let mut obj = target.clone();
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), api_version.into());
            m.insert("kind".into(), kind.into());
        }
        let _ = skiff_api::protobuf::encode_object(&obj);
    }
});
