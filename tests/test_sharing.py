"""Sharing an export: its LiteRT model answers as the Keras model does, its README.md is a Hub model card whose
front matter no card value can break, and `artnet space` writes a folder that runs the demo from artnet's wheel
alone (the checkout not importable)."""

from __future__ import annotations

import configparser
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from artnet.cli import main
from artnet.data.preprocessing import resize_and_crop
from artnet.serving.model_card import hub_readme
from artnet.serving.space import (
    GRADIO_VERSION,
    INDEX_LEFT_OUT,
    NO_INDEX,
    build_wheel,
    read_front_matter,
    write_space,
)

ROOT = Path(__file__).resolve().parents[1]
CARD = {
    "data": "/home/ann/private/paintings:train",
    "train_examples": 1200,
    "train_painters": 40,
    "test": {"school": {"n": 300, "top1": 0.41, "top3": 0.7, "balanced_accuracy": 0.33, "majority_baseline": 0.25}},
    "test_year": {"n": 250, "mae": 61.5, "mae_constant": 90.0},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from artnet.models.artnet import ArtNet
    from artnet.serving.export import export

    keras.utils.set_random_seed(5)
    model = ArtNet("tiny", image_size=32, year_head=True, dropout=0.5)
    rng = np.random.default_rng(5)
    for task in model.tasks:
        layer = model.get_layer(task)
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(0, 1.0, kernel.shape).astype(np.float32), bias])
    out = export(model, tmp_path_factory.mktemp("share") / "export", card=dict(CARD), litert=True)
    return model, out


def test_the_hub_card_lists_the_litert_files_written(exported):
    _, out = exported
    written = sorted(path.name for path in Path(out).glob("*.tflite"))
    card = (Path(out) / "README.md").read_text()
    assert written and all(f"`{name}`" in card for name in written)
    assert ("model_int8.tflite" in card) == ("model_int8.tflite" in written)  # int8 only with training images


def test_the_litert_model_answers_as_the_keras_model(exported):
    from ai_edge_litert.interpreter import Interpreter

    model, out = exported
    runner = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    rng = np.random.default_rng(0)
    for shape in ((45, 61, 3), (32, 32, 3), (80, 50, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        served = {k: v.numpy() for k, v in model.serving_function()(tf.constant(image[np.newaxis])).items()}
        lite = runner(images=resize_and_crop(tf.constant(image[np.newaxis]), 32).numpy())
        assert set(lite) == set(served) == {"school", "timeframe", "type", "year", "year_sigma"}
        for name in ("school", "timeframe", "type"):
            np.testing.assert_allclose(lite[name], served[name], atol=1e-4)
            assert lite[name].argmax() == served[name].argmax()
        np.testing.assert_allclose(lite["year"], served["year"], atol=0.05)
        np.testing.assert_allclose(lite["year_sigma"], served["year_sigma"], rtol=1e-3)


def test_the_export_readme_is_a_hub_card_with_the_runs_figures_and_no_paths(exported):
    _, out = exported
    text = (out / "README.md").read_text()
    fields = read_front_matter(text)
    for key in ("license", "tags", "datasets", "library_name", "metrics", "model-index"):
        assert key in fields, key
    assert fields["datasets"] == ["folder paintings:train"]
    results = fields["model-index"][0]["results"]
    values = {m["name"]: m["value"] for result in results for m in result["metrics"]}
    assert values == {
        "school top-1 accuracy": 0.41,
        "school top-3 accuracy": 0.7,
        "school balanced accuracy": 0.33,
        "year mean absolute error (years)": 61.5,
    }
    assert "/home/ann" not in text and "private" not in text
    for heading in ("## The heads", "## Intended use and limits", "## Training data and evaluation"):
        assert heading in text


def test_the_hub_card_metrics_are_report_json_s_own(tmp_path):
    """Through the run's own path: `evaluate` writes report.json, `artnet.run.model_card` makes the card from it,
    the export writes README.md; every metric of the front matter is report.json's value (to 4 decimals)."""
    from artnet import labels
    from artnet.data.sources import folder_source
    from artnet.evaluation.evaluate import evaluate
    from artnet.models.artnet import ArtNet
    from artnet.run import model_card
    from artnet.serving.export import export

    keras.utils.set_random_seed(3)
    model = ArtNet("tiny", image_size=32, year_head=True, dropout=0.0)
    rng = np.random.default_rng(3)
    rows = ["file,author,year,timeframe,school,type"]
    for number in range(16):
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(tmp_path / f"{number}.png")
        school, kind = labels.SCHOOLS[number % 3], labels.VOCABULARIES["type"][number % 2]
        rows.append(f"{number}.png,painter {number % 4},{1500 + 20 * number},,{school},{kind}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    source = folder_source(tmp_path)
    counts = {
        head: np.bincount(
            source.labels[head][source.labels[head] >= 0], minlength=len(labels.VOCABULARIES[head])
        ).tolist()
        for head in labels.HEADS
    }
    report = evaluate(model, source, tmp_path / "eval", train_counts=counts)
    card = model_card({"train": source, "test": source}, counts, report)
    out = export(model, tmp_path / "export", card=card)
    written = json.loads((tmp_path / "eval" / "report.json").read_text())
    fields = read_front_matter((out / "README.md").read_text())
    values = {m["name"]: m["value"] for r in fields["model-index"][0]["results"] for m in r["metrics"]}
    expected = {"year mean absolute error (years)": round(written["year"]["mae"], 2)}
    for head in ("school", "timeframe", "type"):
        result = written["heads"].get(head, {})
        for key, name in (
            ("top1", "top-1 accuracy"),
            ("top3", "top-3 accuracy"),
            ("balanced_accuracy", "balanced accuracy"),
        ):
            if isinstance(result.get(key), float) and 0 <= result[key] <= 1:
                expected[f"{head} {name}"] = round(result[key], 4)
    assert len(expected) >= 7 and values == expected


def test_no_card_value_breaks_the_front_matter():
    hostile = "x\n---\nlicense: evil\n...\n# Heading\n[link](https://evil.example)"
    card = {"backbone": hostile, "heads": ["school", hostile], "data": hostile, "image_size": 32}
    card["test"] = {hostile: {"top1": 0.5}, "school": {"top1": float("nan"), "top3": "0.9", "balanced_accuracy": 7}}
    text = hub_readme(card)
    fields = read_front_matter(text)
    assert fields["license"] == "apache-2.0"
    assert all(isinstance(tag, str) and "\n" not in tag for tag in fields["tags"])
    values = [m["value"] for result in fields.get("model-index", [{}])[0].get("results", []) for m in result["metrics"]]
    assert values == [0.5]  # the NaN, the string and the 7 are not figures
    body = text.split("---\n", 2)[2]
    assert "\n---\n" not in body.replace("\\-\\-\\-", "")
    assert "license: evil" not in text.split("---\n", 2)[1].splitlines()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_space_folder_runs_the_demo_from_the_wheel_alone(exported, wheel, tmp_path):
    _, out = exported
    space = write_space(out, tmp_path / "space", wheel=wheel)
    names = {path.name for path in space.iterdir()}
    assert {"README.md", "app.py", "requirements.txt", ".gitattributes", "export", wheel.name} <= names
    fields = read_front_matter((space / "README.md").read_text())
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    pinned = [line.strip() for line in setup["options"]["install_requires"].splitlines() if "gradio==" in line]
    assert pinned == [f"gradio=={GRADIO_VERSION}"] and fields["sdk_version"] == GRADIO_VERSION
    assert fields["sdk"] == "gradio" and fields["app_file"] == "app.py"
    assert (space / "requirements.txt").read_text().splitlines() == ["tensorflow-cpu==2.21.0", f"./{wheel.name}"]
    assert "*.keras filter=lfs" in (space / ".gitattributes").read_text()
    assert (space / "export" / "model.keras").is_file() and not (space / "export" / "saved_model").exists()

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    image = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image, "PNG")
    (tmp_path / "painting.png").write_bytes(image.getvalue())
    script = (
        "import json, runpy, sys, artnet\n"
        "app = runpy.run_path('app.py')\n"
        "answer = app['demo'].backend.classify(open(sys.argv[1], 'rb').read())\n"
        "values = [str(getattr(block, 'value', '')) for block in app['demo'].blocks.values()]\n"
        "notes = [value for value in values if 'No similar paintings' in value]\n"
        "print(json.dumps({'artnet': artnet.__file__, 'labels': answer.labels, 'notes': notes}))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="2", GRADIO_ANALYTICS_ENABLED="False")
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "painting.png")],
        cwd=space,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["notes"] == [NO_INDEX]  # the export has no index: the page says so
    assert NO_INDEX in (space / "README.md").read_text()
    assert Path(result["artnet"]).resolve().is_relative_to(target.resolve())
    assert set(result["labels"]) == {"school", "timeframe", "type"}
    for head, ranked in result["labels"].items():
        assert ranked and all(0 <= p <= 1 for p in ranked.values()), (head, ranked)


def test_space_refuses_a_non_empty_out_without_force_and_says_why_index_is_missing(exported, wheel, tmp_path, capsys):
    _, out = exported
    space = tmp_path / "space"
    space.mkdir()
    (space / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not empty \(it holds notes.txt\): pass --force"):
        write_space(out, space, wheel=wheel)
    assert (space / "notes.txt").read_text() == "mine"
    assert main(["space", "--model", str(out), "--out", str(space)]) == 2
    assert "--force" in capsys.readouterr().err
    for overlapping in (out.parent, out / "space"):  # would delete the export, or copy itself into itself
        with pytest.raises(ValueError, match="overlap"):
            write_space(out, overlapping, wheel=wheel, force=True)
    assert (out / "model.keras").is_file()
    # An export WITH an index, left out of the Space (the default): the page says why.
    indexed = tmp_path / "indexed"
    shutil.copytree(out, indexed)
    (indexed / "index").mkdir()
    (indexed / "index" / "embeddings.npy").write_bytes(b"")
    write_space(indexed, space, wheel=wheel, force=True)
    assert not (space / "notes.txt").exists() and not (space / "export" / "index").exists()
    assert (
        INDEX_LEFT_OUT in (space / "README.md").read_text() and repr(INDEX_LEFT_OUT) in (space / "app.py").read_text()
    )
    assert not list((space / "export").glob("*.tflite"))  # the demo serves model.keras: no LiteRT upload


@pytest.mark.slow
def test_the_space_requirements_install_offline_into_a_fresh_venv(exported, wheel, tmp_path):
    """Minutes: installs TensorFlow and every pin from local wheels (`pip download -r requirements.txt` first,
    into $ARTNET_WHEELHOUSE), no index."""
    wheelhouse = os.environ.get("ARTNET_WHEELHOUSE")
    if not wheelhouse:
        pytest.skip("set ARTNET_WHEELHOUSE to a folder of wheels for requirements.txt")
    _, out = exported
    space = write_space(out, tmp_path / "space", wheel=wheel)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-index", "--find-links", wheelhouse, "-r", "requirements.txt"]
    subprocess.run(install, check=True, cwd=space, timeout=1800)
    done = subprocess.run(
        [str(python), "-c", "import runpy; runpy.run_path('app.py')"], cwd=space, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
