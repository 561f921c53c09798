"""Training: a configured ArtNet fitted on sources into a workdir.

`train.train()` reads as the sequence of a run's phases; each part has its own module: `strategy` (strategy,
precision, chief), `compile` (what trains, optimizer, losses), `records` (callbacks, label counts, the run's end),
`loop` (artnet's own loop, multi-worker), `feature_cache` and `cache_fit` (training on cached frozen features),
`probe` (the linear-probe arm) and `lpft` (heads that start as the probe), `errors` (`TrainingError`).
"""
