"""Evaluation: how good a model (or a baseline) is, in numbers and plots.

- `evaluate`: a model on a source -> report (JSON, Markdown, plots) beside chance and the majorities.
- `metrics`: per-head metrics (scikit-learn where it has them), calibration, time in blocks and years.
- `intervals`: bootstrap intervals, painter (cluster) resampling, paired differences of two runs.
- `plots`: the report's figures (matplotlib, Agg only).
- `calibration`: temperature scaling per head, the calibration an export stores, and how it scores on a split.
- `conformal`: prediction sets with a stated coverage, and the abstain rule they give ("Dutch or Flemish").
- `report`: the Markdown report and `percent`, the one way a fraction is written.
- `mtl_stats`: multi- vs single-head statistics (Δm, paired intervals).
- `data_stats`: what a dataset holds, per split and class.
- `localisation`: how well a painting was found in a photo (corner error, overlap).

It sits below training: training chooses on validation (the probe's C, keep-or-undo fine-tuning) with these
same metrics, so that a choice and its report never disagree.
"""
