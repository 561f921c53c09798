"""benchmarks/gpu_check.py and benchmarks/prepare_gpu_data.py: the GPU hour's script runs its code paths on a CPU.

The `--smoke` run is a subprocess (its own TensorFlow, its own logical CPU devices for MirroredStrategy); the
preparation runs on a fake folder made here, and on ../shared's WikiArt sample only where that is present.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"
WIKIART = ROOT.parent / "shared" / "wikiart-sample"
HEADS = ("school", "timeframe", "type")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # gpu_check imports prepare_gpu_data by this name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prep():
    return _load("prepare_gpu_data")


@pytest.fixture(scope="module")
def gpu_check(prep):
    return _load("gpu_check")


def _run(args: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


# === Preparation ===


def test_preparation_of_a_fake_folder_is_painter_disjoint_deterministic_and_readable_without_tensorflow(tmp_path, prep):
    import tensorflow as tf

    source = prep.write_fake_folder(tmp_path / "fake")
    first = prep.prepare(source, tmp_path / "a")
    prep.prepare(source, tmp_path / "b")
    for name in ("train.tfrecord", "validation.tfrecord", "labels.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    rows = prep.read_labels(tmp_path / "a")
    painters = {split: {row["author"] for row in rows[split]} for split in prep.SPLITS}
    assert painters["train"] and painters["validation"]
    assert not painters["train"] & painters["validation"]
    assert first["splits"]["train"]["images"] == len(rows["train"])
    assert first["total_mib"] <= prep.LIMIT_MIB

    for split in prep.SPLITS:
        records = list(prep.read_records(tmp_path / "a" / f"{split}.tfrecord"))
        assert records == [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "a" / f"{split}.tfrecord"))]
        assert records == [(source / row["file"]).read_bytes() for row in rows[split]]  # the original JPEGs
        assert all(row["school"] and row["timeframe"] for row in rows[split])
    assert any(not row["type"] for split in prep.SPLITS for row in rows[split])  # unknown stays blank

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"labels.csv", "train.tfrecord", "validation.tfrecord"}


def test_preparation_keeps_to_its_byte_budget(tmp_path, prep):
    source = prep.write_fake_folder(tmp_path / "fake")
    whole = prep.prepare(source, tmp_path / "whole")
    budget_mib = 8 * 1024 / 2**20  # room for a handful of the ~1.5 KB images
    small = prep.prepare(source, tmp_path / "small", max_mib=budget_mib)
    images = sum(split["images"] for split in small["splits"].values())
    assert 0 < images < sum(split["images"] for split in whole["splits"].values())
    record_bytes = sum(small["files"][f"{split}.tfrecord"]["bytes"] for split in prep.SPLITS)
    assert record_bytes <= budget_mib * 2**20
    with pytest.raises(SystemExit, match="over the 50 MiB"):
        prep.prepare(source, tmp_path / "big", max_mib=64)
    with pytest.raises(SystemExit, match="refusing to write into the source"):
        prep.prepare(source, source / "out")


def test_preparation_of_the_wikiart_sample_uses_artnets_painter_split_and_fits():
    if not (WIKIART / "labels.csv").is_file():
        pytest.skip(f"needs the WikiArt sample at {WIKIART} (../shared is absent)")
    prep = _load("prepare_gpu_data")
    from artnet.data.sources import folder_source

    rows = prep.select(WIKIART, int(prep.DEFAULT_MAX_MIB * 2**20))
    total = sum(row["bytes"] + prep.RECORD_OVERHEAD for row in rows)
    assert total <= prep.DEFAULT_MAX_MIB * 2**20
    chosen = {split: {row["author"] for row in rows if row["split"] == split} for split in prep.SPLITS}
    validation = set(folder_source(WIKIART, split="validation").painters)
    test = set(folder_source(WIKIART, split="test").painters)
    keys = {split: {" ".join(a.split()).casefold() for a in authors} for split, authors in chosen.items()}
    assert keys["validation"] <= validation and not keys["train"] & (validation | test)
    assert len(rows) > 3000 and len(chosen["validation"]) >= 20


# === The script ===


def test_smoke_run_measures_every_section_and_writes_json_and_markdown(tmp_path):
    started = time.monotonic()
    done = _run(["--smoke", "--out", str(tmp_path), "--budget-s", "1500"], timeout=900)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "complete" and report["smoke"] is True
    assert report["environment"]["tensorflow"] and report["environment"]["cpu_cores"] >= 1
    sections = report["sections"]
    assert list(sections) == ["step", "pipeline", "mirrored", "finetune"]

    step = sections["step"]
    assert step["status"] == "done" and len(step["settings"]) >= 4
    assert {row["precision"] for row in step["settings"]} == {"float32", "mixed_float16", "mixed_bfloat16"}
    assert {row["xla"] for row in step["settings"]} == {False, True}
    for row in step["settings"]:
        assert row["status"] == "ok", row
        assert row["images_per_s"] > 0 and row["step_ms"] > 0 and row["peak_memory_mib"] > 0

    pipeline = sections["pipeline"]
    assert pipeline["status"] == "done" and pipeline["image_size"] == 331
    assert pipeline["images_per_s"] > 0 and pipeline["ratio"] > 0 and isinstance(pipeline["starves"], bool)
    assert "ratio" in done.stdout

    mirrored = sections["mirrored"]
    assert mirrored["status"] == "done" and mirrored["replicas"] == 2
    assert mirrored["global_batch"] == mirrored["per_replica_batch"] * mirrored["replicas"]
    assert mirrored["images_per_s"] > 0 and mirrored["scaling"] > 0

    finetune = sections["finetune"]
    assert finetune["status"] == "done" and finetune["painters_shared"] == 0
    assert finetune["epochs"] and all(epoch["seconds"] > 0 for epoch in finetune["epochs"])
    assert set(finetune["probe"]) == set(HEADS) and set(finetune["best"]) == set(HEADS)
    scores = [finetune["probe"][h]["balanced_accuracy"] for h in HEADS] + list(finetune["best"].values())
    assert all(score is None or 0.0 <= score <= 1.0 for score in scores)

    text = (tmp_path / "gpu_check.md").read_text()
    for heading in ("## Training step", "## Input pipeline", "## MirroredStrategy", "## Fine-tune vs linear probe"):
        assert heading in text
    assert "| batch | precision | XLA |" in text and "| mixed_bfloat16 | on | ok |" in text
    print(f"smoke run: {seconds:.1f} s")


def test_without_tensorflow_it_says_so_in_one_line_and_exits_3(tmp_path):
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorflow'\")\n")
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    done = _run(["--out", str(tmp_path / "out")], timeout=300, env={"PYTHONPATH": path})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.strip().count("\n") == 0 and "no TensorFlow" in done.stdout
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["status"] == "no_tensorflow" and report["sections"] == {}
    assert report["environment"]["python"] == sys.version.split()[0]
    assert {"torch", "jax", "nvidia_smi"} <= set(report["found"]) and "nothing was measured" in report["blocker"]
    assert "**Blocked:**" in (tmp_path / "out" / "gpu_check.md").read_text()


def test_the_watchdog_stops_at_the_budget_and_keeps_what_was_written(tmp_path):
    done = _run(["--smoke", "--out", str(tmp_path), "--budget-s", "2"], timeout=300)
    assert done.returncode == 4, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"].startswith("stopped by the budget")
    assert report["environment"]["python"]


def test_a_setting_the_budget_cannot_fit_is_skipped_with_its_reason(tmp_path, gpu_check):
    import keras
    import tensorflow as tf

    report = gpu_check.Report(tmp_path, {"smoke": True, "_started": time.monotonic()})
    profile = gpu_check.PROFILES["smoke"]
    ctx = {
        "tf": tf,
        "keras": keras,
        "profile": profile,
        "report": report,
        "budget": gpu_check.Budget(gpu_check.MARGIN_S, gpu_check.SECTIONS, time.monotonic()),
        "gpu": None,
        "device": "/CPU:0",
        "step_settings": list(profile["step_grid"]),
    }
    gpu_check.section_step(ctx)
    settings = report.data["sections"]["step"]["settings"]
    assert len(settings) == len(profile["step_grid"]) and {row["status"] for row in settings} == {"skipped"}
    assert all(row["reason"].startswith("budget") for row in settings)
    assert report.data["sections"]["step"]["status"] == "no setting ran"
    assert "| skipped |" in (tmp_path / "gpu_check.md").read_text()
