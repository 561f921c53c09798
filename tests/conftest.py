"""Shared fixtures: paths to the dummy mirror and ../shared, and a local fault-injecting WGA server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from artnet.data.wga.catalog_pin import CATALOG_SHA256_ENV
from artnet.testing.dummy_mirror import write_mirror
from artnet.testing.fake_server import FaultyWgaServer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WGA_SAMPLE = SHARED / "wga-sample"


@pytest.fixture(autouse=True)
def _catalogue_check_as_committed(monkeypatch):
    """Every test starts with the catalogue pinned by checksums.tsv, whatever the shell running pytest has set."""
    monkeypatch.delenv(CATALOG_SHA256_ENV, raising=False)


@pytest.fixture
def accept_any_catalog(monkeypatch):
    """For builds through the TFDS builder from the dummy mirror, whose catalogue is not wga.hu's pinned export."""
    monkeypatch.setenv(CATALOG_SHA256_ENV, "any")


@pytest.fixture
def wga_sample() -> Path:
    """The real WGA mirror: its catalogue (data_txt.zip) and its images (art/), or the test is skipped."""
    if not (WGA_SAMPLE / "data_txt.zip").is_file():
        pytest.skip(f"needs the real WGA mirror at {WGA_SAMPLE} (../shared is absent)")
    if not (WGA_SAMPLE / "art").is_dir() or not any((WGA_SAMPLE / "art").iterdir()):
        pytest.skip(f"needs the real WGA mirror's images at {WGA_SAMPLE / 'art'} (only its catalogue is there)")
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


@pytest.fixture
def tiny_weights(tmp_path) -> str:
    """A deterministic tiny backbone saved to a weights file (what `weights=` may name besides imagenet)."""
    import keras

    from artnet.models.backbones import build_backbone

    keras.utils.set_random_seed(5)
    path = tmp_path / "tiny.weights.h5"
    build_backbone("tiny", weights=None, image_size=32).save_weights(str(path))
    return str(path)
