"""File writes that a killed, crashed or powered-off build cannot leave half done, and the cleanup after a kill.

Both the mirror (downloaded images, the catalogue zip, the missing-image log) and the prepared-image cache are
written through `write_atomically`: a temporary file in the same folder, fsynced, then renamed, so a name that exists
always points at complete bytes and a rerun can trust what it finds. `remove_stale_parts` sweeps the temporary
files a SIGKILLed writer left, and `is_path_error` tells a write failure that is one row's problem (a name the file
system refuses) from one that must stop the build (a full disk).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# Per-image write failures that say something about the path, not the disk: that row fails, the build goes on.
# Anything else (a full disk, a read-only file system, EIO) stops the build.
_PATH_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})


def is_path_error(error: OSError) -> bool:
    return error.errno in _PATH_ERRNOS


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename: readers never see half a
    file, and a kill leaves either the old file or the new one (the build's image cache uses it too).

    The file is fsynced before the rename and the folder after it, so that after a power cut a name that exists
    points at complete bytes (a rename alone may reach the disk before the data does).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so a later build can tell a killed writer's leftover (`remove_stale_parts`).
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_stale_parts(root: Path) -> int:
    """Delete the temporary `.part` files under `root` whose writer is no longer running (a SIGKILLed build leaves
    the file it was writing; an atomic rename cannot clean up after a kill), and say how many went. Files of a
    live writer, another build sharing the folder, are left alone."""
    removed = 0
    for part in Path(root).rglob(".*.part") if Path(root).is_dir() else ():
        try:
            pid = int(part.name.rsplit(".", 3)[-3])
        except (ValueError, IndexError):
            continue  # not ours
        if not _running(pid):
            part.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
