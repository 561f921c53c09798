"""Serving the demo to people: who may log in, the server's defaults, and a clean exit on SIGTERM.

`artnet demo` and `demo/app.py` build the page (`artnet.serving.demo.build_demo`) and hand it to `launch`, which
is `Blocks.launch` with artnet's serving defaults; `parse_auth` reads the `--auth` / `--auth-file` credentials
before the model loads, so that a typo fails at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from artnet.serving.backend import close_all

if TYPE_CHECKING:
    import gradio as gr

# gradio keeps each visitor session's state in memory, up to 10,000 sessions by default. For this stateless page
# that measured as nothing much (RSS alike with and without this cap over 240 sessions, benchmarks/README.md), but
# a bound costs nothing: an evicted session only starts afresh.
SESSIONS_KEPT = 100
# Uploads over this are refused by gradio itself, before they are written to its cache (the loader's own limit).
MAX_FILE_SIZE = "64mb"


def parse_auth(value: str | None = None, path: str | Path | None = None) -> list[tuple[str, str]] | None:
    """`--auth user:password` and/or a credentials file (one `user:password` a line, # comments) -> gradio's auth."""
    entries = [value] if value else []
    if path:
        entries += [line.strip() for line in Path(path).read_text().splitlines()]
    pairs = []
    for entry in entries:
        if not entry or entry.startswith("#"):
            continue
        user, colon, password = entry.partition(":")
        if not (user and colon and password):
            raise ValueError("credentials must read user:password (a non-empty user and password)")
        pairs.append((user, password))
    return pairs or None


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
