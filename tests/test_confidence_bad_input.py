"""Bad input to honest confidence: a crafted calibration.json is refused naming the file, a coverage outside (0, 1)
is refused wherever one is given, an export without calibration serves as before and says "uncalibrated", and
the temperature is applied exactly once on the way to the demo's answer."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from artnet import labels
from artnet.evaluation import conformal
from artnet.evaluation.calibration import HeadCalibration, calibrate_heads, calibration_to_json
from artnet.evaluation.conformal import ConformalSets
from artnet.models.artnet import ArtNet
from artnet.serving.backend import DemoBackend
from artnet.serving.export import export
from artnet.serving.files import ExportError
from artnet.serving.predictor import SETS, Predictor, read_calibration
from artnet.workdir import Export

# T well away from 1, so that applying it twice (softmax(z / T^2)) differs measurably from once.
T = 0.25
CALIBRATION = {head: HeadCalibration(T, ConformalSets("aps", 0.9, 0.9, 300)) for head in labels.HEADS}
GOOD = calibration_to_json(CALIBRATION)


def _crafted(**changes) -> dict:
    """The good record with one head's fields changed (a key with value None is deleted)."""
    record = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        node = record
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return record


CRAFTED = {
    "a list, not an object": [1, 2],
    "an unknown head": {**GOOD, "painter": GOOD["school"]},
    "a NaN temperature": _crafted(school__temperature=math.nan),
    "a zero temperature": _crafted(school__temperature=0),
    "a negative temperature": _crafted(type__temperature=-1.5),
    "an infinite temperature": _crafted(type__temperature=math.inf),
    "a text temperature": _crafted(school__temperature="2"),
    "a boolean temperature": _crafted(school__temperature=True),
    "no temperature": {"school": {"conformal": GOOD["school"]["conformal"]}},
    "a head that is a number": {"school": 3},
    "qhat below 0": _crafted(school__conformal__qhat=-0.1),
    "qhat above every score": _crafted(school__conformal__qhat=1.5),
    "a text qhat": _crafted(school__conformal__qhat="0.5"),
    "coverage 1": _crafted(timeframe__conformal__coverage=1.0),
    "coverage 0": _crafted(timeframe__conformal__coverage=0),
    "an unknown method": _crafted(school__conformal__method="lac"),
    "a negative n": _crafted(school__conformal__n=-3),
    "a fractional k_reg": _crafted(school__conformal__k_reg=0.5),
}


def _write(folder: Path, record) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # allow_nan: the crafted file holds what json.loads would read back (NaN, Infinity), as an attacker could.
    Export(folder).calibration.write_text(json.dumps(record, allow_nan=True))
    return folder


def test_a_sound_calibration_reads_back(tmp_path):
    assert read_calibration(_write(tmp_path, GOOD)) == CALIBRATION
    assert read_calibration(tmp_path / "nothing") is None


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_calibration_is_refused_naming_the_file(tmp_path, case):
    folder = _write(tmp_path / "export", CRAFTED[case])
    with pytest.raises(ExportError, match=r"calibration\.json in the export .*export the model again"):
        read_calibration(folder)


def test_qhat_may_reach_the_raps_penalty_but_no_further(tmp_path):
    sets = {"method": "raps", "coverage": 0.9, "n": 100, "lam": 0.1, "k_reg": 1}
    highest = 1 + 0.1 * (len(labels.VOCABULARIES["school"]) - 1)  # every class beyond the first pays lam
    reachable = {"school": {"temperature": 1.0, "conformal": {**sets, "qhat": highest}}}
    assert read_calibration(_write(tmp_path / "a", reachable))["school"].sets.qhat == pytest.approx(highest)
    beyond = {"school": {"temperature": 1.0, "conformal": {**sets, "qhat": highest + 0.01}}}
    with pytest.raises(ExportError, match="qhat must lie in"):
        read_calibration(_write(tmp_path / "b", beyond))


def test_a_calibration_that_links_out_of_the_export_is_refused(tmp_path):
    outside = _write(tmp_path / "elsewhere", GOOD)
    folder = tmp_path / "export"
    folder.mkdir()
    Export(folder).calibration.symlink_to(Export(outside).calibration)
    with pytest.raises(ExportError, match="calibration.json in the export .* links out of it"):
        read_calibration(folder)


@pytest.mark.parametrize("coverage", [0, 1, 1.5, -0.1, math.nan, True, "ninety"])
def test_a_coverage_outside_0_1_is_refused_with_a_clear_message(coverage):
    probs = np.full((10, 6), 1 / 6)
    y = np.arange(10) % 6
    with pytest.raises(ValueError, match=r"coverage must be a fraction strictly between 0 and 1 \(e\.g\. 0\.9"):
        conformal.fit_conformal(probs, y, coverage)
    with pytest.raises(ValueError, match="coverage must be a fraction strictly between 0 and 1"):
        calibrate_heads({"school": probs}, {"school": y}, coverage)
    assert conformal.check_coverage(0.9) == 0.9


# --- an export, served ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = ArtNet(backbone="tiny", backbone_weights=None, image_size=32)
    root = tmp_path_factory.mktemp("exports")
    return export(model, root / "calibrated", calibration=CALIBRATION), export(model, root / "plain")


@pytest.fixture(scope="module")
def painting(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "painting.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def _softmax_once(probabilities: np.ndarray) -> np.ndarray:
    """softmax(logits / T), written out here and not through artnet: log p is the logits up to a constant."""
    z = np.log(probabilities.astype(np.float64)) / T
    z -= z.max()
    return np.exp(z) / np.exp(z).sum()


def test_the_temperature_is_applied_once_all_the_way_to_the_demo(exports, painting):
    calibrated, plain = exports
    raw = Predictor(plain, top_k=100, locate_painting=False).predict(painting)
    served = DemoBackend(calibrated, top_k=100)
    answer = served.classify(str(painting), whole_image=True)
    for head in labels.HEADS:
        names = labels.VOCABULARIES[head]
        before = np.array([dict(raw[head])[name] for name in names])
        once, twice = _softmax_once(before), _softmax_once(_softmax_once(before))
        shown = np.array([answer.labels[head].get(name, 0.0) for name in names])
        top = np.argsort(-once)[:100]
        # The answer shows the top classes (top_k): each equals softmax(z / T), applied once.
        np.testing.assert_allclose(shown[top], once[top], atol=1e-5)
        assert np.abs(once - twice).max() > 1e-3  # twice would have been caught
        assert np.abs(once - before).max() > 1e-3  # and so would never
        assert "% set" in answer.titles[head] or "cannot tell" in answer.titles[head]


def test_an_export_without_calibration_serves_as_before_and_says_uncalibrated(exports, painting):
    calibrated, plain = exports
    backend = DemoBackend(plain)
    answer = backend.classify(str(painting), whole_image=True)
    assert SETS not in backend.predictor.predict(painting)
    assert all("% set" not in title for title in answer.titles.values())
    from artnet.serving.cards import model_card_markdown

    assert "**Calibration:** uncalibrated" in model_card_markdown(backend.card)
    assert "**Calibration:** calibrated" in model_card_markdown(DemoBackend(calibrated).card)


def test_a_served_export_with_a_crafted_calibration_is_refused(exports, tmp_path):
    calibrated, _ = exports
    copy = shutil.copytree(calibrated, tmp_path / "export")
    Export(copy).calibration.write_text(json.dumps(_crafted(school__temperature=-1)))
    with pytest.raises(ExportError, match=r"calibration\.json in the export .*temperature must be a finite number > 0"):
        Predictor(copy)
    with pytest.raises(ExportError, match=r"calibration\.json"):
        DemoBackend(copy)
