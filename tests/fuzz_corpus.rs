//! Every input of the checked-in fuzz corpus (`fuzz/corpus/<target>/`),
//! run through the same entry points the `cargo fuzz` targets call, on
//! every test run: inputs that once crashed a parser are added there and
//! stay fixed. (The fuzzing itself: see `fuzz/README.md`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use taskcenter::fuzzing;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {target} corpus is empty");
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

#[test]
fn list_query_corpus() {
    for (_, data) in corpus("list_query") {
        fuzzing::list_query(&data);
    }
}

#[test]
fn signature_header_corpus() {
    for (_, data) in corpus("signature_header") {
        fuzzing::signature_header(&data);
    }
}

#[test]
fn api_request_corpus() {
    let h = fuzzing::ApiHarness::new();
    let mut answered = Vec::new();
    for (path, data) in corpus("api_request") {
        answered.push((path, h.request(&data)));
    }
    // The seeds are real requests: most of them are accepted, so the
    // fuzzer starts from inputs that reach the handlers, not only the parsers.
    let ok = answered.iter().filter(|(_, s)| s.is_success()).count();
    assert!(ok * 2 >= answered.len(), "{answered:?}");
}

#[test]
fn dump_record_corpus() {
    let mut h = fuzzing::DumpHarness::new();
    let mut refused = Vec::new();
    for (path, data) in corpus("dump_record") {
        if !h.line(&data) {
            refused.push(path);
        }
    }
    // The seeds are a valid dump (a service, a group, a source, a batch
    // over them), taken in order.
    assert!(refused.is_empty(), "{refused:?}");
}
