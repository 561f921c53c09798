"""The optional year head: its loss and metrics by hand, and a tiny model that learns the year, reports it in
years, saves, serves it and shows it in the demo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from artnet import labels
from artnet.config import Augment, DataConfig, TrainConfig
from artnet.data.synthetic import write_synthetic_folder
from artnet.models.year import (
    YEAR_CENTRE,
    YEAR_SCALE,
    GaussianYearNLL,
    block_of_year,
    normalised_years,
    year_estimate,
    year_metrics,
    year_sample_weights,
    year_text,
)
from artnet.testing.configs import tiny_config


def test_the_gaussian_nll_is_the_formula_and_masked_years_add_nothing():
    years = np.array([1500.0, 1700.0, -1.0])
    targets, known = normalised_years(years)
    np.testing.assert_allclose(targets, [(1500 - YEAR_CENTRE) / YEAR_SCALE, (1700 - YEAR_CENTRE) / YEAR_SCALE, 0])
    assert known.tolist() == [True, True, False]
    raw = np.array([[-1.0, 0.0], [0.5, np.log(0.5)], [3.0, 2.0]], np.float32)
    per_example = GaussianYearNLL(reduction=None)(targets, raw).numpy()
    mu, log_sigma = raw[:, 0], raw[:, 1]
    expected = 0.5 * ((targets - mu) / np.exp(log_sigma)) ** 2 + log_sigma
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    # masked: the unknown year's absurd prediction changes nothing once its weight is 0
    weights = year_sample_weights(years, balance=False)
    assert weights.tolist() == [1.0, 1.0, 0.0]
    masked = GaussianYearNLL()(targets, raw, sample_weight=weights).numpy()
    np.testing.assert_allclose(masked, expected[:2].sum() / 3, rtol=1e-5)  # sum over batch size, like the heads
    balanced = year_sample_weights(years)
    np.testing.assert_allclose(balanced.mean(), 1.0)


def test_year_metrics_by_hand():
    years = np.array([1500, 1600, 1700, -1])
    # mean years 1510, 1650, 1700, (unknown); sigmas 20, 20, 20
    raw = np.array([[(y - YEAR_CENTRE) / YEAR_SCALE, np.log(0.2)] for y in (1510, 1650, 1700, 1800)])
    timeframes = np.array([1, 3, 5, 7])  # 1451-1500 (true block of 1500 is 1), 1551-1600, 1651-1700, 1751-1800
    result = year_metrics(years, raw, timeframes, constant=1600.0)
    assert result["n"] == 3
    assert result["mae"] == pytest.approx((10 + 50 + 0) / 3)
    assert result["median_ae"] == pytest.approx(10)
    assert result["within_one_sigma"] == pytest.approx(2 / 3)  # 10 and 0 are within 20; 50 is not
    assert result["mean_sigma"] == pytest.approx(20)
    assert result["mae_constant"] == pytest.approx((100 + 0 + 100) / 3)
    # read as blocks: 1510 -> 2 (vs 1), 1650 -> 4 (vs 3), 1700 -> 5 (vs 5), 1800 -> 7 (vs 7)
    assert block_of_year(np.array([1510, 1650, 1700, 1800, 1200, 2000])).tolist() == [2, 4, 5, 7, 0, 9]
    assert result["block_n"] == 4
    assert result["block_top1"] == pytest.approx(0.5)
    assert result["within_one_block"] == pytest.approx(1.0)
    assert result["block_distance_fractions"][:2] == pytest.approx([0.5, 0.5])
    mean, sigma = year_estimate(raw)
    np.testing.assert_allclose(mean, [1510, 1650, 1700, 1800])
    np.testing.assert_allclose(sigma, 20)


def test_the_year_reads_as_an_art_historian_writes_it():
    assert year_text(1641.7, 23.0) == "c. 1640 ± 25"
    assert year_text(1503, 1.0) == "c. 1505 ± 5"  # never a false precision of ± 0


def test_a_year_weight_without_a_year_head_is_refused():
    with pytest.raises(ValueError, match="year_head is off"):
        TrainConfig(loss_weights={"school": 1.0, "year": 0.5})
    assert TrainConfig(year_head=True, loss_weights={"year": 0.5}).year_head


@pytest.mark.parametrize("loss_weighting", ["fixed", "uncertainty"])
def test_a_tiny_model_learns_the_year_reports_it_in_years_and_serves_it(
    tmp_path, tiny_weights, monkeypatch, loss_weighting
):
    from artnet.run import run_experiment
    from artnet.serving.export import load_model
    from artnet.serving.predictor import Predictor

    monkeypatch.setenv("ARTNET_FEATURE_CACHE", str(tmp_path / "cache"))
    folder = write_synthetic_folder(tmp_path / "paintings", 240, authors=40, years=True)
    config = tiny_config(
        backbone_weights=tiny_weights,
        heads=("timeframe",),
        year_head=True,
        loss_weighting=loss_weighting,
        learning_rate=0.02,
        epochs=40,
        head_epochs=40,
        dropout=0.0,
        data={"source": "folder", "folder": str(folder), "feature_views": 1, "augment": Augment()},
    )
    result = run_experiment(config, tmp_path / "run", similarity_index=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "year_loss" in log[0] and "val_year_mae_years" in log[0]
    assert log[-1]["val_year_mae_years"] < log[0]["val_year_mae_years"]  # it learns
    if loss_weighting == "uncertainty":
        assert "weight_year" in log[-1]
    year = result.report["year"]
    assert year["n"] > 0 and year["mae"] < year["mae_constant"]  # better than always answering one year
    recorded = json.loads((tmp_path / "run" / "label_counts.json").read_text())
    assert year["constant_year"] == pytest.approx(recorded["year_mean"])
    assert "## Year head" in (tmp_path / "run" / "eval_test" / "report.md").read_text()
    assert (tmp_path / "run" / "eval_test" / "distance_year.png").is_file()
    assert result.card["test_year"]["mae"] == pytest.approx(year["mae"])

    # saved and loaded, it still has its year head; serving gives years and their sigma
    reloaded = load_model(result.workdir.export.model)
    assert reloaded.year_head and reloaded.tasks == ("timeframe", "year")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    served = reloaded.serving_function()(pixels)
    assert set(served) == {"timeframe", "year", "year_sigma"}
    assert np.all(np.asarray(served["year_sigma"]) > 0)
    prediction = Predictor(reloaded).predict(pixels[0])
    mean, sigma = prediction[labels.YEAR]
    assert 1000 < mean < 2300 and sigma > 0
    # `artnet predict` writes the year and its sigma beside the heads' columns
    import csv

    from PIL import Image

    from artnet.serving.batch_predict import run_batch_prediction

    Image.fromarray(pixels[0]).save(tmp_path / "painting.png")
    assert run_batch_prediction(Predictor(reloaded), [str(tmp_path / "painting.png")], str(tmp_path / "p.csv")) == 0
    row = next(csv.DictReader((tmp_path / "p.csv").open()))
    assert float(row["year"]) == pytest.approx(mean, abs=0.1) and float(row["year_sigma"]) > 0


def test_the_demo_shows_the_year_beside_the_block(tmp_path):
    from artnet.models.artnet import ArtNet
    from artnet.serving.backend import DemoBackend
    from artnet.serving.demo import build_demo
    from artnet.serving.export import export

    model = ArtNet("tiny", image_size=32, heads=("timeframe",), year_head=True)
    export(model, tmp_path / "export", card={"data": "synthetic", "train_examples": 24})
    backend = DemoBackend(tmp_path / "export")
    image = tmp_path / "painting.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(image)
    answer = backend.classify(str(image))
    assert answer.year is not None and answer.year.startswith("c. ") and " ± " in answer.year
    demo = build_demo(tmp_path / "export")
    config = demo.get_config_file()
    assert any(c.get("props", {}).get("label", "").startswith("When: year") for c in config["components"])
    demo.backend.close()
    backend.close()


def test_the_probe_has_a_year_probe_and_the_tables_show_years_with_intervals(tmp_path, tiny_weights):
    import importlib.util
    from pathlib import Path

    from artnet.data.sources import load_sources
    from artnet.training.probe import run_probe

    folder = write_synthetic_folder(tmp_path / "paintings", 200, authors=40, years=True)
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=tiny_weights,
        image_size=32,
        data=DataConfig(source="folder", folder=str(folder)),
    )
    sources = load_sources(config)
    report = run_probe(config, tmp_path / "probe", sources, cache_dir=tmp_path / "cache")
    year = report["year"]
    choices = json.loads((tmp_path / "probe" / "probe.json").read_text())["choices"]

    # Recomputed from what the probe saved (predictions.npz: the year as (mu, log sigma), as the year head gives it).
    saved = np.load(tmp_path / "probe" / "eval_test" / "predictions.npz")
    years, blocks = saved["year_true"], saved["timeframe_true"]
    assert years.tolist() == sources["test"].years.tolist()
    assert blocks.tolist() == sources["test"].labels["timeframe"].tolist()
    dated = years >= 0
    mean = YEAR_CENTRE + YEAR_SCALE * saved["year"][:, 0]
    sigma = YEAR_SCALE * np.exp(saved["year"][:, 1])
    error = np.abs(mean[dated] - years[dated])
    train_years = sources["train"].years[sources["train"].years >= 0]
    assert year["n"] == int(dated.sum()) > 0
    assert year["mae"] == pytest.approx(error.mean()) and year["median_ae"] == pytest.approx(np.median(error))
    assert year["constant_year"] == pytest.approx(train_years.mean())  # the training split's mean, not the test's
    assert year["mae_constant"] == pytest.approx(np.abs(years[dated] - train_years.mean()).mean())
    assert year["mean_sigma"] == pytest.approx(choices["year"]["sigma_years"])  # the probe's one sigma, in years
    assert np.allclose(sigma, choices["year"]["sigma_years"])
    assert year["within_one_sigma"] == pytest.approx(np.mean(error <= sigma[dated]))
    labelled = blocks >= 0
    read_as_block = np.clip(np.floor((mean[labelled] - 1401) / 50), 0, 9).astype(int)
    assert year["block_top1"] == pytest.approx(np.mean(read_as_block == blocks[labelled]))
    # The ridge strength is the validation grid's best, and its score the one the grid recorded.
    grid = choices["year"]["grid"]
    best = min(grid, key=lambda entry: entry["validation_mae_years"])
    assert choices["year"]["alpha"] == best["alpha"] and len(grid) > 1
    assert choices["year"]["validation_mae_years"] == pytest.approx(best["validation_mae_years"])
    # The timeframe probe in years, as for a trained model: the top-1 block's middle year against the year.
    timeframe = report["heads"]["timeframe"]
    both = dated & labelled
    middles = np.array([(int(name[:4]) + int(name[5:])) / 2 for name in labels.TIMEFRAMES])
    block_error = np.abs(middles[saved["timeframe"].argmax(axis=1)[both]] - years[both])
    assert timeframe["year_n"] == int(both.sum()) > 0
    assert timeframe["year_mae"] == pytest.approx(block_error.mean())

    path = Path(__file__).resolve().parents[1] / "experiments" / "compare.py"
    spec = importlib.util.spec_from_file_location("experiments_compare", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    rows = {row["head"]: row for row in compare.rows_for_run("probe", tmp_path / "probe")}
    assert set(rows) == {*labels.HEADS, "year"}
    for head, mae in (("timeframe", timeframe["year_mae"]), ("year", year["mae"])):
        row = rows[head]
        assert row["year_mae"] == pytest.approx(mae)  # the table shows the run's own numbers
        assert row["year_mae_low"] <= row["year_mae"] <= row["year_mae_high"]
    markdown = compare.to_markdown(list(rows.values()), "t", [])
    assert "Time in years" in markdown and "| probe | year |" in markdown
    assert markdown.count("| probe | year |") == 1  # in the time table only, not among the classification rows
