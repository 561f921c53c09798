"""The optional year head: a painting's year as a number with an uncertainty, not a 50-year class.

The head is a Dense(2) on the pooled features: (μ, log σ) of a Gaussian over the year, in normalised units
z = (year - YEAR_CENTRE) / YEAR_SCALE (so that the outputs start near 0 whatever the century). It trains with the
Gaussian negative log-likelihood

    NLL = ½ ((z - μ) / σ)² + log σ   (+ ½ log 2π, dropped)

where the painting's year is known (`Source.years` >= 0, the `wga` builder's best estimate or a folder's `year`
column) and weight 0 elsewhere, exactly as unknown labels are masked. σ is what the model expects its own error to
be: the demo shows "c. 1640 ± 25". In the multi-task machinery it is one more task (`ArtNet.tasks`) beside the
classification heads, so every loss weighting treats it the same way.
"""

from __future__ import annotations

import keras
import numpy as np

from artnet import labels
from artnet.data.years import (  # the year encoding, shared with the input pipeline
    YEAR_CENTRE,
    YEAR_SCALE,
    block_centres,
    block_of_year,
    normalised_years,
    year_sample_weights,
)
from artnet.labels import YEAR  # the output's name, beside the classification heads

__all__ = [
    "YEAR",
    "YEAR_CENTRE",
    "YEAR_SCALE",
    "block_of_year",
    "normalised_years",
    "year_sample_weights",
    "GaussianYearNLL",
    "YearAbsoluteError",
    "year_estimate",
    "year_metrics",
    "year_text",
]
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -6.0, 3.0  # σ between 0.25 years and 2,000 years: no division by ~0, no overflow


def year_estimate(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's raw [..., 2] output -> (mean year, standard deviation in years)."""
    raw = np.asarray(raw, dtype=np.float64)
    mean = YEAR_CENTRE + YEAR_SCALE * raw[..., 0]
    sigma = YEAR_SCALE * np.exp(np.clip(raw[..., 1], LOG_SIGMA_MIN, LOG_SIGMA_MAX))
    return mean, sigma


def year_text(mean: float, sigma: float) -> str:
    """'c. 1640 ± 25': the year to the nearest 5 years, its uncertainty (one σ) to the nearest 5 (at least 5)."""
    return f"c. {int(5 * round(mean / 5))} ± {max(5, int(5 * round(sigma / 5)))}"


@keras.saving.register_keras_serializable(package="artnet")
class GaussianYearNLL(keras.losses.Loss):
    """Gaussian negative log-likelihood of normalised years under the head's (μ, log σ) (see the top)."""

    def __init__(self, name: str = "year_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        ops = keras.ops
        target = ops.reshape(ops.cast(y_true, "float32"), [-1])
        mean = y_pred[:, 0]
        log_sigma = ops.clip(y_pred[:, 1], LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        return 0.5 * ops.square((target - mean) * ops.exp(-log_sigma)) + log_sigma


@keras.saving.register_keras_serializable(package="artnet")
class YearAbsoluteError(keras.metrics.MeanMetricWrapper):
    """Mean absolute error of the predicted mean year, in years (weighted: unknown years count nothing)."""

    def __init__(self, name: str = "mae_years", dtype=None):
        super().__init__(_absolute_error_in_years, name=name, dtype=dtype)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


def _absolute_error_in_years(y_true, y_pred):
    ops = keras.ops
    return YEAR_SCALE * ops.abs(ops.reshape(ops.cast(y_true, "float32"), [-1]) - y_pred[:, 0])


def year_metrics(
    years: np.ndarray, raw: np.ndarray, timeframe_labels: np.ndarray | None = None, constant: float | None = None
) -> dict:
    """The year head scored in years, over the examples with a known year (`n`): mean and median absolute error,
    the fraction within one σ (calibration: ~68 % for an honest σ), the mean σ, and, read as a block (`block_of_year`),
    top-1 and ±1-block accuracy against the timeframe labels where known. Beside them the error of always answering
    one year, `constant` (the training split's mean year; default the evaluated data's own, which is optimistic):
    `mae_constant`, the bar a regression must clear; and of a block drawn uniformly at random (`mae_chance`)."""
    years = np.asarray(years, dtype=np.float64)
    mean, sigma = year_estimate(raw)
    known = years >= 0
    result = {
        "n": int(known.sum()),
        "mae": None,
        "median_ae": None,
        "within_one_sigma": None,
        "mean_sigma": None,
        "mae_constant": None,
        "constant_year": constant,
        "mae_chance": None,
        "block_n": 0,
        "block_top1": None,
        "within_one_block": None,
    }
    if known.any():
        error = np.abs(mean[known] - years[known])
        centres = block_centres(labels.TIMEFRAMES)
        result.update(
            mae=float(error.mean()),
            median_ae=float(np.median(error)),
            within_one_sigma=float(np.mean(error <= sigma[known])),
            mean_sigma=float(sigma[known].mean()),
            mae_constant=float(np.abs(years[known] - (years[known].mean() if constant is None else constant)).mean()),
            constant_year=float(years[known].mean() if constant is None else constant),
            mae_chance=float(np.abs(centres[None, :] - years[known][:, None]).mean()),
        )
    if timeframe_labels is not None:
        truth = np.asarray(timeframe_labels)
        labelled = truth >= 0
        if labelled.any():
            distance = np.abs(block_of_year(mean[labelled]) - truth[labelled])
            k = len(labels.TIMEFRAMES)
            result.update(
                block_n=int(labelled.sum()),
                block_top1=float(np.mean(distance == 0)),
                within_one_block=float(np.mean(distance <= 1)),
                block_distance_fractions=(np.bincount(distance, minlength=k)[:k] / labelled.sum()).tolist(),
            )
    return result
