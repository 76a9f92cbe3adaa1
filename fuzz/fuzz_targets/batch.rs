//! Fuzz target `batch`: `flux_trt::fuzz::batch_file` (the body, shared with `tests/fuzz_corpus.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| flux_trt::fuzz::batch_file(data));
}
