"""Reading files this server did not write: an export folder's, and a visitor's upload (plain Python, no gradio).

An export folder is data, never a door. Everything the demo reads from it, serves or inlines is a regular file
whose real path lies inside the folder (`inside`, `read_inside`): a link out of it, a FIFO or a device is refused
with an `ExportError` that names the file. Every file is read as `artnet.data.images.load_path` reads an image
(`open_regular`): opened once, without waiting (O_NONBLOCK: a FIFO never blocks the reader), checked on that
descriptor (fstat: a regular file, not a FIFO, a device or a socket) and read up to its byte limit only, so that
what is read is what was checked.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from artnet.workdir import Export

JSON_MAX_BYTES = 64 * 2**20  # model_card.json, items.json: a 50,000-painting catalogue is ~10 MB
THUMB_MAX_BYTES = 2 * 2**20  # a 160 px JPEG thumbnail is ~8 KB


class ExportError(ValueError):
    """An export the demo will not serve: a file that links out of the folder or is not a regular file, or index
    files that disagree. The message names the file (relative to the export) and says what to do."""


class FileRefused(ValueError):
    """A file that is not a regular file, is over its byte limit or cannot be opened: the message says which."""


class FileTooLarge(FileRefused):
    """A regular file over its byte limit."""


def open_regular(path: str | os.PathLike, max_bytes: int, follow_links: bool = True) -> BinaryIO:
    """`path` opened for reading, once it is known to be a regular file of at most `max_bytes`, or `FileRefused`.

    With `follow_links=False` a path whose last part is a symbolic link is refused too (O_NOFOLLOW)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused("no such file") from None
    except OSError as error:
        if os.path.islink(path) and not follow_links:
            raise FileRefused("is a symbolic link: refused") from None
        raise FileRefused(f"cannot open the file: {error.strerror or error}") from None
    stream = os.fdopen(descriptor, "rb")
    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("not a regular file (a folder, FIFO, device or socket)")
        if info.st_size > max_bytes:
            raise FileTooLarge(f"file too large: {info.st_size / 2**20:.0f} MiB > {max_bytes / 2**20:.0f} MiB")
    except BaseException:
        stream.close()
        raise
    return stream


def read_regular(path: str | os.PathLike, max_bytes: int, follow_links: bool = True) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see `open_regular`), or `FileRefused`."""
    with open_regular(path, max_bytes, follow_links) as stream:
        try:
            data = stream.read(max_bytes + 1)  # one byte past the limit tells a file that grew since fstat
        except OSError as error:
            raise FileRefused(f"cannot read the file: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise FileTooLarge(f"file too large: over {max_bytes / 2**20:.0f} MiB")
    return data


def shown_name(root: Path, path: Path) -> str:
    """`path` as the export names it (relative to its root), for messages."""
    try:
        return Path(os.path.normpath(path)).relative_to(os.path.normpath(root)).as_posix()
    except ValueError:
        return str(path)


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The real path of `path` (every link followed), or `ExportError` when that lies outside the real `root`."""
    root, path = Path(root), Path(path)
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(root)):
        raise ExportError(
            f"{shown_name(root, path)} in the export {root} links out of it (to {real}): refused. An export folder "
            "serves only its own files: replace the link with the file itself, or export the model again"
        )
    return real


def regular_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`inside`, and a regular file (not a folder, FIFO, device or socket): its real path, or `ExportError`."""
    real = inside(root, path)
    try:
        mode = os.stat(real).st_mode
    except OSError as error:
        raise ExportError(f"{shown_name(Path(root), Path(path))}: cannot read it: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise ExportError(
            f"{shown_name(Path(root), Path(path))} in the export {root} is not a regular file (a folder, FIFO, device "
            "or socket): refused; export the model again"
        )
    return real


def read_inside(root: str | os.PathLike, path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of `path`, a regular file inside `root` (checked again as it is opened), or `ExportError`."""
    real = inside(root, path)
    try:
        return read_regular(real, max_bytes, follow_links=False)  # a link put in place since `inside`: refused
    except FileRefused as error:
        raise ExportError(f"{shown_name(Path(root), Path(path))} in the export {root}: {error}") from None


def read_json_inside(root: Path, path: Path):
    """The JSON value in `path`, a regular file inside `root` of at most JSON_MAX_BYTES, or `ExportError`."""
    data = read_inside(root, path, JSON_MAX_BYTES)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ExportError(
            f"{shown_name(root, path)} in the export {root} is not valid JSON ({error}): export it again"
        ) from None


def read_card(files: Export) -> dict:
    """The export's model card: {} when it has none; a JSON object in a regular file inside the export, or
    `ExportError`."""
    if not os.path.lexists(files.card):
        return {}
    card = read_json_inside(files.root, files.card)
    if not isinstance(card, dict):
        raise ExportError(
            f"{shown_name(files.root, files.card)} in the export {files.root} holds a "
            f"{type(card).__name__}, not a JSON object: export the model again"
        )
    return card
