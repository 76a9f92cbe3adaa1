//! Fuzz target `image_request`: `flux_trt::fuzz::image_request` (the body, shared with `tests/fuzz_corpus.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| flux_trt::fuzz::image_request(data));
}
