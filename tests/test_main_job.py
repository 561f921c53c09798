"""`make demo`'s chain, small, on its real command lines: build `wga/artist` from a mirror, count it, train, export,
serve, answer.

Each step is the command the Makefile runs, in a process of its own (`tfds build datasets/wga`, `artnet data-stats`,
`artnet train` on `experiments/configs/sample.py`, `artnet demo`), from the dummy mirror instead of wga.hu, and with
a tiny backbone (`--set`) instead of EfficientNet-Lite0: the recipe's own path (heads trained on the frozen
backbone's cached features) in seconds. The demo is asked over HTTP, as a browser's page asks it, and stopped as a
person stops it, with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artnet import labels

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEP_TIMEOUT = 600  # seconds: a deadline for a step that hangs, far above what any step takes


def run_step(*command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **env),
        timeout=STEP_TIMEOUT,
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, deadline_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the demo exited with {server.returncode} before it served:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the demo did not answer on {url} within {deadline_s:.0f} s:\n{log.read_text()[-4000:]}")


def test_the_main_job_builds_counts_trains_exports_and_serves(tmp_path, tiny_weights, free_port):
    artnet = [sys.executable, "-m", "artnet.cli"]
    tfds_dir, workdir = tmp_path / "tfds", tmp_path / "run"

    # make data: with a mirror, the artist config: every painting it holds (the dummy mirror: its catalogue is not
    # wga.hu's pinned export).
    mirror = Path(run_step(sys.executable, "-m", "artnet.testing.dummy_mirror", "mirror", cwd=tmp_path).stdout.strip())
    mirror = tmp_path / mirror if not mirror.is_absolute() else mirror
    assert (mirror / "catalog.csv").is_file()
    tfds_build = [str(BIN / "tfds"), "build", "datasets/wga", "--config", "artist", "--data_dir", str(tfds_dir)]
    run_step(
        *tfds_build,
        "--manual_dir",
        str(mirror),
        cwd=ROOT,
        ARTNET_WGA_CATALOG_SHA256="any",
        ARTNET_WGA_WORK_DIR=str(tmp_path / "work"),
    )
    built = next(tfds_dir.glob("wga/artist/*/dataset_info.json")).parent

    # make stats
    stats_run = run_step(*artnet, "data-stats", "--config", "artist", "--data-dir", str(tfds_dir), cwd=tmp_path)
    stats = json.loads((built / "statistics.json").read_text())
    splits = stats["splits"]
    assert set(splits) == {"train", "validation", "test"} and all(n > 0 for n in splits.values())
    assert f"| train | {splits['train']} |" in stats_run.stdout and stats["authors_shared_between_splits"] == 0
    for head in labels.HEADS:  # every head counted over the same paintings, classes from its vocabulary
        table = stats["heads"][head]
        assert set(table) <= {*labels.VOCABULARIES[head], "(unknown)"}
        assert sum(sum(row.values()) for row in table.values()) == sum(splits.values())

    # make model: the sample recipe as the Makefile runs it, with a tiny pretrained backbone and three epochs.
    overrides = {
        "backbone": "tiny",
        "backbone_weights": tiny_weights,
        "image_size": "32",
        "epochs": "3",
        "head_epochs": "3",
        "early_stopping_patience": "0",
        "data.data_dir": str(tfds_dir),
        "data.extra_folders": "",  # the recipe adds ../shared/wikiart-sample where it exists: not here
    }
    sets = [argument for key, value in overrides.items() for argument in ("--set", f"{key}={value}")]
    recipe = str(ROOT / "experiments" / "configs" / "sample.py") + ":multihead,wga=artist"
    train_run = run_step(*artnet, "train", "--config", recipe, "--workdir", str(workdir), *sets, cwd=tmp_path)
    assert "from the feature cache" in train_run.stdout  # the recipe's path: heads on cached features
    export_dir = workdir / "export"
    for path in ("model.keras", "saved_model/saved_model.pb", "labels.json", "index/embeddings.npy"):
        assert (export_dir / path).is_file(), path
    assert json.loads((export_dir / "labels.json").read_text()) == {
        h: list(labels.VOCABULARIES[h]) for h in labels.HEADS
    }
    card = json.loads((export_dir / "model_card.json").read_text())
    assert card["backbone"] == "tiny" and card["heads"] == list(labels.HEADS)
    assert card["train_examples"] == splits["train"] and card["test_examples"] == splits["test"]
    assert len(np.load(export_dir / "index" / "embeddings.npy")) == splits["train"]  # the training collection
    report = json.loads((workdir / "eval_test" / "report.json").read_text())
    assert {head: report["heads"][head]["n"] for head in labels.HEADS} == {
        head: splits["test"] - stats["heads"][head].get("(unknown)", {}).get("test", 0) for head in labels.HEADS
    }
    epochs = [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]

    # make demo: serve the export, ask it over HTTP, stop it with Ctrl-C.
    from gradio_client import Client, handle_file

    painting = tmp_path / "painting.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(painting)
    port = free_port()
    log = tmp_path / "demo.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [*artnet, "demo", "--model", str(export_dir), "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"),
            # A shell's background job ignores SIGINT, and children inherit that: give the demo Ctrl-C back.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, server, log)
        answer = Client(url, verbose=False).predict(handle_file(str(painting)), api_name="/classify")
        from artnet.serving.predictor import Predictor

        expected = Predictor(export_dir / "model.keras", top_k=3).predict(str(painting))
        for head, shown in zip(labels.HEADS, answer[: len(labels.HEADS)], strict=True):
            ranked = [(item["label"], item["confidence"]) for item in shown["confidences"]]
            assert len(ranked) == 3 and all(label in labels.VOCABULARIES[head] for label, _ in ranked), (head, shown)
            assert shown["label"] == ranked[0][0]
            # The served answer is the exported model's answer for this image.
            assert [label for label, _ in ranked] == [label for label, _ in expected[head]], (head, ranked)
            np.testing.assert_allclose([p for _, p in ranked], [p for _, p in expected[head]], atol=1e-4)
        assert "sample-scale" in answer[len(labels.HEADS)]  # the note says what kind of model answered
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=60)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the port still answers after the demo stopped"
    served_log = log.read_text()
    assert served_log.count("Running on local URL") == 1 and "Traceback" not in served_log, served_log[-4000:]
