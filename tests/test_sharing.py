"""Sharing an export: its LiteRT model answers as the Keras model does, its README.md is a Hub model card whose
front matter no card value can break, and `artnet space` writes a folder that runs the demo from artnet's wheel
alone (the checkout not importable)."""

from __future__ import annotations

import configparser
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from artnet.data.preprocessing import resize_and_crop
from artnet.serving.model_card import hub_readme
from artnet.serving.space import GRADIO_VERSION, build_wheel, read_front_matter, write_space

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
    out = export(model, tmp_path_factory.mktemp("share") / "export", card=dict(CARD))
    return model, out


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
        "print(json.dumps({'artnet': artnet.__file__, 'labels': answer.labels}))\n"
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
    assert Path(result["artnet"]).resolve().is_relative_to(target.resolve())
    assert set(result["labels"]) == {"school", "timeframe", "type"}
    for head, ranked in result["labels"].items():
        assert ranked and all(0 <= p <= 1 for p in ranked.values()), (head, ranked)


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
