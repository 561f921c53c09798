"""The run's records in its workdir: the Keras callbacks that log and checkpoint each epoch, and what a run
writes at its start (label counts) and at its end (the final model and its summary).

One home for everything a run leaves behind, so that the fit path, artnet's own loop, the feature cache and the
probe arm write the same files the same way (names in `artnet.workdir.Workdir`). What a later run reads back
(the resume state, `best.keras`, the final model, the JSON records) is written whole or not at all
(`artnet.data.atomic_files`) and checked when read (`artnet.training.checked_files`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import h5py
import keras
import numpy as np

from artnet import labels
from artnet.config import TrainConfig
from artnet.data.atomic_files import atomic_path, remove_stale_parts, write_atomically
from artnet.data.sources import Source
from artnet.models.artnet import ArtNet
from artnet.training.checked_files import h5_problem, keras_archive_problem, model_state, restore_state, warn
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
        ResumeState(
            str(workdir.backup(phase)),
            save_freq=config.backup_every_steps or "epoch",
            double_checkpoint=True,  # a state cut short falls back to the previous one
            delete_checkpoint=False,
        ),
        # A new callback per phase and per process: seed it with the best so far, or the first epoch of each
        # phase (and of each resumed run) would overwrite best.keras whatever its loss.
        BestModel(
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
    if not check_best_model(workdir) or not log.is_file():
        return None
    losses = []
    for line in log.read_text().splitlines():
        try:
            losses.append(float(json.loads(line)["val_loss"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill, or an epoch without validation
    return min(losses, default=None)


def check_best_model(workdir: Workdir) -> bool:
    """Whether `best.keras` is there and whole. A bad one (an archive cut short, a file that is no model) is
    named in one line and deleted: the next epoch that improves on the logged best writes it again."""
    path = workdir.best_model
    if not path.is_file():
        return False
    problem = keras_archive_problem(path)
    if problem is None:
        return True
    warn(f"{path} is unreadable ({problem}); it is deleted and the next best epoch writes it again")
    path.unlink(missing_ok=True)
    return False


def tidy_workdir(workdir: Workdir) -> None:
    """What the chief does before a run (re)starts in `workdir`: sweep the temporary files of writers that were
    killed (`atomic_files.remove_stale_parts`), and let no bad `best.keras` stand."""
    remove_stale_parts(workdir.root)
    check_best_model(workdir)


class BestModel(keras.callbacks.ModelCheckpoint):
    """Keras' ModelCheckpoint (here: the best model by validation loss), written whole or not at all: Keras
    writes the archive in place, so a kill while it is written would leave half a `best.keras`."""

    def _save_model(self, epoch, batch, logs):  # Keras 3's hook, which writes in place
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            with atomic_path(filepath) as partial:
                self.model.save(str(partial), overwrite=True)


STAMP = "artnet_resume_stamp"  # an attribute of the weights file: which record it goes with


def _stamp(path: Path) -> str:
    """Give the weights file at `path` a fresh random stamp (a root attribute, which Keras' load ignores) and
    return it: its record names it, so that a record and its weights are recognised wherever a rename, a copy
    or a restore has put them."""
    stamp = secrets.token_hex(8)
    with h5py.File(path, "r+") as handle:
        handle.attrs[STAMP] = stamp
    return stamp


def _stamp_of(path: Path) -> str | None:
    try:
        with h5py.File(path, "r") as handle:
            stamp = handle.attrs.get(STAMP)
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
    return stamp.decode() if isinstance(stamp, bytes) else stamp


class ResumeState(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (the training state at each epoch's end, two copies kept), with each copy written
    whole or not at all and checked before it is restored.

    Keras writes `latest.weights.h5` and `training_metadata.json` in place, each first copied to `.bkp`: a kill
    mid-write leaves a file cut short (a metadata file cut short stops every rerun), and a kill between the two
    leaves the weights of one epoch with the epoch number of another. Here the previous copy is renamed to `.bkp`,
    the new files are written through `atomic_files`, and the metadata names the weights file it goes with (a
    random `_stamp` written into it). At the start the newest copy whose metadata reads, whose weights read back
    whole and which belong together is restored; anything else is named in one line, and with no good copy left
    the phase starts from its beginning.
    """

    def _paths(self) -> tuple[Path, Path, Path, Path]:
        return (
            Path(self._weights_path),
            Path(self._training_metadata_path),
            Path(self._prev_weights_path),
            Path(self._prev_training_metadata_path),
        )

    def _save_model(self):  # Keras 3's hook: called at each epoch's end (and every `save_freq` steps)
        weights, metadata, previous_weights, previous_metadata = self._paths()
        weights.parent.mkdir(parents=True, exist_ok=True)
        if self.double_checkpoint and self._weights_of(metadata, (weights,), default=weights) == weights:
            os.replace(weights, previous_weights)  # a rename: nothing is copied, nothing can be cut short
            os.replace(metadata, previous_metadata)
        with atomic_path(weights) as partial:
            self.model.save_weights(str(partial), overwrite=True)
            stamp = _stamp(partial)
        record = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": stamp}
        write_atomically(metadata, json.dumps(record).encode())

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError("ResumeState needs a built model (call it on a batch before fit), as BackupAndRestore")
        weights, metadata, previous_weights, previous_metadata = self._paths()
        remove_stale_parts(weights.parent, recursive=False)
        every = [weights, metadata, previous_weights, previous_metadata]
        if not any(path.exists() for path in every):
            return  # nothing to resume: the phase starts from its beginning
        candidates = []  # (epoch, weights, metadata): the copies whose metadata reads
        for record_path, own_weights in ((metadata, weights), (previous_metadata, previous_weights)):
            record = self._record(record_path)
            if record is None:
                continue
            found = self._weights_of(record_path, (weights, previous_weights), default=own_weights)
            if found is None:
                warn(f"{record_path} goes with no weights file there (cut short, changed or never written); skipped")
                continue
            candidates.append((record["epoch"], found, record_path))
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables exist before a load fills them
        for epoch, found, record_path in sorted(candidates, key=lambda item: -item[0]):
            problem = h5_problem(found)
            if problem is None:
                if found != weights:  # Keras loads only a `.weights.h5` name: the copy takes the latest's place
                    os.replace(found, weights)
                    os.replace(record_path, metadata)
                state = model_state(self.model)
                try:
                    self.model.load_weights(str(weights))
                except (OSError, ValueError, KeyError) as error:
                    restore_state(state)
                    problem = f"{type(error).__name__}: {error}"
            if problem is None:
                self.model._initial_epoch = epoch  # what Keras' fit resumes from, as BackupAndRestore sets it
                return
            warn(f"{found} (the resume state of epoch {epoch}) is unreadable ({problem}); trying the copy before it")
        warn(f"no readable resume state in {weights.parent}: this phase starts again from its first epoch")
        for path in every:
            path.unlink(missing_ok=True)

    @staticmethod
    def _record(path: Path) -> dict | None:
        """The metadata at `path` if it reads as a resume record, else None (named in one line if it exists)."""
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] >= 0:
                return record
            problem = "no epoch in it"
        except (OSError, ValueError) as error:
            problem = f"{type(error).__name__}: {error}"
        warn(f"{path} is unreadable ({problem}); skipped")
        return None

    @staticmethod
    def _weights_of(record_path: Path, choices: tuple[Path, ...], default: Path | None = None) -> Path | None:
        """Which of `choices` the record at `record_path` goes with: the one with its stamp, or `default` for a
        record that names none (written by Keras' own BackupAndRestore, before this class)."""
        try:
            named = json.loads(record_path.read_text()).get("weights")
        except (OSError, ValueError, AttributeError):
            return None
        if named is None:
            return default if default is not None and default.is_file() else None
        return next((path for path in choices if path.is_file() and _stamp_of(path) == named), None)


def check_backup(backup_dir: Path) -> bool:
    """Whether the resume state in `backup_dir` has a copy that reads back whole (or there is none: nothing to
    resume). It no longer refuses: `ResumeState` checks the same when a phase starts and falls back to the copy
    before, or starts the phase again, with a one-line warning. Kept for the import path CHANGELOG.md promises."""
    state = ResumeState(str(backup_dir))
    weights, metadata, previous_weights, previous_metadata = state._paths()
    if not any(path.exists() for path in (weights, metadata, previous_weights, previous_metadata)):
        return True
    for record_path, own_weights in ((metadata, weights), (previous_metadata, previous_weights)):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        found = state._weights_of(record_path, (weights, previous_weights), default=own_weights)
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and found and not h5_problem(found):
            return True
    return False


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
    write_atomically(workdir.label_counts, json.dumps(record).encode())
    return counts


def finish(model: ArtNet, workdir: Workdir, started: float, summary: dict, write: bool = True) -> ArtNet:
    """Save the final model and the run's summary (wall time, size, hardware) into the workdir (`write`: the chief
    of a multi-worker job; the other workers only return the model)."""
    if not write:
        return model
    with atomic_path(workdir.model) as partial:
        model.save(str(partial))
    seconds = {"seconds": round(time.monotonic() - started, 1), "parameters": int(model.count_params())}
    write_atomically(workdir.train_summary, json.dumps({**seconds, **summary}).encode())
    return model
