"""The single- vs multi-head grid: its statistics on synthetic predictions with known answers, and the runner end
to end (tiny backbone, synthetic folder: fast)."""

import csv
import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from artnet.data.synthetic import write_synthetic_folder
from artnet.evaluation import mtl_stats

ROOT = Path(__file__).resolve().parents[1]


def _grid_module():
    spec = importlib.util.spec_from_file_location("grid", ROOT / "experiments" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _one_hot(predicted: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes)[predicted]


def _group(y_true: np.ndarray, *predictions: np.ndarray, head: str = "school", classes: int = 4):
    runs = [{head: _one_hot(p, classes), f"{head}_true": y_true} for p in predictions]
    return mtl_stats.Group.from_predictions(runs)


# --- statistics -----------------------------------------------------------------------------------------


def test_metric_values_match_sklearn_and_leave_unknown_labels_out():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    rng = np.random.default_rng(0)
    y_true = rng.integers(-1, 5, 300)
    y_pred = rng.integers(0, 5, (3, 300))
    values = mtl_stats.metric_values(y_true, y_pred)
    known = y_true >= 0
    for run in range(3):
        assert values["top1"][run] == pytest.approx(accuracy_score(y_true[known], y_pred[run][known]))
        assert values["balanced_accuracy"][run] == pytest.approx(
            balanced_accuracy_score(y_true[known], y_pred[run][known])
        )
    assert np.isnan(mtl_stats.metric_values(np.full(4, -1), np.zeros((1, 4)))["top1"]).all()


def test_identical_runs_differ_by_zero_with_an_interval_around_zero():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 200)
    seeds = [np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200)) for _ in range(3)]
    groups = {"multi": _group(y_true, *seeds), "single": _group(y_true, *seeds)}
    result = mtl_stats.bootstrap(groups, n_resamples=300)
    for metric in mtl_stats.METRICS:
        d = mtl_stats.difference(result, metric, "multi", "single", "school")
        assert d["difference"] == 0.0 and d["low"] <= 0.0 <= d["high"]
        assert d["high"] - d["low"] > 0  # the seeds are resampled independently per group: seed spread shows
    # Without seed resampling, identical runs give identical replicates: a zero-width interval at 0.
    fixed = mtl_stats.bootstrap(groups, n_resamples=100, resample_seeds=False)
    d = mtl_stats.difference(fixed, "top1", "multi", "single", "school")
    assert d["low"] == d["high"] == 0.0


def test_a_run_better_on_every_image_has_an_interval_above_zero():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 4, 150)
    perfect = [y_true.copy() for _ in range(3)]
    worse = [np.where(rng.random(150) < 0.5, y_true, (y_true + 1) % 4) for _ in range(3)]
    result = mtl_stats.bootstrap({"multi": _group(y_true, *perfect), "single": _group(y_true, *worse)}, 300)
    for metric in mtl_stats.METRICS:
        d = mtl_stats.difference(result, metric, "multi", "single", "school")
        assert d["multi"] == 1.0 and d["difference"] > 0 and d["low"] > 0


def test_the_image_resample_is_paired():
    """A multi run equal to the single run except on one image: every replicate's difference is a
    multiple of +1/n, never negative, which an unpaired resample (different images per run) would not give."""
    y_true = np.arange(100) % 4
    single = np.where(np.arange(100) < 60, y_true, (y_true + 1) % 4)
    multi = single.copy()
    multi[70] = y_true[70]
    result = mtl_stats.bootstrap({"m": _group(y_true, multi), "s": _group(y_true, single)}, 300)
    replicates = result.replicates["top1", "m", "school"] - result.replicates["top1", "s", "school"]
    assert (replicates >= -1e-12).all()
    assert mtl_stats.difference(result, "top1", "m", "s", "school")["difference"] == pytest.approx(0.01)


def test_painters_in_the_predictions_make_the_resample_draw_whole_painters():
    """10 painters of 30 paintings each; multi is right on all paintings of 6 of them and single on the other 4.
    Drawing images, 300 near-independent draws pin the +20-point difference down; drawing painters, only 10
    draws decide it, so the interval is several times wider and holds 0, as it honestly should."""
    painters = np.repeat([f"painter {k}" for k in range(10)], 30)
    y_true = np.tile(np.arange(30) % 4, 10)
    multi_right = np.repeat(np.arange(10) < 6, 30)
    multi = np.where(multi_right, y_true, (y_true + 1) % 4)
    single = np.where(multi_right, (y_true + 1) % 4, y_true)

    def group(predicted, with_painters):
        run = {"school": _one_hot(predicted, 4), "school_true": y_true}
        return mtl_stats.Group.from_predictions([run | ({"painter": painters} if with_painters else {})])

    widths = {}
    for with_painters in (False, True):
        result = mtl_stats.bootstrap({"m": group(multi, with_painters), "s": group(single, with_painters)}, 400)
        assert result.by_painter is with_painters
        d = mtl_stats.difference(result, "top1", "m", "s", "school")
        assert d["difference"] == pytest.approx(0.2)
        widths[with_painters] = d["high"] - d["low"]
        assert (d["low"] > 0) is not with_painters
    assert widths[True] > 3 * widths[False]
    with pytest.raises(ValueError, match="test painters differ"):
        mtl_stats.Group.from_predictions(
            [
                {"school": _one_hot(multi, 4), "school_true": y_true, "painter": painters},
                {"school": _one_hot(multi, 4), "school_true": y_true, "painter": painters[::-1]},
            ]
        )


def test_delta_m_on_hand_numbers():
    assert mtl_stats.delta_m_value({"a": 0.55, "b": 0.3}, {"a": 0.5, "b": 0.4}) == pytest.approx(-7.5)  # (10-25)/2
    assert mtl_stats.delta_m_value({"a": 0.6, "b": 0.6}, {"a": 0.5, "b": 0.4}) == pytest.approx(35.0)  # (20+50)/2
    elementwise = mtl_stats.delta_m_value({"a": np.array([0.5, 1.0])}, {"a": np.array([0.5, 0.5])})
    np.testing.assert_allclose(elementwise, [0.0, 100.0])
    with pytest.raises(ValueError, match="same tasks"):
        mtl_stats.delta_m_value({"a": 0.5}, {"b": 0.5})


def test_delta_m_of_the_bootstrap_against_two_single_head_groups():
    y_school = np.arange(120) % 4
    y_type = (np.arange(120) // 3) % 3
    good_school = y_school.copy()
    half_type = np.where(np.arange(120) % 2 == 0, y_type, (y_type + 1) % 3)
    multi = mtl_stats.Group.from_predictions(
        [
            {
                "school": _one_hot(good_school, 4),
                "school_true": y_school,
                "type": _one_hot(half_type, 3),
                "type_true": y_type,
            }
        ]
    )
    single_school = _group(y_school, np.where(np.arange(120) % 2 == 0, y_school, (y_school + 1) % 4))
    single_type = _group(y_type, half_type, head="type", classes=3)
    result = mtl_stats.bootstrap({"m": multi, "ss": single_school, "st": single_type}, 200)
    delta = mtl_stats.delta_m(result, "top1", "m", {"school": "ss", "type": "st"})
    assert delta["delta_m"] == pytest.approx(50.0)  # school 1.0 vs 0.5 (+100 %), type 0.5 vs 0.5 (0 %)
    assert 0 < delta["low"] <= 50.0 <= delta["high"]


def test_runs_on_different_test_sets_are_refused():
    with pytest.raises(ValueError, match="test labels differ"):
        _group(np.array([0, 1, 2]), np.array([0, 1, 2])).__class__.from_predictions(
            [
                {"school": _one_hot(np.array([0, 1]), 4), "school_true": np.array([0, 1])},
                {"school": _one_hot(np.array([0, 1]), 4), "school_true": np.array([1, 1])},
            ]
        )
    with pytest.raises(ValueError, match="different numbers of images"):
        mtl_stats.bootstrap({"a": _group(np.arange(3) % 4, np.arange(3)), "b": _group(np.arange(4), np.arange(4))})


def test_learning_curve_plot_is_written(tmp_path):
    path = mtl_stats.plot_learning_curves(
        {"multihead / fixed": [(10, 0.3, 0.25, 0.35), (40, 0.5, 0.45, 0.55)], "single_school": [(10, 0.2, 0.2, 0.2)]},
        tmp_path / "curve.png",
        chance=0.1,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_runs_single_head_arms_with_fixed_only():
    grid = _grid_module()
    runs, skipped = grid.plan(("multihead", "single_type"), ("fixed", "pcgrad"), (0, 1, 2), (0.5, 1.0))
    assert len(runs) == 3 * 2 * (2 + 1) and skipped == 3 * 2
    assert {r.strategy for r in runs if r.arm == "single_type"} == {"fixed"}
    runs, _ = grid.plan(("single_type",), ("pcgrad",), (0,), (1.0,))  # the baseline is kept whatever is asked
    assert [(r.arm, r.strategy) for r in runs] == [("single_type", "fixed")]
    assert str(runs[0].workdir(Path("g")).root) == "g/single_type/fixed/seed0/frac1"


# --- the runner, end to end -----------------------------------------------------------------------------


def test_grid_trains_resumes_estimates_and_reports(tmp_path, monkeypatch, capsys):
    folder = write_synthetic_folder(tmp_path / "paintings", 160)
    recipe = tmp_path / "tiny_recipe.py"
    recipe.write_text(
        textwrap.dedent(
            f"""
            from artnet.config import ARMS, Augment, DataConfig, TrainConfig, parse_arm
            def get_config(arg=None):
                arm, _ = parse_arm(arg)
                return TrainConfig(backbone="tiny", backbone_weights=None, image_size=32, heads=ARMS[arm],
                    optimizer="adam", learning_rate=0.01, fine_tune_learning_rate=0.01, epochs=1,
                    head_epochs=0, early_stopping_patience=0, precision="float32", strategy="none",
                    data=DataConfig(source="folder", folder={str(folder)!r}, batch_size=32, cache=True,
                                    augment=Augment(flip=False, rotation_degrees=0, shift=0, zoom=0)))
            """
        )
    )
    grid = _grid_module()
    runs, out = tmp_path / "runs", tmp_path / "results"
    common = ["--recipe", str(recipe), "--runs", str(runs), "--out", str(out), "--resamples", "50"]
    selection = ["--arms", "multihead,single_school", "--strategies", "fixed,uncertainty", "--seeds", "0,1"]
    assert grid.main([*common, *selection, "--fractions", "1.0", "--no-timing"]) == 0
    printed = capsys.readouterr().out
    assert "grid: 6 runs" in printed and "single-head arms run `fixed` only" in printed
    assert (runs / "multihead" / "uncertainty" / "seed1" / "frac1" / "eval_test" / "predictions.npz").is_file()

    # Resumes: a second invocation trains nothing.
    import artnet.run

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(artnet.run, "run_experiment", refuse)
    assert grid.main([*common, *selection, "--fractions", "1.0", "--no-timing"]) == 0
    assert "grid: 6 runs under" in capsys.readouterr().out

    # Dry run with a third seed and a half fraction: the finished runs' mean seconds per fraction, and for the
    # fraction with no finished run, that mean scaled by the fraction.
    plan = [*common, *selection[:-2], "--seeds", "0,1,2", "--fractions", "0.5,1.0", "--dry-run"]
    assert grid.main(plan) == 0
    printed = capsys.readouterr().out
    assert "grid: 18 runs" in printed and printed.count("  todo  ") == 12 and printed.count("  done  ") == 6
    mean = np.mean([_train_seconds(path) for path in runs.glob("*/*/seed*/frac1")])
    match = re.search(r"fraction 1: 3 to run, 6 finished; mean ([0-9.]+) s per run \(measured\)", printed)
    assert match and float(match.group(1)) == pytest.approx(mean, abs=0.06)
    match = re.search(r"fraction 0.5: 9 to run, 0 finished; mean ([0-9.]+) s per run \(scaled", printed)
    assert match and float(match.group(1)) == pytest.approx(mean / 2, abs=0.06)
    assert "remaining: 12 runs, about" in printed and not (runs / "multihead" / "fixed" / "seed2").exists()

    # Report only (with the timing), from the finished runs.
    monkeypatch.undo()
    assert grid.main([*common, "--report-only"]) == 0
    rows = {name: list(csv.DictReader((out / f"{name}.csv").open())) for name in ("runs", "differences", "delta_m")}
    assert len(rows["runs"]) == 2 * (2 * 3 + 1)  # seeds x (2 strategies x 3 heads + 1 single head)
    assert {r["arm"] for r in rows["runs"]} == {"multihead", "single_school"}
    assert all(int(r["train_painters"]) > 0 and float(r["train_seconds"]) > 0 for r in rows["runs"])
    # Differences: strategy x school (the only single arm here) x 2 metrics.
    assert [(r["strategy"], r["head"], r["metric"]) for r in rows["differences"]] == [
        (s, "school", m) for s in ("fixed", "uncertainty") for m in ("top1", "balanced_accuracy")
    ]
    for row in rows["differences"]:
        assert float(row["low"]) <= float(row["high"]) and row["seeds_multi"] == row["seeds_single"] == "2"
        assert float(row["difference"]) == pytest.approx(float(row["multi"]) - float(row["single"]))
    assert len(rows["delta_m"]) == 2 * 2 and {r["heads"] for r in rows["delta_m"]} == {"school"}
    for row in rows["delta_m"]:  # one head: Δm is its relative difference
        diff = next(d for d in rows["differences"] if (d["strategy"], d["metric"]) == (row["strategy"], row["metric"]))
        assert float(row["delta_m"]) == pytest.approx(100 * float(diff["difference"]) / float(diff["single"]))
    cost = list(csv.DictReader((out / "cost.csv").open()))
    assert len(cost) == 3 and all(float(r["ms_per_image"]) > 0 for r in cost)
    markdown = (out / "grid.md").read_text()
    assert "## Δm against the single-head arms" in markdown and "| 1 | " in markdown
    for head in ("school", "timeframe", "type"):
        assert (out / f"learning_curve_{head}.png").read_bytes()[:4] == b"\x89PNG"


def _train_seconds(path: Path) -> float:
    from artnet.workdir import Workdir

    return float(Workdir(path).read_train_summary()["seconds"])
