"""Shared fixtures: paths to the dummy mirror and ../shared, and a local fault-injecting WGA server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artnet.wga.fake_server import FaultyWgaServer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
DUMMY_DATA = ROOT / "datasets" / "wga" / "dummy_data"
SHARED = ROOT.parent / "shared"
WGA_SAMPLE = SHARED / "wga-sample"


@pytest.fixture
def wga_sample() -> Path:
    if not (WGA_SAMPLE / "data_txt.zip").is_file():
        pytest.skip(f"needs the real WGA mirror at {WGA_SAMPLE} (../shared is absent)")
    return WGA_SAMPLE


@pytest.fixture
def dummy_data() -> Path:
    return DUMMY_DATA


@pytest.fixture
def wga_server(dummy_data):
    with FaultyWgaServer(dummy_data) as server:
        yield server
