#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use taskcenter::fuzzing::ApiHarness;

static HARNESS: OnceLock<std::sync::Mutex<ApiHarness>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let h = HARNESS.get_or_init(|| std::sync::Mutex::new(ApiHarness::new()));
    let h = h.lock().unwrap_or_else(|p| p.into_inner());
    h.request(data);
});
