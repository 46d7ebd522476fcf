//! Running ONNX detectors through ONNX Runtime to make proposals.
