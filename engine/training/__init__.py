"""Training with per-example dynamics: the run's hyperparameters (`config`), its model (`model`), the loop with
checkpoints (`loop`) and the per-epoch dynamics shards (`recorder`)."""
