"""Honest confidence, served: a run fits calibration on validation, the export stores it as calibration.json, the
predictor shows calibrated probabilities and per-head prediction sets, batch prediction writes the sets, and the
demo's note names them. An export without calibration.json serves exactly as before (no sets)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from artnet import labels
from artnet.evaluation.calibration import HeadCalibration, apply_temperature, calibration_from_json
from artnet.evaluation.conformal import ConformalSets, prediction_sets
from artnet.models.artnet import EMBEDDING, ArtNet
from artnet.serving.batch_predict import csv_columns, run_batch_prediction
from artnet.serving.cards import confidence_note
from artnet.serving.export import export
from artnet.serving.predictor import SETS, Predictor
from artnet.workdir import Export

ALL = 100  # a top_k beyond every vocabulary: the whole ranked distribution
# A hand-made calibration: T = 2 for every head, and a known qhat per head (APS).
CALIBRATION = {
    "school": HeadCalibration(2.0, ConformalSets("aps", 0.9, 0.5, 200)),
    "timeframe": HeadCalibration(2.0, ConformalSets("aps", 0.9, 0.3, 200)),
    "type": HeadCalibration(2.0, ConformalSets("aps", 0.9, 0.0, 200)),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = ArtNet(backbone="tiny", backbone_weights=None, image_size=32)
    root = tmp_path_factory.mktemp("exports")
    calibrated = export(model, root / "calibrated", calibration=CALIBRATION)
    plain = export(model, root / "plain")
    return model, calibrated, plain


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def distribution(prediction: dict, head: str) -> np.ndarray:
    """The head's probabilities in class order, from a ranking of every class."""
    names = labels.VOCABULARIES[head]
    assert len(prediction[head]) == len(names)
    vector = np.zeros(len(names))
    for label, probability in prediction[head]:
        vector[names.index(label)] = probability
    return vector


def test_the_export_stores_the_calibration_it_was_given(exports):
    _, calibrated, plain = exports
    stored = json.loads(Export(calibrated).calibration.read_text())
    assert calibration_from_json(stored) == CALIBRATION
    assert not Export(plain).calibration.exists()
    # The Hub card says what each serves, and lists no LiteRT file that was not written (no --litert here).
    calibrated_card, plain_card = ((folder / "README.md").read_text() for folder in (calibrated, plain))
    assert "**Calibration:** uncalibrated" in plain_card and "uncalibrated" not in calibrated_card
    assert "temperature" in calibrated_card and ".tflite" not in calibrated_card + plain_card


def test_the_predictor_serves_calibrated_probabilities_and_sets(exports, images):
    model, calibrated, plain = exports
    paths = sorted(images.iterdir())
    raw = Predictor(plain, top_k=ALL).predict_batch(paths)
    served = Predictor(calibrated, top_k=ALL).predict_batch(paths)
    explicit = Predictor(model, top_k=ALL, calibration=CALIBRATION).predict_batch(paths)
    from_json = Predictor(model, top_k=ALL, calibration={h: c.to_dict() for h, c in CALIBRATION.items()})
    sizes = []
    for before, after, given, other in zip(raw, served, explicit, from_json.predict_batch(paths), strict=True):
        assert SETS not in before
        for head in labels.HEADS:
            expected = apply_temperature(distribution(before, head)[np.newaxis], 2.0)
            assert distribution(after, head) == pytest.approx(expected[0], abs=1e-6)
            names = labels.VOCABULARIES[head]
            expected_set = [names[i] for i in prediction_sets(expected, CALIBRATION[head].sets)[0]]
            assert after[SETS][head] == expected_set
            assert after[SETS][head][0] == after[head][0][0]  # the set starts with the top-1 answer
            assert given[SETS][head] == other[SETS][head] == expected_set
            assert distribution(given, head) == pytest.approx(distribution(after, head), abs=1e-6)
            sizes.append(len(expected_set))
        np.testing.assert_allclose(after[EMBEDDING], before[EMBEDDING], rtol=1e-5, atol=1e-6)
    assert max(sizes) > 1 and min(sizes) == 1  # the qhats chosen give both kinds of set


def test_an_export_without_calibration_predicts_as_before(exports, images):
    model, _, plain = exports
    paths = sorted(images.iterdir())
    from_export = Predictor(plain).predict_batch(paths)
    from_model = Predictor(model).predict_batch(paths)
    for loaded, direct in zip(from_export, from_model, strict=True):
        assert list(loaded) == [*labels.HEADS, EMBEDDING, "outline", "found", "confidence"]
        for head in labels.HEADS:
            assert [label for label, _ in loaded[head]] == [label for label, _ in direct[head]]
            assert [p for _, p in loaded[head]] == pytest.approx([p for _, p in direct[head]], abs=1e-6)


def test_the_saved_model_serves_the_calibration_too(exports):
    """TF Serving gets the predictor's answer: calibrated probabilities, the raw softmax beside them, and each
    head's set as booleans; an uncalibrated export's signature is unchanged."""
    import tensorflow as tf

    from artnet.serving.calibrated_signature import RAW, SET

    _, calibrated, plain = exports
    rng = np.random.default_rng(3)
    images = tf.constant(rng.integers(0, 256, (16, 40, 56, 3), dtype=np.uint8))
    raw = tf.saved_model.load(str(Export(plain).saved_model)).signatures["serving_default"](images=images)
    served = tf.saved_model.load(str(Export(calibrated).saved_model)).signatures["serving_default"](images=images)
    assert set(raw) == set(labels.HEADS)
    assert set(served) == {f"{head}{suffix}" for head in labels.HEADS for suffix in ("", RAW, SET)}
    sizes = []
    for head in labels.HEADS:
        before = raw[head].numpy()
        np.testing.assert_allclose(served[f"{head}{RAW}"].numpy(), before, rtol=1e-6)
        expected = apply_temperature(before, 2.0)
        np.testing.assert_allclose(served[head].numpy(), expected, atol=1e-6)
        mask = served[f"{head}{SET}"].numpy()
        assert mask.dtype == bool and mask.shape == before.shape
        expected_sets = prediction_sets(expected, CALIBRATION[head].sets)
        assert [sorted(np.flatnonzero(row)) for row in mask] == [sorted(s) for s in expected_sets]
        sizes += [int(row.sum()) for row in mask]
    assert max(sizes) > 1 and min(sizes) == 1


def test_the_tensorflow_set_rule_is_numpys_on_ties_raps_and_every_class():
    """The signature's set rule against `conformal.prediction_set_mask`: tied probabilities, RAPS' penalty, a
    threshold of inf (every class) and of 0 (the top class alone)."""
    from artnet.evaluation.conformal import prediction_set_mask
    from artnet.serving.calibrated_signature import set_mask

    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.full(7, 0.7), size=300)
    probs[:20] = 1 / 7  # every class tied
    probs[20:40, :2] = probs[20:40, :2].mean(axis=1, keepdims=True)  # two tied at the top or below
    for rule in (
        ConformalSets("aps", 0.9, 0.8, 100),
        ConformalSets("raps", 0.9, 0.85, 100, lam=0.05, k_reg=1),
        ConformalSets("aps", 0.9, float("inf"), 3),
        ConformalSets("aps", 0.9, 0.0, 100),
    ):
        expected = prediction_set_mask(probs, rule)
        got = set_mask(probs, rule.qhat, rule.lam, rule.k_reg).numpy()
        np.testing.assert_array_equal(got, expected)
    assert got.sum(axis=1).tolist() == [1] * len(probs)  # qhat 0: the top class alone, the first of a tie


def test_batch_prediction_writes_the_sets(exports, images, tmp_path):
    _, calibrated, plain = exports
    predictor = Predictor(calibrated, top_k=2)
    expected = {Path(path).name: predictor.predict(path)[SETS] for path in sorted(images.iterdir())}

    out = tmp_path / "calibrated.csv"
    assert run_batch_prediction(predictor, [str(images)], str(out), top_k=2) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with out.open(newline="") as handle:
        assert next(csv.reader(handle)) == csv_columns(labels.HEADS, 2, sets=labels.HEADS)
    assert len(rows) == len(expected)
    for row in rows:
        for head in labels.HEADS:
            assert row[f"{head}_set"].split("|") == expected[Path(row["path"]).name][head]

    lines = tmp_path / "calibrated.jsonl"
    assert run_batch_prediction(predictor, [str(images)], str(lines), top_k=2) == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert {Path(record["path"]).name: record[SETS] for record in records} == expected

    plain_csv, plain_lines = tmp_path / "plain.csv", tmp_path / "plain.jsonl"
    assert run_batch_prediction(Predictor(plain, top_k=2), [str(images)], str(plain_csv), top_k=2) == 0
    with plain_csv.open(newline="") as handle:
        assert next(csv.reader(handle)) == csv_columns(labels.HEADS, 2)
    assert run_batch_prediction(Predictor(plain, top_k=2), [str(images)], str(plain_lines), top_k=2) == 0
    assert all(SETS not in json.loads(line) for line in plain_lines.read_text().splitlines())


def test_the_demo_note_names_the_sets_when_calibrated():
    heads = labels.HEADS
    dutch, flemish = labels.VOCABULARIES["school"].index("Dutch"), labels.VOCABULARIES["school"].index("Flemish")
    assert dutch >= 0 and flemish >= 0
    result = {head: [(labels.VOCABULARIES[head][0], 0.3)] for head in heads}
    result[SETS] = {
        "school": ["Dutch", "Flemish"],
        "timeframe": [labels.VOCABULARIES["timeframe"][0]],
        "type": [labels.VOCABULARIES["type"][0]],
    }
    note = confidence_note(heads, result, coverage=0.9)
    assert "school: Dutch or Flemish (90 % set)" in note
    assert f"timeframe: {labels.VOCABULARIES['timeframe'][0]} (90 % set)" in note
    assert "90 % of paintings" in note
    del result[SETS]  # no calibration: today's wording, from the fixed threshold
    assert confidence_note(heads, result).startswith("The model is unsure about school (")


def test_a_run_fits_calibration_on_validation_and_reports_it(tmp_path):
    from artnet.data.synthetic import write_synthetic_folder
    from artnet.run import run_experiment
    from artnet.testing.configs import tiny_config

    start = time.monotonic()
    folder = write_synthetic_folder(tmp_path / "paintings", 120)
    config = tiny_config(epochs=1, data={"source": "folder", "folder": str(folder)})
    result = run_experiment(config, tmp_path / "run", similarity_index=False)
    files = result.workdir
    assert files.validation_evaluation.exists()
    stored = calibration_from_json(json.loads(files.export.calibration.read_text()))
    assert set(stored) == set(config.heads)
    assert all(calibration.temperature > 0 and calibration.sets.coverage == 0.9 for calibration in stored.values())
    section = result.report["calibration"]
    assert set(section) == set(config.heads)
    for values in section.values():
        assert {"ece_before", "ece_after", "coverage", "mean_set_size"} <= set(values)
    assert json.loads(files.test_evaluation.report_json.read_text())["calibration"] == json.loads(json.dumps(section))
    assert "## Calibration and prediction sets" in files.test_evaluation.report_md.read_text()
    assert SETS in Predictor(files.export.root).predict(next(folder.rglob("*.jpg")))
    print(f"run_experiment with calibration: {time.monotonic() - start:.1f} s")
