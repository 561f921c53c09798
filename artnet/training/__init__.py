"""Training: a configured ArtNet fitted on sources into a workdir.

Strategy and precision, the Keras fit path, the custom loop (multi-worker), the frozen-feature cache and fitting
the heads from it, the linear-probe arm and LP-FT heads, callbacks and run records. `train.train()` reads as the
sequence of its phases.
"""
