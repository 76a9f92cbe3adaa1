//! Fuzz target `manifest`: `flux_trt::fuzz::manifest` (the body, shared with `tests/fuzz_corpus.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| flux_trt::fuzz::manifest(data));
}
