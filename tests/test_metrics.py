"""artnet.evaluation metrics, intervals, plots and report on cases small enough to compute by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from artnet.evaluation import intervals, metrics, plots
from artnet.evaluation.report import format_report_markdown

CLASSES = ["A", "B", "C", "D"]

# Six labelled examples and one unknown (-1), four classes; D is never true nor predicted (by a known example).
#   true  probs                      argmax  top-1  true class's rank
#   A     .70 .10 .10 .10            A       yes    1
#   A     .60 .20 .10 .10            A       yes    1
#   A     .30 .50 .10 .10            B       no     2
#   B     .10 .80 .05 .05            B       yes    1
#   B     .50 .40 .05 .05            A       no     2
#   C     .40 .30 .00 .30            A       no     4  -> the only top-3 miss
#   -1    .00 .00 .00 1.0            D       (ignored: would add D to macro-F1 and change n, top-1, ECE)
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, -1])
PROBS = np.array(
    [
        [0.70, 0.10, 0.10, 0.10],
        [0.60, 0.20, 0.10, 0.10],
        [0.30, 0.50, 0.10, 0.10],
        [0.10, 0.80, 0.05, 0.05],
        [0.50, 0.40, 0.05, 0.05],
        [0.40, 0.30, 0.00, 0.30],
        [0.00, 0.00, 0.00, 1.00],
    ]
)


def test_confusion_matrix_counts_pairs_and_ignores_unknown_labels():
    matrix = metrics.confusion_matrix([0, 0, 1, 2, -1, -1], [0, 1, 1, 0, 2, 2], num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_confusion_matrix_rejects_out_of_range_predictions():
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 1], [0, 3], num_classes=3)


def test_head_metrics_by_hand():
    result = metrics.head_metrics(Y_TRUE, PROBS, CLASSES, majority_class=1)
    assert set(result) == {
        "n",
        "top1",
        "top3",
        "balanced_accuracy",
        "macro_f1",
        "majority_baseline",
        "per_class_accuracy",
        "ece",
        "confusion_matrix",
    }
    assert result["n"] == 6
    assert result["top1"] == pytest.approx(3 / 6)
    assert result["top3"] == pytest.approx(5 / 6)
    # Recall A 2/3, B 1/2, C 0/1; D has no true example so it does not count.
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # F1 = 2TP / (2TP + FP + FN): A 4/(4+2+1) = 4/7, B 2/(2+1+1) = 1/2, C 0/(0+0+1) = 0; D not involved.
    assert result["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert result["majority_baseline"] == pytest.approx(2 / 6)  # always "B"
    assert result["per_class_accuracy"] == {
        "A": {"n": 3, "accuracy": pytest.approx(2 / 3)},
        "B": {"n": 2, "accuracy": pytest.approx(1 / 2)},
        "C": {"n": 1, "accuracy": 0.0},
        "D": {"n": 0, "accuracy": None},
    }
    # Confidences .7 .6 .5 .8 .5 .4, each value in its own bin: |1-.7|+|1-.6|+2|0-.5|+|1-.8|+|0-.4| = 2.3 over 6.
    assert result["ece"] == pytest.approx(2.3 / 6)
    assert result["confusion_matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    json.dumps(result, allow_nan=False)


def test_unknown_labels_change_nothing():
    known = Y_TRUE >= 0
    with_unknown = metrics.head_metrics(Y_TRUE, PROBS, CLASSES, majority_class=0)
    without = metrics.head_metrics(Y_TRUE[known], PROBS[known], CLASSES, majority_class=0)
    assert with_unknown == without
    assert metrics.expected_calibration_error(Y_TRUE, PROBS) == metrics.expected_calibration_error(
        Y_TRUE[known], PROBS[known]
    )
    counts = [b["count"] for b in metrics.reliability_bins(Y_TRUE, PROBS)]
    assert sum(counts) == 6


def test_top3_uses_all_classes_when_there_are_fewer_than_three():
    result = metrics.head_metrics([0, 1, 1], [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], ["x", "y"], majority_class=0)
    assert result["top1"] == pytest.approx(2 / 3)
    assert result["top3"] == 1.0


@pytest.mark.parametrize("y_true", [[-1, -1], []])
def test_no_known_labels_gives_none_not_nan(y_true):
    probs = np.full((len(y_true), 3), 1 / 3)
    result = metrics.head_metrics(y_true, probs, ["x", "y", "z"], majority_class=2)
    assert result["n"] == 0
    for key in ("top1", "top3", "balanced_accuracy", "macro_f1", "majority_baseline", "ece"):
        assert result[key] is None, key
    assert result["per_class_accuracy"]["x"] == {"n": 0, "accuracy": None}
    assert result["confusion_matrix"] == [[0, 0, 0]] * 3
    json.dumps(result, allow_nan=False)


def test_head_metrics_rejects_mismatched_class_names():
    with pytest.raises(ValueError):
        metrics.head_metrics([0], [[0.5, 0.5]], ["x", "y", "z"], majority_class=0)


def test_perfectly_calibrated_predictions_have_zero_ece():
    # Ten answers at confidence 0.8 of which eight are right, twenty at 0.55 of which eleven are right.
    y_true = np.array([0] * 8 + [1] * 2 + [0] * 11 + [1] * 9)
    probs = np.array([[0.8, 0.2]] * 10 + [[0.55, 0.45]] * 20)
    assert metrics.expected_calibration_error(y_true, probs) == pytest.approx(0.0, abs=1e-12)


def test_over_confident_predictions_have_known_ece():
    # Always 90% sure of class 0, right half the time: gap |0.5 - 0.9| = 0.4 in the one occupied bin.
    y_true = np.array([0, 1] * 10)
    probs = np.tile([0.9, 0.1], (20, 1))
    assert metrics.expected_calibration_error(y_true, probs) == pytest.approx(0.4)
    bins = metrics.reliability_bins(y_true, probs)
    assert len(bins) == 15
    assert bins[0]["lower"] == 0.0 and bins[-1]["upper"] == 1.0
    (occupied,) = [b for b in bins if b["count"]]
    assert occupied["count"] == 20
    assert occupied["lower"] < 0.9 <= occupied["upper"]
    assert occupied["confidence"] == pytest.approx(0.9) and occupied["accuracy"] == pytest.approx(0.5)
    assert all(b["confidence"] is None and b["accuracy"] is None for b in bins if not b["count"])


def test_ece_weights_bins_by_their_size():
    # 30 calibrated answers at .8 (24 right) and 10 at 1.0 of which 5 right: ECE = (30*0 + 10*0.5) / 40.
    y_true = np.array([0] * 24 + [1] * 6 + [0] * 5 + [1] * 5)
    probs = np.array([[0.8, 0.2]] * 30 + [[1.0, 0.0]] * 10)
    assert metrics.expected_calibration_error(y_true, probs) == pytest.approx(5 / 40)


def _correct_vector(n: int, accuracy: float) -> np.ndarray:
    return np.arange(n) < round(accuracy * n)


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_examples():
    small = _correct_vector(100, 0.8)
    large = _correct_vector(10_000, 0.8)
    low_small, high_small = intervals.bootstrap_interval(small)
    low_large, high_large = intervals.bootstrap_interval(large)
    assert low_small <= 0.8 <= high_small
    assert low_large <= 0.8 <= high_large
    # Standard error sqrt(.8 * .2 / n): the 95% width is about 0.157 at n=100 and 0.0157 at n=10000.
    assert high_small - low_small == pytest.approx(0.157, abs=0.03)
    assert (high_large - low_large) < (high_small - low_small) / 5


def test_bootstrap_interval_is_deterministic_for_a_seed_and_takes_other_statistics():
    values = np.random.default_rng(1).normal(size=200)
    assert intervals.bootstrap_interval(values, seed=3) == intervals.bootstrap_interval(values, seed=3)
    assert intervals.bootstrap_interval(values, seed=3) != intervals.bootstrap_interval(values, seed=4)
    low, high = intervals.bootstrap_interval(values, statistic=np.median, n_resamples=200)
    assert low <= np.median(values) <= high
    wide = intervals.bootstrap_interval(values, confidence=0.99)
    narrow = intervals.bootstrap_interval(values, confidence=0.5)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_bootstrap_interval_rejects_empty_input():
    with pytest.raises(ValueError):
        intervals.bootstrap_interval(np.array([]))


def test_balanced_bootstrap_with_one_class_is_the_accuracy_bootstrap():
    # With a single true class balanced accuracy is plain accuracy, and both draw the same resamples.
    y_true = np.zeros(300, dtype=int)
    y_pred = np.where(_correct_vector(300, 0.7), 0, 1)
    balanced = intervals.bootstrap_balanced_accuracy_interval(y_true, y_pred, seed=5)
    plain = intervals.bootstrap_interval(y_pred == y_true, seed=5)
    assert balanced == pytest.approx(plain)


def test_balanced_bootstrap_contains_estimate_ignores_unknowns_and_matches_a_per_resample_reference():
    # Its speed (the point of vectorising it) is a benchmark's business, not a unit test's; here, what it computes.
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y_true = rng.choice(6, size=5000, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    y_pred = np.where(rng.random(5000) < 0.6, y_true, rng.integers(0, 6, size=5000))
    point = metrics.head_metrics(y_true, np.eye(6)[y_pred], list("abcdef"), 0)["balanced_accuracy"]

    low, high = intervals.bootstrap_balanced_accuracy_interval(y_true, y_pred, n_resamples=1000)
    assert low <= point <= high
    assert high - low < 0.06

    # The vectorised bincount equals sklearn's balanced accuracy on each resample, over the classes present in it:
    # a small sample with a rare class, so that many resamples lack a class.
    small_true, small_pred = y_true[:40].copy(), y_pred[:40].copy()
    small_true[:2], small_pred[:2] = 6, [6, 0]
    reference = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": sklearn then leaves them out
        for chunk in intervals._resample_indices(len(small_true), 300, seed=0):
            reference += [balanced_accuracy_score(small_true[rows], small_pred[rows]) for rows in chunk]
    assert 0 < sum(not set(range(7)) <= set(small_true[rows]) for rows in chunk) < len(chunk)
    expected = intervals._percentile_interval(np.array(reference), 0.95)
    got = intervals.bootstrap_balanced_accuracy_interval(small_true, small_pred, n_resamples=300, seed=0)
    assert got == pytest.approx(expected, abs=1e-12)

    with_unknowns = intervals.bootstrap_balanced_accuracy_interval(
        np.concatenate([y_true, [-1] * 50]), np.concatenate([y_pred, [0] * 50]), n_resamples=1000
    )
    assert with_unknowns == (low, high)


def _open_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _painter_blocks(painters: int = 10, per_painter: int = 50, b_wins: int = 6):
    """B right and A wrong on every painting of the first `b_wins` painters, the reverse on the others."""
    groups = np.repeat([f"painter {k}" for k in range(painters)], per_painter)
    y_true = np.tile(np.arange(per_painter) % 3, painters)
    b_right = np.repeat(np.arange(painters) < b_wins, per_painter)
    wrong = (y_true + 1) % 3
    return y_true, np.where(b_right, wrong, y_true), np.where(b_right, y_true, wrong), groups


def test_paired_difference_of_a_run_with_itself_is_exactly_zero():
    y_true, pred_a, _, groups = _painter_blocks()
    for resampled in (None, groups):
        for difference, low, high in intervals.paired_difference(y_true, pred_a, pred_a, resampled).values():
            assert difference == low == high == 0


def test_painter_resampling_widens_the_interval_when_painters_succeed_or_fail_together():
    y_true, pred_a, pred_b, groups = _painter_blocks()
    by_image = intervals.paired_difference(y_true, pred_a, pred_b)
    by_painter = intervals.paired_difference(y_true, pred_a, pred_b, groups)
    for metric in ("top1", "balanced_accuracy"):
        assert by_image[metric][0] == pytest.approx(0.2) and by_painter[metric][0] == pytest.approx(0.2)
        image_width = by_image[metric][2] - by_image[metric][1]
        painter_width = by_painter[metric][2] - by_painter[metric][1]
        # 500 images say B is better; 10 painters, 6 against 4, cannot tell
        assert by_image[metric][1] > 0 and by_painter[metric][1] < 0 < by_painter[metric][2]
        assert painter_width > 3 * image_width


def test_paired_difference_leaves_out_unknown_labels_and_treats_unknown_painters_as_their_own():
    y_true, pred_a, pred_b, groups = _painter_blocks()
    with_unknown = intervals.paired_difference(
        np.concatenate([y_true, [-1, -1]]), np.concatenate([pred_a, [0, 0]]), np.concatenate([pred_b, [1, 1]])
    )
    assert with_unknown == intervals.paired_difference(y_true, pred_a, pred_b)
    # no painter known: each image is its own group, which is the image bootstrap, draw for draw
    nobody = intervals.paired_difference(y_true, pred_a, pred_b, np.full(len(y_true), ""))
    assert nobody == intervals.paired_difference(y_true, pred_a, pred_b)
    with pytest.raises(ValueError, match="at least one example with a known label"):
        intervals.paired_difference([-1], [0], [0])


def test_source_painters_are_normalised_authors():
    from artnet.data.sources import Source

    source = Source(
        "s", None, {"school": np.zeros(3, int)}, meta=[{"author": " Rembrandt  van Rijn"}, {}, {"author": None}]
    )
    assert list(source.painters) == ["rembrandt van rijn", "", ""]


def test_plot_reliability_diagram_writes_a_png(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 6)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = rng.integers(-1, 6, size=500)
    path = tmp_path / "plots" / "reliability.png"
    plots.plot_reliability_diagram(y_true, probs, path, title="school")
    width, height = _open_png(path)
    assert 300 <= width <= 3000 and 300 <= height <= 3000
    assert plt.get_fignums() == []  # nothing left behind in pyplot's global state

    empty = tmp_path / "empty.png"
    plots.plot_reliability_diagram([-1, -1], np.full((2, 6), 1 / 6), empty)
    _open_png(empty)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix_writes_a_png_for_ten_classes(tmp_path, normalize):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    names = [f"{start}-{start + 49}" for start in range(1401, 1900, 50)]
    matrix = rng.integers(0, 50, size=(10, 10))
    matrix[3] = 0  # a class with no test example must not make nan or warnings
    path = tmp_path / "confusion.png"
    with np.errstate(all="raise"):
        plots.plot_confusion_matrix(matrix, names, path, title="timeframe", normalize=normalize)
    width, height = _open_png(path)
    assert 500 <= width <= 3000 and 500 <= height <= 3000
    assert plt.get_fignums() == []


def test_format_report_markdown_has_run_info_summary_and_per_class_tables():
    school = metrics.head_metrics(Y_TRUE, PROBS, CLASSES, majority_class=1)
    empty = metrics.head_metrics([-1], [[0.5, 0.5]], ["x", "y"], majority_class=0)
    report = {"model": "efficientnet-b0", "data": "wga/sample 1.0.0", "epochs": 12, "heads": {"school": school}}
    report["heads"]["timeframe"] = empty
    report["extra"] = {"nested": "left to JSON"}
    text = format_report_markdown(report)

    assert "- **model**: efficientnet-b0" in text
    assert "- **epochs**: 12" in text
    assert "nested" not in text
    assert "| school | 6 | 50.0% | 83.3% | 38.9% | 35.7% | 33.3% | 0.383 |" in text
    assert "| timeframe | 0 | n/a | n/a | n/a | n/a | n/a | n/a |" in text
    assert "## Per-class accuracy: school" in text and "## Per-class accuracy: timeframe" in text
    assert "| A | 3 | 66.7% |" in text
    assert "| D | 0 | n/a |" in text
    assert text.index("Summary") < text.index("Per-class accuracy: school") < text.index("Per-class accuracy: time")


def test_evaluate_names_its_baselines_and_split_rule(tmp_path):
    """Chance, the training majority and the evaluated data's own majority, each naming its class: a model can
    beat the training majority and still lose to always answering the test split's majority (the WikiArt case)."""
    from artnet import labels
    from artnet.data.synthetic import synthetic_source
    from artnet.evaluation.evaluate import baselines, split_rule_of

    y_true = np.array([2, 2, 2, 0, -1, 1])  # French x3, Dutch, unknown, Flemish
    result = baselines(y_true, "school", train_class=4, data_class=2)
    assert result == {
        "chance": 1 / 6,
        "train_majority": {"class": labels.SCHOOLS[4], "top1": 0.0},
        "data_majority": {"class": "French", "top1": 0.6},
    }
    assert baselines(y_true, "school", None, 2)["train_majority"] is None
    assert split_rule_of("wga/artist:test").startswith("by painter")
    assert split_rule_of("wga/random:test").startswith("by image")
    assert split_rule_of("wga/sample:train + wga/sample:validation").startswith("by painter")
    assert split_rule_of("my_paintings/").startswith("not stated")

    from artnet.evaluation.evaluate import evaluate
    from artnet.models.artnet import ArtNet

    source = synthetic_source(12, seed=2)
    counts = {head: [0] * len(labels.VOCABULARIES[head]) for head in labels.HEADS}
    for head in labels.HEADS:
        counts[head][1] = 5  # the training majority is class 1 of every head
    report = evaluate(ArtNet("tiny", image_size=32), source, tmp_path, train_counts=counts, split_rule="by image")
    assert report["split_rule"] == "by image"
    for head, result in report["heads"].items():
        known = source.labels[head][source.labels[head] >= 0]
        assert result["majority_baseline"] == result["train_majority"]["top1"] == pytest.approx(np.mean(known == 1))
        assert result["train_majority"]["class"] == labels.VOCABULARIES[head][1]
        assert result["data_majority"]["top1"] == pytest.approx(np.bincount(known).max() / len(known))
        assert result["chance"] == pytest.approx(1 / len(labels.VOCABULARIES[head]))
    text = (tmp_path / "report.md").read_text()
    assert "- **split_rule**: by image" in text and "## Baselines" in text
    school = report["heads"]["school"]
    assert f"{school['data_majority']['class']}: {100 * school['data_majority']['top1']:.1f}%" in text
    assert f"{labels.SCHOOLS[1]}: {100 * school['train_majority']['top1']:.1f}%" in text


def test_timeframe_year_metrics_on_synthetic_arrays(tmp_path):
    from artnet import labels
    from artnet.data.years import block_centres
    from artnet.evaluation.metrics import timeframe_year_metrics
    from artnet.evaluation.plots import plot_block_distance

    names = labels.TIMEFRAMES  # ten blocks, 1401-1450 (centre 1425.5) ... 1851-1900
    assert block_centres(names)[0] == 1425.5 and block_centres(names)[-1] == 1875.5
    y_true = np.array([0, 0, 3, 9, -1])
    predicted = np.array([0, 1, 5, 9, 2])
    probs = np.eye(10)[predicted]
    years = np.array([1430, 1440, -1, 1900, 1500])  # the third painting has no year; the last no block
    result = timeframe_year_metrics(y_true, probs, names, years)
    assert result["within_one_block"] == 3 / 4
    assert result["block_distance_fractions"] == [2 / 4, 1 / 4, 1 / 4] + [0.0] * 7
    errors = [abs(1425.5 - 1430), abs(1475.5 - 1440), abs(1875.5 - 1900)]
    assert result["year_n"] == 3
    assert result["year_mae"] == pytest.approx(np.mean(errors))
    assert result["year_median_ae"] == pytest.approx(np.median(errors))
    chance = np.mean([np.mean(np.abs(block_centres(names) - year)) for year in (1430, 1440, 1900)])
    assert result["year_mae_chance"] == pytest.approx(chance)
    # Uniform chance of landing within one block: 2/10 at an end block, 3/10 inside.
    assert result["within_one_block_chance"] == pytest.approx(np.mean([0.2, 0.2, 0.3, 0.2]))

    no_years = timeframe_year_metrics(y_true, probs, names)
    assert no_years["within_one_block"] == 3 / 4 and no_years["year_n"] == 0 and no_years["year_mae"] is None
    nothing = timeframe_year_metrics(np.array([-1]), np.eye(10)[[0]], names, np.array([1500]))
    assert nothing["within_one_block"] is None and nothing["year_mae"] is None

    plot_block_distance(result["block_distance_fractions"], tmp_path / "distance.png", "timeframe")
    assert (tmp_path / "distance.png").stat().st_size > 1000
    text = format_report_markdown({"heads": {"timeframe": {"n": 4, **result}}})
    assert "## Time in years" in text
    assert f"| timeframe | 75.0% | 22.5% | 3 | {np.mean(errors):.1f} | {np.median(errors):.1f} |" in text


def test_source_years_from_meta():
    import tensorflow as tf

    from artnet.data.sources import Source

    source = Source(
        name="s",
        images=tf.data.Dataset.from_tensor_slices(["a", "b", "c"]),
        labels={head: np.zeros(3, dtype=np.int64) for head in ("school", "timeframe", "type")},
        meta=[{"year": 1520}, {"year": None}, {}],
    )
    assert source.years.tolist() == [1520, -1, -1]
    assert Source(name="t", images=source.images, labels=source.labels).years.tolist() == [-1, -1, -1]
