//! Fuzz target `adapter_request`: `flux_trt::fuzz::adapter_request` (the body, shared with `tests/fuzz_corpus.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| flux_trt::fuzz::adapter_request(data));
}
