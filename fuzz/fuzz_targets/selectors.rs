//! Label and field selector queries, and structured label selectors.
#![no_main]

use skiff_api::selectors::Selector;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Selector::parse_labels(text);
        let _ = Selector::parse_fields(text);
    }
    if let Ok(value) = serde_json::from_slice(data) {
        let _ = Selector::from_label_selector(&value);
    }
});
