"""One run and the runners of many (layer 4 of docs/layers.md): the run configuration and its sections, a run's
identity, training, checkpoints, the run folder, prediction, a run's score cache, parallel runs and held-out sweeps."""
