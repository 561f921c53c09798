"""A real kill: `artnet train` SIGKILLed once its first checkpoint is on disk, then the same command again.

No callback stands in for the kill here (tests/test_training.py does that): the process dies as it would under an
out-of-memory killer or a pre-empted machine, wherever it happens to be. The rerun must resume after the checkpoint,
not restart, and finish with the model, the test report and the per-epoch validation losses of a run that was never
interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
RUN_TIMEOUT = 600  # seconds: a deadline for a run that hangs, far above what one takes


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A recipe file for a small labelled folder and the tiny backbone, through Keras fit on one machine.

    Bit-for-bit reproducible by construction, so that "equals an uninterrupted run" can be asserted: the seed is
    fixed (the config's, set before the model is built), `shuffle_buffer=1` keeps the folder's order (tf.data's
    per-epoch reshuffle starts again from its first order in a new process, so a resumed run would see other
    batches than an uninterrupted one) and dropout is off (its random masks are not part of the checkpoint).
    """
    from artnet.data.synthetic import write_synthetic_folder

    folder = write_synthetic_folder(tmp_path_factory.mktemp("paintings"), 160, authors=32)
    path = tmp_path_factory.mktemp("recipe") / "killable.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from artnet.testing.configs import tiny_config

            def get_config(arg=None):
                return tiny_config(
                    data={{"source": "folder", "folder": {str(folder)!r}, "shuffle_buffer": 1}},
                    dropout=0.0,
                    epochs={EPOCHS},
                    strategy="none",
                    loop="keras",
                    precision="float32",
                )
            """
        )
    )
    return path


def train_command(recipe: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "artnet.cli", "train", "--config", str(recipe), "--workdir", str(workdir)]


def start(command: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "w") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def val_losses(workdir: Path) -> dict[int, float]:
    """{epoch: val_loss} of metrics.jsonl (a line cut short by the kill is skipped)."""
    losses = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        losses[record["epoch"]] = record["val_loss"]
    return losses


def test_a_sigkilled_training_run_resumes_and_ends_as_an_uninterrupted_one(recipe, tmp_path):
    from artnet.serving.export import load_model

    # The uninterrupted run, alongside the killed one (the results do not depend on the load: same thread pools).
    reference = start(train_command(recipe, tmp_path / "reference"), tmp_path / "reference.log")
    workdir = tmp_path / "killed"
    victim = start(train_command(recipe, workdir), tmp_path / "killed.log")
    try:
        # Keras' BackupAndRestore writes the weights, then this file: once it is there, epoch N is checkpointed.
        state = workdir / "backup" / "fine_tune" / "training_metadata.json"
        deadline = time.monotonic() + RUN_TIMEOUT
        while not state.is_file():
            assert victim.poll() is None, (
                f"the run ended before its first checkpoint:\n{(tmp_path / 'killed.log').read_text()}"
            )
            assert time.monotonic() < deadline, "no checkpoint within the deadline"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL  # killed, not finished
    finally:
        if victim.poll() is None:
            victim.kill()
    checkpointed = json.loads(state.read_text())["epoch"]
    assert 1 <= checkpointed < EPOCHS
    assert not (workdir / "model.keras").exists() and not (workdir / "export").exists()

    resumed = subprocess.run(
        train_command(recipe, workdir),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=RUN_TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert reference.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "reference.log").read_text()[-4000:]

    # It resumed after the checkpoint: the rerun trained only the epochs after it.
    trained = [int(line.split()[1].split("/")[0]) for line in resumed.stdout.splitlines() if line.startswith("Epoch ")]
    assert trained == list(range(checkpointed + 1, EPOCHS + 1)), resumed.stdout[-3000:]

    # And ended where the uninterrupted run ended. Both runs are deterministic (see `recipe`): on one machine the
    # results are bit-identical, which is what was seen here. The tolerance, 1e-6, leaves room only for float
    # re-association; a resume that lost the optimizer's moments, repeated or skipped an epoch or restarted from
    # the initial weights moves the weights by orders of magnitude more (1e-2 and above after a few Adam steps).
    reference_dir = tmp_path / "reference"
    expected_losses, losses = val_losses(reference_dir), val_losses(workdir)
    assert sorted(expected_losses) == list(range(1, EPOCHS + 1))
    for epoch in range(checkpointed + 1, EPOCHS + 1):
        assert losses[epoch] == pytest.approx(expected_losses[epoch], abs=1e-6), epoch
    expected_model, model = load_model(reference_dir / "model.keras"), load_model(workdir / "model.keras")
    for expected_weight, weight in zip(expected_model.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(weight, expected_weight, rtol=0, atol=1e-6)
    expected_report = json.loads((reference_dir / "eval_test" / "report.json").read_text())
    report = json.loads((workdir / "eval_test" / "report.json").read_text())
    for head, metrics in expected_report["heads"].items():
        assert report["heads"][head]["n"] == metrics["n"]
        for key in ("top1", "top3", "balanced_accuracy"):
            assert report["heads"][head][key] == pytest.approx(metrics[key], abs=1e-9), (head, key)
        assert report["heads"][head]["ece"] == pytest.approx(metrics["ece"], abs=1e-5), head
    assert (workdir / "export" / "saved_model" / "saved_model.pb").is_file()
