"""From a catalogue row's page URL to the relative path of its image in a mirror, and the rules that path must meet.

wga.hu serves the image of `html/a/aachen/allegory.html` at `art/a/aachen/allegory.jpg`; `image_path_of` applies
that rule, and the same relative path names the file in a downloaded or a manual mirror and in the prepared-image
cache. The catalogue is hand-typed, so a path may hold what no file system (or no honest server) should see:
`check_image_path`, `path_clashes` and `path_problems` refuse those up front, each row counted as failed with its
reason, so a hostile or odd row fails alone and the build goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

# Linux allows 255 bytes per name; the prepared-image cache adds a 13-byte version key (".<12 hex>", see
# `prepare.prepared_path`) and the atomic writer a temporary part (".partial-<pid>-<8 random>" and a leading dot,
# at most `atomic_files.TEMPORARY_NAME_OVERHEAD` bytes), so names are held to 200.
MAX_NAME_BYTES = 200
# What an image path may hold after percent-encoding: unreserved ASCII, "%" escapes, "/" between segments.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]+")
_QUOTE_SAFE = "/%!$&'()*+,;=:@~"  # kept as they are by image_path_of; all else is %-encoded


def image_path_of(page_url: str) -> str | None:
    """`https://www.wga.hu/html/a/aachen/allegory.html` -> `art/a/aachen/allegory.jpg`."""
    path = urlsplit(page_url.strip()).path
    marker = "/html/"
    if marker not in path:
        return None
    relative = path.split(marker, 1)[1]
    stem, dot, suffix = relative.rpartition(".")
    if not dot or suffix.lower() not in ("html", "htm") or not stem or ".." in stem.split("/"):
        return None
    # Non-ASCII letters become %XX (UTF-8), as a browser would send them: the path is then plain ASCII both on
    # the wire and on disk. Existing escapes and "/" are kept; a backslash becomes %5C and is refused later.
    return f"art/{quote(stem, safe=_QUOTE_SAFE)}.jpg"


class UnsafePathError(ValueError):
    """An image path that cannot be fetched or stored safely; the message says why."""


def check_image_path(path: str) -> None:
    """Raise `UnsafePathError` unless `path` is plain relative ASCII with names the file system can hold.

    The row that carries such a path is counted as failed, with this reason, and the build goes on.
    """
    if "\\" in path or "%5c" in path.lower():
        raise UnsafePathError(f"backslash in image path {path[:120]!r}: not a wga.hu path")
    if not _SAFE_PATH.fullmatch(path):
        raise UnsafePathError(f"image path {path[:120]!r} holds characters outside plain ASCII path segments")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments) or path.startswith("/"):
        raise UnsafePathError(f"image path {path[:120]!r} has an empty, '.' or '..' segment")
    longest = max(segments, key=len)
    if len(longest.encode()) > MAX_NAME_BYTES:
        raise UnsafePathError(
            f"a name in image path {path[:80]!r}... is {len(longest.encode())} bytes, over the {MAX_NAME_BYTES} the "
            "file system can hold with its temporary suffix"
        )


def path_clashes(paths: Iterable[str]) -> dict[str, str]:
    """{path: reason} for paths that are also a folder of another path (`a/b.jpg` and `a/b.jpg/c.jpg`).

    Both sides are refused, whatever order they come in, so a rebuild gives the same dataset.
    """
    paths = set(paths)
    clashes = {}
    for path in paths:
        parts = path.split("/")
        for end in range(1, len(parts)):
            folder = "/".join(parts[:end])
            if folder in paths:
                reason = f"file/folder clash: {folder} is an image and also a folder holding {path}"
                clashes[path] = clashes.setdefault(folder, reason)
    return clashes


def path_problems(paths: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{path: (reason, message)} for image paths no mirror can hold: unsafe (`check_image_path`) or clashing."""
    paths, problems = set(paths), {}
    for path in paths:
        try:
            check_image_path(path)
        except UnsafePathError as error:
            problems[path] = ("unsafe path", str(error))
    for path, message in path_clashes(paths - problems.keys()).items():
        problems[path] = ("file/folder clash", message)
    return problems
