//! Fuzz target `lora`: `flux_trt::fuzz::lora_file` (the body, shared with `tests/fuzz_corpus.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| flux_trt::fuzz::lora_file(data));
}
