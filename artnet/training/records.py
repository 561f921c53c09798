"""The run's records in its workdir: the Keras callbacks that log and checkpoint each epoch, and what a run
writes at its start (label counts) and at its end (the final model and its summary).

One home for everything a run leaves behind, so that the fit path, artnet's own loop, the feature cache and the
probe arm write the same files the same way (names in `artnet.workdir.Workdir`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import keras
import numpy as np

from artnet import labels
from artnet.config import TrainConfig
from artnet.data.sources import Source
from artnet.models.artnet import ArtNet
from artnet.training.errors import TrainingError
from artnet.workdir import Workdir


class JsonLines(keras.callbacks.Callback):
    """One JSON line of metrics per epoch, with phase and wall time."""

    def __init__(self, path: Path, phase: str):
        super().__init__()
        self.path, self.phase = Path(path), phase
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "phase": self.phase, "seconds": round(time.monotonic() - self._started, 2)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")


def fit_callbacks(workdir: Workdir | Path, phase: str, config: TrainConfig) -> list[keras.callbacks.Callback]:
    """The Keras fit path's callbacks: resumable state, best.keras, NaN guard, the epoch records, TensorBoard."""
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    callbacks = [
        keras.callbacks.BackupAndRestore(
            str(workdir.backup(phase)),
            save_freq=config.backup_every_steps or "epoch",
            double_checkpoint=True,  # a state cut short by a kill falls back to the previous one
            delete_checkpoint=False,
        ),
        # A new callback per phase and per process: seed it with the best so far, or the first epoch of each
        # phase (and of each resumed run) would overwrite best.keras whatever its loss.
        keras.callbacks.ModelCheckpoint(
            str(workdir.best_model),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_validation_loss(workdir),
        ),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(workdir.metrics_csv), append=True),
        JsonLines(workdir.metrics_jsonl, phase),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    try:
        import tensorboard  # noqa: F401  (optional: TF 2.21 no longer brings it)

        callbacks.append(keras.callbacks.TensorBoard(str(workdir.tensorboard), write_graph=False))
    except ImportError:
        pass
    return callbacks


def best_validation_loss(workdir: Workdir | Path) -> float | None:
    """The lowest val_loss logged in `workdir`, if best.keras holds it (else None: any epoch may save)."""
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    log = workdir.metrics_jsonl
    if not workdir.best_model.is_file() or not log.is_file():
        return None
    losses = []
    for line in log.read_text().splitlines():
        try:
            losses.append(float(json.loads(line)["val_loss"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill, or an epoch without validation
    return min(losses, default=None)


def check_backup(backup_dir: Path) -> None:
    """Refuse, with what to do, a backup that BackupAndRestore could not read (and has no older copy of)."""
    latest = backup_dir / "latest.weights.h5"
    if not latest.exists() or Path(f"{latest}.bkp").exists():
        return  # nothing to resume, or Keras falls back to the previous copy itself
    try:
        with h5py.File(latest, "r"):
            pass
    except OSError as error:
        raise TrainingError(
            f"the resume state {latest} is unreadable ({error}); it was probably cut short when a run was killed "
            f"while writing it. Delete {backup_dir} to restart this phase from its beginning (earlier phases and "
            "best.keras are kept)."
        ) from error


def label_counts(source: Source) -> dict[str, list[int]]:
    return {
        head: np.bincount(values[values >= 0], minlength=len(labels.VOCABULARIES[head])).tolist()
        for head, values in source.labels.items()
    }


def write_label_counts(workdir: Workdir, train: Source) -> dict[str, list[int]]:
    """The training split's counts per head and class, saved in the workdir (majority baselines, model card)."""
    counts = label_counts(train)
    years = train.years[train.years >= 0]
    year_mean = round(float(years.mean()), 1) if len(years) else None  # the year head's constant-answer baseline
    record = {"train_examples": len(train), "counts": counts, "source": train.name, "year_mean": year_mean}
    workdir.label_counts.write_text(json.dumps(record))
    return counts


def finish(model: ArtNet, workdir: Workdir, started: float, summary: dict, write: bool = True) -> ArtNet:
    """Save the final model and the run's summary (wall time, size, hardware) into the workdir (`write`: the chief
    of a multi-worker job; the other workers only return the model)."""
    if not write:
        return model
    model.save(str(workdir.model))
    seconds = {"seconds": round(time.monotonic() - started, 1), "parameters": int(model.count_params())}
    workdir.train_summary.write_text(json.dumps({**seconds, **summary}))
    return model
