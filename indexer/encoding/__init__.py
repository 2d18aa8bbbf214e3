"""The ColBERT encoder and how it runs: torch or ONNX, the export guard, batched tokenization."""
