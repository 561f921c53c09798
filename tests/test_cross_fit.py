"""Cross-fitted calibration (`calibration_folds`): the training painters' answers come from fold models that never
saw them, a rerun reuses them, a bad stored file is made again, and a run's calibration is fitted on them and the
validation answers together, which its card says."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from artnet import labels
from artnet.config import DataConfig, TrainConfig
from artnet.data.sources import Source, load_sources
from artnet.data.synthetic import write_synthetic_folder
from artnet.evaluation.calibration import calibration_from_json
from artnet.testing.configs import tiny_cached_config
from artnet.training import cross_fit
from artnet.workdir import Workdir

FOLDS = 3


def cached_config(tmp_path, tiny_weights, monkeypatch, **fields) -> TrainConfig:
    """A tiny-backbone recipe on a synthetic folder of 60 painters, trained from a feature cache in `tmp_path`."""
    monkeypatch.setenv("ARTNET_FEATURE_CACHE", str(tmp_path / "cache"))
    folder = write_synthetic_folder(tmp_path / "paintings", 240, authors=60)
    return tiny_cached_config(
        folder,
        tiny_weights,
        {"feature_views": 1},
        optimizer="adam",
        learning_rate=0.01,
        epochs=3,
        head_epochs=3,
        unfreeze="none",
        early_stopping_patience=0,
        calibration_folds=FOLDS,
        **fields,
    )


def test_a_painter_lies_in_one_fold_and_unnamed_painters_are_refused():
    painters = [f"painter {i % 23}" for i in range(200)]
    source = Source(
        "s", images=None, labels={"school": np.zeros(200, np.int64)}, meta=[{"author": p} for p in painters]
    )
    folds = cross_fit.painter_folds(source, 5)
    assert set(folds) == set(range(5))
    for painter in set(painters):
        assert len(set(folds[np.asarray(painters) == painter])) == 1
    np.testing.assert_array_equal(cross_fit.painter_folds(source, 5), folds)  # stable
    unnamed = Source("u", images=None, labels={"school": np.zeros(3, np.int64)}, meta=[{"author": "a"}, {}, {}])
    with pytest.raises(ValueError, match="name none.*calibration_folds=0"):
        cross_fit.painter_folds(unnamed, 5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"calibration_folds": 1}, "0 .validation alone. or at least 2"),
        ({"calibration_folds": -2}, "at least 2"),
        ({"calibration_folds": 5, "backbone_weights": None}, "from the feature cache"),
    ],
)
def test_impossible_fold_counts_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data=DataConfig(feature_views=1), **fields)
    with pytest.raises(ValueError, match="from the feature cache"):
        TrainConfig(calibration_folds=5, data=DataConfig(feature_views=0))


def test_each_answer_comes_from_a_model_that_never_saw_its_painter(tmp_path, tiny_weights, monkeypatch):
    config = cached_config(tmp_path, tiny_weights, monkeypatch)
    sources = load_sources(config)
    train = sources["train"]
    trained_on = []
    real_fit = cross_fit.fit_from_cache

    def recording_fit(model, config, kept, tables, workdir):
        trained_on.append(set(kept["train"].painters))
        return real_fit(model, config, kept, tables, workdir)

    monkeypatch.setattr(cross_fit, "fit_from_cache", recording_fit)
    workdir = Workdir(tmp_path / "run")
    answers = cross_fit.out_of_fold_predictions(config, sources, workdir)
    assert len(trained_on) == FOLDS
    folds = answers[cross_fit.FOLD]
    for fold, painters in enumerate(trained_on):
        held_out = set(train.painters[folds == fold])
        assert held_out and not held_out & painters  # the fold model never saw the painters it answers for
        assert painters | held_out == set(train.painters)
    for head in labels.HEADS:
        assert answers[head].shape == (len(train), len(labels.VOCABULARIES[head]))
        np.testing.assert_allclose(answers[head].sum(axis=1), 1.0, atol=1e-4)  # every row answered
        np.testing.assert_array_equal(answers[f"{head}_true"], train.labels[head])
    assert workdir.out_of_fold.is_file() and not (workdir.root / "calibration_folds").exists()

    # A rerun reads them back instead of training again.
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(cross_fit, "train_without", no_training)
    again = cross_fit.out_of_fold_predictions(config, sources, workdir)
    for head in labels.HEADS:
        np.testing.assert_array_equal(again[head], answers[head])

    # A damaged file is named and made again.
    workdir.out_of_fold.write_bytes(b"not an npz")
    monkeypatch.setattr(cross_fit, "train_without", lambda *a: (_ for _ in ()).throw(RuntimeError("retrained")))
    with pytest.raises(RuntimeError, match="retrained"):
        cross_fit.out_of_fold_predictions(config, sources, workdir)


def test_a_run_calibrates_on_validation_and_the_out_of_fold_answers(tmp_path, tiny_weights, monkeypatch, capsys):
    from artnet.run import run_experiment

    config = cached_config(tmp_path, tiny_weights, monkeypatch, heads=("school", "type"))
    result = run_experiment(config, tmp_path / "run", similarity_index=False)
    sources = load_sources(config)
    calibration = calibration_from_json(json.loads(result.workdir.export.calibration.read_text()))
    for head in ("school", "type"):
        known = (sources["train"].labels[head] >= 0).sum() + (sources["validation"].labels[head] >= 0).sum()
        assert calibration[head].sets.n == known  # both splits' answers, every known label
    assert "answers about" in capsys.readouterr().out
    card = json.loads(result.workdir.export.card.read_text())
    assert card["calibration_folds"] == FOLDS
    readme = (result.workdir.export.root / "README.md").read_text()
    assert f"from {FOLDS} models each trained without their fold of painters" in readme


def test_artnet_calibrate_refits_a_finished_run_and_says_what_it_was_fitted_on(
    tmp_path, tiny_weights, monkeypatch, capsys
):
    """Validation alone first, then cross-fitted by `artnet calibrate`: the served model is the same, the
    calibration is fitted on more answers, the test report and the card follow, and back again with --folds 0."""
    import dataclasses

    from artnet.cli import main
    from artnet.run import run_experiment

    config = dataclasses.replace(
        cached_config(tmp_path, tiny_weights, monkeypatch, heads=("school",)), calibration_folds=0
    )
    result = run_experiment(config, tmp_path / "run", similarity_index=False)
    files = result.workdir.export

    def served():
        return calibration_from_json(json.loads(files.calibration.read_text()))["school"]

    alone = served()
    model_bytes = result.workdir.model.read_bytes()
    assert main(["calibrate", "--workdir", str(result.workdir.root), "--folds", str(FOLDS)]) == 0
    printed = capsys.readouterr().out
    assert "school: test coverage" in printed and "re-exported" in printed
    crossed = served()
    train_known = (load_sources(config)["train"].labels["school"] >= 0).sum()
    assert crossed.sets.n == alone.sets.n + train_known
    assert result.workdir.model.read_bytes() == model_bytes  # the served model was not trained again
    report = json.loads(result.workdir.test_evaluation.report_json.read_text())
    assert report["calibration"]["school"]["temperature"] == pytest.approx(crossed.temperature)
    assert f"from {FOLDS} models each trained without" in (files.root / "README.md").read_text()

    assert main(["calibrate", "--workdir", str(result.workdir.root), "--folds", "0"]) == 0
    assert served().sets.n == alone.sets.n
    readme = (files.root / "README.md").read_text()
    assert "calibrated on the validation paintings" in readme and "models each trained without" not in readme


def test_artnet_calibrate_refuses_an_unfinished_run(tmp_path, capsys):
    from artnet.cli import main

    assert main(["calibrate", "--workdir", str(tmp_path / "nothing")]) == 2
    assert "is not a finished run: train it first" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_fold_models_are_probes_where_the_run_undid_its_fine_tuning(tmp_path):
    """The fold models stand in for the served model: heads only when LP-FT's verdict (probe.json) undid the
    run's fine-tuning, the run's own recipe otherwise; and stored answers of the other recipe are not reused."""
    config = TrainConfig(heads_from="probe", unfreeze="block7a_expand_conv", data=DataConfig(feature_views=1))
    workdir = Workdir(tmp_path / "run")
    workdir.root.mkdir()
    assert cross_fit.fold_recipe(config, workdir).unfreeze == "block7a_expand_conv"  # no verdict yet
    workdir.probe_choices.write_text(json.dumps({"fine_tune": {"kept": False}}))
    assert cross_fit.fold_recipe(config, workdir).unfreeze == "none"
    workdir.probe_choices.write_text(json.dumps({"fine_tune": {"kept": True}}))
    assert cross_fit.fold_recipe(config, workdir).unfreeze == "block7a_expand_conv"
    epochs = TrainConfig(heads_from="epochs", unfreeze="all", data=DataConfig(feature_views=1))
    assert cross_fit.fold_recipe(epochs, workdir).unfreeze == "all"  # no LP-FT, no verdict to follow

    folds = np.arange(6) % 2
    heads = {head: np.full((6, len(labels.VOCABULARIES[head])), 0.1) for head in config.heads}
    np.savez(workdir.out_of_fold, **heads, fold=folds, unfreeze=np.asarray("none"))
    assert cross_fit.read_out_of_fold(workdir, dataclasses.replace(config, unfreeze="none"), folds) is not None
    assert cross_fit.read_out_of_fold(workdir, config, folds) is None  # made by probes: not this recipe's
