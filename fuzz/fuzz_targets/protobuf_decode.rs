//! Hostile `application/vnd.kubernetes.protobuf` bodies: decoding must answer an error,
//! never panic or run away.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut body = skiff_api::protobuf::MAGIC.to_vec();
    body.extend_from_slice(data);
    let _ = skiff_api::protobuf::decode_object(&body);
    let _ = skiff_api::protobuf::decode_object(data);
});
