"""What a run reads back from its workdir, checked before it is trusted.

A run writes what a later run reads (done markers, the best weights, `best.keras`, the resume state) through
`artnet.data.atomic_files`, so that a kill never leaves half a file. What it reads back may still be bad (written
by an older artnet in place, cut short by a full disk, copied in part, edited by hand): here each such file is
checked before use (an HDF5 file reads back whole, a `.keras` archive passes its checksums and holds a model), and
a bad one is named in one line on stderr (`warn`) and treated as absent, so that the caller recomputes what it held
or does without it. Never a traceback, never a run that cannot resume until someone deletes a file by hand.
"""

from __future__ import annotations

import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import keras

# The members of a Keras 3 `.keras` archive that loading needs.
KERAS_MEMBERS = ("config.json", "model.weights.h5")


def warn(message: str) -> None:
    """One line on stderr, whatever line breaks `message` (an error's text) holds."""
    print(f"artnet: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def _error_text(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


def h5_problem(path: Path) -> str | None:
    """None when `path` is an HDF5 file whose every dataset reads back whole, else what is wrong with it."""

    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]  # every byte of it: a file cut short fails here, not halfway through a load

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(read)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        return _error_text(error)
    return None


def keras_archive_problem(path: Path) -> str | None:
    """None when `path` is a `.keras` archive whose members pass their checksums and that holds a model."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        return _error_text(error)
    if damaged is not None:
        return f"its member {damaged} fails its checksum"
    absent = [name for name in KERAS_MEMBERS if name not in names]
    return f"it holds no {', '.join(absent)}" if absent else None


def model_state(model: keras.Model) -> list:
    """Every variable of `model` and of its optimizer, as values: what `restore_state` puts back."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    return [(variable, variable.numpy()) for variable in variables]


def restore_state(state: list) -> None:
    for variable, value in state:
        variable.assign(value)


def load_weights_checked(model: keras.Model, path: Path, consequence: str, delete: bool = True) -> bool:
    """Load `path` into `model` if it reads back whole and fits the model, and say True; else leave the model as it
    was (a load that fails halfway is undone), warn in one line (`consequence`: what the run does instead), delete
    the file unless `delete` is False (a process that does not own the workdir: nothing may trust it again) and
    say False."""
    path = Path(path)
    problem = h5_problem(path)
    if problem is None:
        state = model_state(model)
        try:
            model.load_weights(str(path))
            return True
        except (OSError, ValueError, KeyError) as error:
            restore_state(state)
            problem = _error_text(error)
    warn(f"{path} is unreadable ({problem}); {'it is deleted and ' if delete else ''}{consequence}")
    if delete:
        path.unlink(missing_ok=True)
    return False
