"""File writes that a killed, crashed or powered-off process cannot leave half done, and the sweep after a kill.

Whatever a later run trusts because it exists (a mirrored image, the catalogue zip, a prepared image, a checkpoint,
a feature cache, an export) is written whole or not at all: to a temporary file in the same folder, fsynced, then
renamed over its name, and the folder fsynced, so that a name that exists always points at complete bytes.

- `write_atomically(path, data)`: bytes in hand.
- `atomic_path(path)`: a context manager for writers that want a file name (`np.savez`, `model.save_weights`,
  `model.save`): they write to the temporary path it yields, which ends with the target's own suffixes (Keras
  insists on `.weights.h5` and `.keras`, NumPy appends `.npz` to a name without it), and it is renamed over
  `path` only when the block ends without an exception.
- `remove_stale_parts(folder)`: deletes the temporary files that a killed writer left (an atomic rename cannot
  clean up after a SIGKILL); those of a live writer are left alone.
- `is_path_error(error)`: tells a write failure that is one file's problem (a name the file system refuses) from
  one that must stop the run (a full disk).

A temporary file is named `.<stem>.partial-<pid>-<token><suffixes>` beside its target (`best.weights.h5` ->
`.best.partial-4242-1a2b3c4d.weights.h5`): hidden, recognisable, with the writer's pid so that a sweep can tell a
dead writer's leftover from a live one's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

# Per-file write failures that say something about the path, not the disk: that file fails, the run goes on.
# Anything else (a full disk, a read-only file system, EIO) stops the run.
_PATH_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})

PARTIAL = ".partial-"  # in every temporary name this module makes
# What `temporary_path` makes (the token: mkstemp's 8 characters, or 8 hex digits).
_TEMPORARY = re.compile(r"\..*\.partial-(?P<pid>[0-9]+)-[a-z0-9_]{8}(\..*)?")
# What artnet 0.1's writer made (`.<name>.<pid>.<8 random>.part`): swept too, so an upgrade leaves none behind.
_LEGACY_TEMPORARY = re.compile(r"\..+\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.part")
# Extra bytes a temporary name adds to its target's: callers that bound name lengths leave this much room.
TEMPORARY_NAME_OVERHEAD = len(".") + len(PARTIAL) + 10 + len("-") + 8


def is_path_error(error: OSError) -> bool:
    return error.errno in _PATH_ERRNOS


def _split_name(path: Path) -> tuple[str, str]:
    """(stem, suffixes) with stem + suffixes == path.name: `m.weights.h5` -> (`m`, `.weights.h5`)."""
    suffixes = "".join(path.suffixes)
    return path.name[: len(path.name) - len(suffixes)], suffixes


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside `path` that ends with its suffixes and that `remove_stale_parts` recognises."""
    path = Path(path)
    stem, suffixes = _split_name(path)
    return path.with_name(f".{stem}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}{suffixes}")


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename: readers never see half a
    file, and a kill leaves either the old file or the new one.

    The file is fsynced before the rename and the folder after it, so that after a power cut a name that exists
    points at complete bytes (a rename alone may reach the disk before the data does).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, suffixes = _split_name(path)
    # mkstemp: created exclusively, so two writers of the same name in one process never share a temporary file.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}{PARTIAL}{os.getpid()}-", suffix=suffixes)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name; on a clean exit, fsync what it
    wrote and rename it over `path` (then fsync the folder). On an exception the temporary file is deleted and
    `path` keeps its old content (or stays absent).

        with atomic_path(workdir / "best.weights.h5") as partial:
            model.save_weights(str(partial))

    The writer must write exactly the yielded name (a file, not a folder): a block that ends without that file
    raises FileNotFoundError rather than leaving `path` as it was unnoticed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        if not temporary.is_file():
            raise FileNotFoundError(f"the writer of {path} wrote no file at {temporary.name}: nothing to put in place")
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def remove_stale_parts(root: str | os.PathLike, *, recursive: bool = True, also: Iterable[re.Pattern] = ()) -> int:
    """Delete the temporary files under `root` (in its subfolders too, unless `recursive=False`) whose writer is no
    longer running, and say how many went: a SIGKILLed writer leaves the file it was writing, which no rename
    will ever claim. Files of a live writer (another process sharing the folder) are left alone, and so is every
    name this module does not make, except those that `also` matches (a caller's older temporary names: hidden,
    with a `pid` group naming their writer)."""
    root = Path(root)
    if not root.is_dir():
        return 0
    patterns = (_TEMPORARY, _LEGACY_TEMPORARY, *also)
    candidates = root.rglob(".*") if recursive else root.glob(".*")
    removed = 0
    for candidate in candidates:
        match = next((found for pattern in patterns if (found := pattern.fullmatch(candidate.name))), None)
        if match is None or _running(int(match["pid"])) or not candidate.is_file():
            continue
        candidate.unlink(missing_ok=True)
        removed += 1
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except (OverflowError, OSError):
        return False  # no such pid can exist
    return True
