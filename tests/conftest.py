"""Shared fixtures: paths to the dummy mirror and ../shared, and a local fault-injecting WGA server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from artnet.wga.dummy_mirror import write_mirror
from artnet.wga.fake_server import FaultyWgaServer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WGA_SAMPLE = SHARED / "wga-sample"


@pytest.fixture
def wga_sample() -> Path:
    if not (WGA_SAMPLE / "data_txt.zip").is_file():
        pytest.skip(f"needs the real WGA mirror at {WGA_SAMPLE} (../shared is absent)")
    return WGA_SAMPLE


@pytest.fixture(scope="session")
def dummy_data(tmp_path_factory) -> Path:
    """The builder's mini mirror (generated; read-only by convention: tests copy before they change it)."""
    return write_mirror(tmp_path_factory.mktemp("wga-dummy-mirror"))


@pytest.fixture
def free_port():
    """A function giving a TCP port on 127.0.0.1 that is free right now."""

    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    return pick


@pytest.fixture
def wga_server(dummy_data):
    with FaultyWgaServer(dummy_data) as server:
        yield server
