//! Server-side apply and field-set bookkeeping on arbitrary live objects and applied
//! configurations: input is a JSON array `[live, applied]`.
#![no_main]

use serde_json::Value;
use skiff_api::managed_fields;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(pair)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let [live, applied] = pair.as_slice() else {
        return;
    };
    let _ = managed_fields::apply(
        "apps/v1",
        "Deployment",
        live,
        applied,
        "fuzz",
        None,
        false,
        "t",
    );
    let _ = managed_fields::apply(
        "v1",
        "Pod",
        live,
        applied,
        "fuzz",
        Some("status"),
        true,
        "t",
    );
    let _ = managed_fields::changed_fields(
        "apps/v1",
        "Deployment",
        live,
        applied,
        managed_fields::Scope::Main,
    );
});
