"""Serving the demo to people: who may log in, the server's defaults, and a clean exit on SIGTERM.

`artnet demo` and `demo/app.py` build the page (`artnet.serving.demo.build_demo`) and hand it to `launch`, which
is `Blocks.launch` with artnet's serving defaults; `parse_auth` reads the `--auth` / `--auth-file` credentials
before the model loads, so that a typo fails at once.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from artnet.serving.files import FileRefused, read_regular

if TYPE_CHECKING:
    import gradio as gr

# gradio keeps each visitor session's state in memory, up to 10,000 sessions by default. For this stateless page
# that measured as nothing much (RSS alike with and without this cap over 240 sessions, benchmarks/README.md), but
# a bound costs nothing: an evicted session only starts afresh.
SESSIONS_KEPT = 100
# Uploads over this are refused by gradio itself, before they are written to its cache (the loader's own limit).
MAX_FILE_SIZE = "64mb"
AUTH_FILE_MAX_BYTES = 2**20


def parse_auth(value: str | None = None, path: str | Path | None = None) -> list[tuple[str, str]] | None:
    """`--auth user:password` and/or a credentials file -> gradio's auth (None: no login asked).

    The file: UTF-8 (a leading byte-order mark is dropped), one `user:password` a line, split at the first colon
    (a password may hold colons); blank lines and lines whose first non-blank character is `#` are skipped (a `#`
    later in a line is part of the password). Passwords are taken exactly as written, so a user or password
    that starts or ends with a space or tab is refused rather than silently trimmed (an editor that strips
    trailing spaces would otherwise change the password unseen). A user given twice, an entry without a user or
    a password, and a file with no login at all are refused; `ValueError` names the file, line and user, never a
    password. A file that other users of the machine may read or write gets a warning on stderr.
    """
    entries = [("--auth", value)] if value else []
    if path:
        warning = auth_file_warning(path)
        if warning:
            print(warning, file=sys.stderr)
        try:
            text = read_regular(path, AUTH_FILE_MAX_BYTES).decode("utf-8-sig")
        except FileRefused as error:
            raise ValueError(f"{path}: {error}") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        numbered = enumerate(text.replace("\r\n", "\n").split("\n"), start=1)  # no other character ends a line
        lines = [(f"{path}, line {number}", line) for number, line in numbered]
        lines = [(where, line) for where, line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise ValueError(f"{path} holds no user:password line: the demo would ask for no login")
        entries += lines
    pairs: dict[str, tuple[str, str]] = {}
    for where, entry in entries:
        user, colon, password = entry.partition(":")
        if not (user and colon and password):
            raise ValueError(f"{where}: credentials must read user:password (a non-empty user and password)")
        for part, written in ((f"user {user.strip()!r}", user), (f"the password of user {user.strip()!r}", password)):
            if written != written.strip():
                raise ValueError(
                    f"{where}: {part} starts or ends with a space or tab, which is refused rather than trimmed "
                    "(a password is taken exactly as written): remove the spaces"
                )
        if user in pairs:
            raise ValueError(f"{where}: user {user!r} is given twice (first at {pairs[user][0]}): keep one")
        pairs[user] = (where, password)
    return [(user, password) for user, (_, password) in pairs.items()] or None


def auth_file_warning(path: str | Path) -> str | None:
    """A warning when users other than its owner may read (or change) the credentials file, else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reading it says what is wrong
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return (
            f"artnet demo: warning: {path} is {'writable' if mode & stat.S_IWOTH else 'readable'} by every user of "
            f"this machine (mode {stat.S_IMODE(mode):o}): its passwords are not private; run chmod 600 {path}"
        )
    return None


def share_warning(share: bool, auth) -> str | None:
    if share and not auth:
        return (
            "artnet demo: warning: --share without --auth publishes this demo to anyone with the gradio.live link; "
            "add --auth user:password (or --auth-file FILE)"
        )
    return None


def remove_files_on_sigterm() -> None:
    """On SIGTERM, remove every backend's Grad-CAM files, then die of SIGTERM as usual (atexit does not run on
    a signal). Only from the main thread, and only where no one else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def on_sigterm(signum, frame):
        # Here, not at the top: the backend loads TensorFlow, and `artnet demo --auth` with a typo must answer
        # in one line before it does (parse_auth lives in this module).
        from artnet.serving.backend import close_all

        close_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def launch(demo: gr.Blocks, **options):
    """`demo.launch` with artnet's serving defaults: errors shown to the user (they say what is wrong with an
    upload), uploads over MAX_FILE_SIZE refused, the state of at most SESSIONS_KEPT sessions kept in memory (the
    oldest are dropped), Grad-CAM files removed on SIGTERM, and a warning when --share has no auth."""
    options.setdefault("show_error", True)
    options.setdefault("state_session_capacity", SESSIONS_KEPT)
    options.setdefault("max_file_size", MAX_FILE_SIZE)
    warning = share_warning(options.get("share", False), options.get("auth"))
    if warning:
        print(warning, file=sys.stderr)
    remove_files_on_sigterm()
    return demo.launch(**options)
