"""A painting's year as a training target, and the fifty-year blocks as years: plain numpy, no TensorFlow.

The year head (`artnet.models.year`) predicts z = (year - YEAR_CENTRE) / YEAR_SCALE. The input pipeline makes
those targets and their sample weights from the labels, and evaluation reads a block back as its middle year; both
sit below the models, so the encoding lives here, with the data.
"""

from __future__ import annotations

import numpy as np

from artnet import labels

YEAR_CENTRE = 1650.5  # the middle of 1401-1900
YEAR_SCALE = 100.0  # years per normalised unit


def normalised_years(years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z targets as float32, with 0 where unknown; known mask) from years with -1 for unknown."""
    years = np.asarray(years, dtype=np.float64)
    known = years >= 0
    targets = np.where(known, (years - YEAR_CENTRE) / YEAR_SCALE, 0.0).astype(np.float32)
    return targets, known


def year_sample_weights(years: np.ndarray, balance: bool = True) -> np.ndarray:
    """1 per known year (0 unknown), scaled by n / n_known with `balance` so that the mean weight over all examples
    is 1, as the classification heads' weights are: the loss keeps its scale however few years are known."""
    _, known = normalised_years(years)
    weights = known.astype(np.float32)
    if balance and known.any():
        weights *= len(known) / known.sum()
    return weights


def block_centres(class_names) -> np.ndarray:
    """The middle year of each "1401-1450"-style block name (1425.5)."""
    bounds = [[float(part) for part in str(name).split("-")] for name in class_names]
    return np.asarray([(low + high) / 2 for low, high in bounds], dtype=np.float64)


def block_of_year(mean_years: np.ndarray) -> np.ndarray:
    """The timeframe block (0-9) of each predicted year, clipped into 1401-1900: the year head read as a block."""
    index = np.floor((np.asarray(mean_years, dtype=np.float64) - 1401) / 50).astype(np.int64)
    return np.clip(index, 0, len(labels.TIMEFRAMES) - 1)
