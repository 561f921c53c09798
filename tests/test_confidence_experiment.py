"""experiments/calibration.py end to end on a tiny synthetic run: it reads the run's export and test predictions
(never retrains), photographs test paintings, and writes its table with the baselines beside."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from artnet import labels

ROOT = Path(__file__).resolve().parents[1]


def _experiment():
    spec = importlib.util.spec_from_file_location("calibration_experiment", ROOT / "experiments" / "calibration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_experiment_scores_a_finished_run_and_its_photos(tmp_path):
    from artnet.data.synthetic import write_synthetic_folder
    from artnet.run import run_experiment
    from artnet.testing.configs import tiny_config

    folder = write_synthetic_folder(tmp_path / "paintings", 120)
    config = tiny_config(epochs=1, data={"source": "folder", "folder": str(folder)})
    run = run_experiment(config, tmp_path / "run", similarity_index=False).workdir
    model_time = run.export.model.stat().st_mtime

    experiment = _experiment()
    out = tmp_path / "results"
    argv = ["--run", str(run.root), "--folder", str(folder), "--photos", "4", "--out", str(out)]
    assert experiment.main(argv) == 0
    with (out / "calibration.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    benchmarks = {row["benchmark"] for row in rows}
    assert benchmarks == {"test", "test paintings, clean", "test paintings as photos (photo step)"}
    for row in rows:
        assert row["head"] in labels.HEADS
        assert 0 <= float(row["coverage"]) <= 1 and float(row["coverage_target"]) == 0.9
        assert 1 <= float(row["mean_set_size"]) <= len(labels.VOCABULARIES[row["head"]])
        assert float(row["chance"]) == pytest.approx(1 / len(labels.VOCABULARIES[row["head"]]))
        assert float(row["aurc_oracle"]) <= float(row["aurc"]) + 1e-12
    text = (out / "calibration.md").read_text()
    assert "experiments/calibration.py --run" in text and "## What the answer says" in text
    assert "## How far coverage moves with the painters (validation only)" in text
    assert run.export.model.stat().st_mtime == model_time  # read, never retrained or re-exported
    assert (run.root / "calibration_photos.npz").is_file()  # the photos' answers, cached for a rerun
    assert {row["calibration"] for row in rows} == {"validation"}
    assert "the export serves the `validation` calibration" in text

    # With out-of-fold answers in the run (as `artnet calibrate --folds` leaves them), both calibrations are
    # scored side by side on every benchmark; here the validation answers stand in for them.
    import numpy as np

    with np.load(run.validation_evaluation.predictions) as saved:
        stand_in = {key: saved[key] for key in saved.files}
    np.savez(run.out_of_fold, **stand_in, fold=np.arange(len(stand_in["painter"])) % 2)
    assert experiment.main(argv) == 0
    with (out / "calibration.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {(row["benchmark"], row["calibration"]) for row in rows} == {
        (benchmark, name) for benchmark in benchmarks for name in ("validation", "validation + 2 folds")
    }

    Path(run.export.calibration).unlink()  # an uncalibrated export: nothing to measure, said so
    with pytest.raises(SystemExit):
        experiment.main(argv)
