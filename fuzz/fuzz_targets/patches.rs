//! Every patch engine on arbitrary documents: input is a JSON array `[target, patch]`.
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
});
