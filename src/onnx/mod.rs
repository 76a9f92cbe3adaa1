//! onnx (work in progress).
