#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use taskcenter::fuzzing::DumpHarness;

static HARNESS: OnceLock<Mutex<DumpHarness>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let h = HARNESS.get_or_init(|| Mutex::new(DumpHarness::new()));
    h.lock().unwrap_or_else(|p| p.into_inner()).line(data);
});
