"""`artnet export --litert`: float32, float16 and full-integer int8 LiteRT models with the heads' names, a
converter refusal that names the layer, and `examples/litert_predict.py` answering as the Keras model does
without TensorFlow or artnet."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from artnet.cli import main
from artnet.serving import litert

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "litert_predict.py"
HEADS = {"school", "timeframe", "type", "year", "year_sigma"}
CARD = {"data": "paintings:train", "train_examples": 900, "test": {"school": {"n": 90, "top1": 0.5}}}


def smooth_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Colour gradients with a blob: images whose resize by PIL or by TensorFlow differ by a pixel value at most."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3), rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2) * 8)[..., None]
        image = 255 * np.clip(a * x[..., None] + b * (1 - y[..., None]) * 0.6 + blob * 0.5, 0, 1)
        images.append(image.astype(np.uint8))
    return images


def tiny_model():
    from artnet.models.artnet import ArtNet

    keras.utils.set_random_seed(7)
    model = ArtNet("tiny", image_size=32, year_head=True, dropout=0.0)
    rng = np.random.default_rng(7)
    for task in model.tasks:  # spread answers: a random head's near-ties would make any comparison a coin toss
        layer = model.get_layer(task)
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(0, 1.0, kernel.shape).astype(np.float32), bias])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from artnet.serving.export import export

    model = tiny_model()
    out = export(
        model,
        tmp_path_factory.mktemp("litert") / "export",
        card=dict(CARD),
        litert=True,
        representative=smooth_images(60, 48, seed=1),
    )
    return model, out


def keras_answers(model, image: np.ndarray) -> dict:
    return {k: v.numpy()[0] for k, v in model.serving_function()(tf.constant(image[np.newaxis])).items()}


def test_export_writes_three_litert_models_named_by_head(exported):
    from ai_edge_litert.interpreter import Interpreter

    model, out = exported
    sizes = {name: (out / name).stat().st_size for name in litert.FILES.values()}
    assert sizes[litert.INT8_FILE] < sizes[litert.FP16_FILE] < sizes[litert.TFLITE_FILE]
    images = smooth_images(8, 32, seed=3)
    for name in litert.FILES.values():
        interpreter = Interpreter(model_path=str(out / name))
        signatures = interpreter.get_signature_list()
        assert set(signatures) == {"serving_default"}, name
        assert signatures["serving_default"]["inputs"] == ["images"]
        assert set(signatures["serving_default"]["outputs"]) == HEADS
        runner = interpreter.get_signature_runner()
        assert runner.get_input_details()["images"]["dtype"] == np.uint8  # pixels in, whatever the weights
        agree = 0
        for image in images:
            lite, served = runner(images=image[np.newaxis]), keras_answers(model, image)
            for head in ("school", "timeframe", "type"):
                assert lite[head].dtype == np.float32 and abs(lite[head][0].sum() - 1) < 0.02, (name, head)
                agree += int(lite[head][0].argmax() == served[head].argmax())
                if name != litert.INT8_FILE:
                    np.testing.assert_allclose(lite[head][0], served[head], atol=0.01)
        # int8 rounds every activation: its top class may differ on a near-tie, rarely.
        assert agree >= 0.8 * 3 * len(images), (name, agree)
    details = Interpreter(model_path=str(out / litert.INT8_FILE))._get_ops_details()
    int8 = Interpreter(model_path=str(out / litert.INT8_FILE))
    convolutions = [op for op in details if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    tensors = {tensor["index"]: tensor["dtype"] for tensor in int8.get_tensor_details()}
    assert convolutions and all(tensors[op["inputs"][1]] == np.int8 for op in convolutions)  # int8 weights
    assert all(tensors[op["inputs"][0]] == np.int8 for op in convolutions)  # and int8 activations


def test_without_representative_images_int8_is_refused_and_the_float_models_written(tmp_path, capsys):
    from artnet.serving.export import export

    out = export(tiny_model(), tmp_path / "export", litert=True)
    assert (out / litert.TFLITE_FILE).is_file() and (out / litert.FP16_FILE).is_file()
    assert not (out / litert.INT8_FILE).exists()
    assert "--representative" in capsys.readouterr().err
    plain = export(tiny_model(), tmp_path / "plain")  # the default: no time spent on LiteRT
    assert not list(plain.glob("*.tflite"))


class OddLayer(keras.layers.Layer):
    """An operation LiteRT has no builtin for (the regularised incomplete gamma function)."""

    def call(self, inputs):
        return tf.math.igamma(inputs * inputs + 1.0, inputs * inputs + 2.0)


def test_a_refused_conversion_names_the_layer_and_publishes_nothing(tmp_path, monkeypatch):
    from artnet.serving import export as export_module

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="stem")(inputs)
    x = OddLayer(name="odd_gamma")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, {"school": keras.layers.Dense(6, activation="softmax", name="school")(x)})
    model.image_size = 16
    with pytest.raises(litert.LiteRTError) as refused:
        litert.tflite_model(model)
    message = str(refused.value)
    assert "layer odd_gamma (op Igamma) has no LiteRT builtin" in message and "without --litert" in message

    def refuse(*_args, **_kwargs):
        raise refused.value

    monkeypatch.setattr(export_module, "write_litert", refuse)  # an ArtNet whose backbone LiteRT refuses
    with pytest.raises(litert.LiteRTError, match="odd_gamma"):
        export_module.export(tiny_model(), tmp_path / "export", litert=True)
    assert not list(tmp_path.iterdir())  # neither the export nor its staging folder


def test_cli_export_litert_calibrates_on_a_folder_and_keeps_the_card(exported, tmp_path, capsys):
    _, source = exported
    images = tmp_path / "train"
    images.mkdir()
    for number, image in enumerate(smooth_images(12, 40, seed=5)):
        Image.fromarray(image).save(images / f"{number}.png")
    out = tmp_path / "again"
    argv = ["export", "--model", str(source), "--out", str(out), "--litert", "--representative", str(images)]
    assert main(argv) == 0
    assert {path.name for path in out.glob("*.tflite")} == set(litert.FILES.values())
    card = json.loads((out / "model_card.json").read_text())
    assert card["test"] == CARD["test"] and card["framing"] == "crop"  # carried from the export it re-exports
    capsys.readouterr()
    assert main(argv) == 2  # --out holds the export now
    err = capsys.readouterr().err
    assert f"--out {out} is not empty" in err and "model.keras" in err and "--force" in err
    assert main(["export", "--model", str(source), "--out", str(out), "--force"]) == 0
    assert not list(out.glob("*.tflite"))  # replaced, and the default writes no LiteRT


def test_cli_export_without_run_config_or_folder_refuses_int8_and_says_why(exported, tmp_path, capsys):
    _, source = exported
    assert main(["export", "--model", str(source), "--out", str(tmp_path / "x"), "--litert"]) == 0
    err = capsys.readouterr().err
    assert "no model_int8.tflite" in err and "--representative DIR" in err
    assert (tmp_path / "x" / litert.FP16_FILE).is_file() and not (tmp_path / "x" / litert.INT8_FILE).exists()


# The example runs with TensorFlow, Keras and artnet unimportable: what a phone or a kiosk has.
BLOCKED = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "artnet", "tf_keras"):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def write_photo(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A non-square photo with an EXIF orientation (rotated on disk), and the upright pixels it stands for."""
    upright = smooth_images(1, 90, seed=11)[0][:, 10:80]  # 90 high, 70 wide
    on_disk = Image.fromarray(np.rot90(upright, k=-1))  # stored turned; EXIF 8 says: rotate back
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "photo.jpg"
    on_disk.save(path, quality=98, exif=exif)
    return path, np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_90))


def check_example_answers(python: str, exported, tmp_path: Path, env: dict | None = None) -> None:
    model, out = exported
    photo, upright = write_photo(tmp_path)
    served = keras_answers(model, upright)
    for name in (litert.TFLITE_FILE, litert.INT8_FILE):
        done = subprocess.run(
            [python, "-c", BLOCKED, str(EXAMPLE), str(out / name), str(photo), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        ranked = json.loads(done.stdout.strip().splitlines()[-1])
        labels = json.loads((out / "labels.json").read_text())
        for head in ("school", "timeframe", "type"):
            assert ranked[head][0][0] == labels[head][int(served[head].argmax())], (name, head, ranked[head])
    text = subprocess.run(
        [python, "-c", BLOCKED, str(EXAMPLE), str(out / litert.FP16_FILE), str(photo)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert text.returncode == 0 and text.stdout.startswith("school: ") and "year: about" in text.stdout


def test_the_example_answers_as_keras_without_tensorflow(exported, tmp_path):
    env = {**os.environ, "PYTHONPATH": ""}  # not the checkout: the example imports nothing of artnet
    check_example_answers(sys.executable, exported, tmp_path, env)


def test_the_example_applies_the_exports_calibration(exported, tmp_path):
    """With calibration.json beside the model, the example's probabilities are the calibrated ones and its sets
    are artnet's (`calibration.apply_temperature`, `conformal.prediction_sets`), still without TensorFlow."""
    import shutil

    from artnet.evaluation.calibration import HeadCalibration, apply_temperature, calibration_to_json
    from artnet.evaluation.conformal import ConformalSets, prediction_sets

    model, out = exported
    folder = tmp_path / "export"
    shutil.copytree(out, folder)
    rules = {
        "school": HeadCalibration(2.5, ConformalSets("aps", 0.9, 0.6, 200)),
        "timeframe": HeadCalibration(0.7, ConformalSets("raps", 0.8, 0.9, 200, lam=0.05, k_reg=1)),
        "type": HeadCalibration(1.0, ConformalSets("aps", 0.9, float("inf"), 3)),
    }
    (folder / "calibration.json").write_text(json.dumps(calibration_to_json(rules)))
    photo, upright = write_photo(tmp_path)
    served = keras_answers(model, upright)
    env = {**os.environ, "PYTHONPATH": ""}
    command = [sys.executable, "-c", BLOCKED, str(EXAMPLE), str(folder / litert.TFLITE_FILE), str(photo)]
    done = subprocess.run([*command, "--json", "--top", "100"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    names = json.loads((folder / "labels.json").read_text())
    for head, rule in rules.items():
        expected = apply_temperature(served[head][np.newaxis], rule.temperature)[0]
        got = dict(answer[head])
        np.testing.assert_allclose([got[name] for name in names[head]], expected, atol=2e-3)
        members = prediction_sets(expected[np.newaxis], rule.sets)[0]
        assert answer["sets"][head]["classes"] == [names[head][i] for i in members]
    assert len(answer["sets"]["type"]["classes"]) == len(names["type"])  # qhat null: every class
    text = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert text.returncode == 0 and "(90% set); ranked " in text.stdout and "(80% set)" in text.stdout


def setup_pins() -> list[str]:
    """setup.cfg's requirement lines for the example's three packages (install_requires and the extras)."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    values = [setup["options"]["install_requires"], *setup["options.extras_require"].values()]
    lines = [line.split("#")[0].strip() for value in values for line in value.splitlines()]
    wanted = ("ai-edge-litert", "pillow", "numpy")
    return [line for line in lines if line and re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower() in wanted]


@pytest.mark.slow
def test_the_example_runs_in_a_fresh_venv_with_only_its_three_packages(exported, tmp_path):
    """A minute: a new virtual environment, `pip install` of setup.cfg's pins of ai-edge-litert, Pillow and numpy
    from PyPI (skipped, saying so, where pip cannot reach it), then the example as above."""
    pins = setup_pins()
    assert len(pins) == 3 and any(pin.startswith("ai-edge-litert==") for pin in pins), pins
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0:
        pytest.skip(f"pip could not install {pins} into a fresh venv: {install.stderr.strip()[-500:]}")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    assert "tensorflow" not in listed.stdout.lower() and "artnet" not in listed.stdout.lower()
    check_example_answers(python, exported, tmp_path)


def test_cli_export_litert_finds_the_runs_training_split_through_its_config(exported, tmp_path, capsys):
    """`--model RUN/export`: the run's config.json names a labelled folder; int8 calibrates on its training split
    (painters 70/15/15), and only on it."""
    from artnet.config import DataConfig, TrainConfig
    from artnet.data.sources import folder_source

    _, source = exported
    folder = tmp_path / "paintings"
    folder.mkdir()
    rows = ["file,author,school,timeframe,type"]
    for number, image in enumerate(smooth_images(40, 40, seed=9)):
        Image.fromarray(image).save(folder / f"{number}.png")
        rows.append(f"{number}.png,painter {number % 20},Italian,1501-1550,portrait")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(backbone="tiny", image_size=32, data=DataConfig(source="folder", folder=str(folder)))
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    shutil.copytree(source, run / "export")
    seen = []
    real = litert.calibration_batches

    def recording(model, images):
        seen.extend(images)
        return real(model, images)

    with mock.patch.object(litert, "calibration_batches", recording):
        assert main(["export", "--model", str(run / "export"), "--out", str(tmp_path / "out"), "--litert"]) == 0
    assert (tmp_path / "out" / litert.INT8_FILE).is_file()
    train = folder_source(folder, split="train")
    assert 0 < len(seen) == len(train) < 40  # every training image (fewer than 300), none of the others
    assert all(image.shape == (32, 32, 3) and image.dtype == np.uint8 for image in seen)
