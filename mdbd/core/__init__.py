"""What every layer uses (layer 1 of docs/layers.md): error types, repository-anchored paths, the dataset and
polarity names, stable hashing, atomic file writes, thread limits, provenance, the run-folder writer lock, the VGG-16
weights and the chain's progress lines. Imports nothing above itself."""
