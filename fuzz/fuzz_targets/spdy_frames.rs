//! A SPDY connection's bytes as a client could send them: every frame is read until the
//! reader answers an error or the end, and nothing panics.
#![no_main]

use skiff_spdy::FrameReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut reader = FrameReader::new(data);
        while let Ok(Some(_)) = reader.next().await {}
    });
});
