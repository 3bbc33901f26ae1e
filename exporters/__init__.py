"""Exporters: front-end -> NIR / netx HDF5, backbone -> ONNX (import as neurodeploy.exporters)."""
