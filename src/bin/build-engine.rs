//! `build-engine`: checkpoint + LoRA files -> ONNX (+ TensorRT plan) + manifest.
fn main() {
    eprintln!("build-engine: lands with the exporter");
    std::process::exit(2);
}
