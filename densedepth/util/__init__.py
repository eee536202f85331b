"""Plumbing every stage shares: errors, output folders and the file ledger, file writing,
progress, optional imports, CPU facts, devices, signals, and torch-free ONNX I/O."""
