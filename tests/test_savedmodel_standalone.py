"""The exported SavedModel answers with TensorFlow alone, as TF Serving would run it: no artnet to import.

A tiny model (with a year head) is exported by `artnet export`; a fresh interpreter in which `import artnet` is
impossible loads `saved_model/` with `tf.saved_model.load`, decodes a fixed PNG with TensorFlow and calls the
`serving_default` and `labels` signatures. Its answers must be the `.keras` model's, read here through artnet's
own predictor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from artnet import labels

ROOT = Path(__file__).resolve().parents[1]

# Run with `python -I` (no PYTHONPATH, no user site, no script folder on sys.path) from an empty folder, and with a
# finder ahead of every other that refuses artnet: an editable install would otherwise still find it.
STANDALONE = r"""
import sys

class NoArtnet:
    def find_spec(self, name, path=None, target=None):
        if name == "artnet" or name.startswith("artnet."):
            raise ModuleNotFoundError(f"artnet is not importable here ({name})")
        return None

sys.meta_path.insert(0, NoArtnet())
try:
    import artnet  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the blocker failed: artnet imported")

import json
import numpy as np
import tensorflow as tf

saved_model, image_file, out_file = sys.argv[1:4]
loaded = tf.saved_model.load(saved_model)
image = tf.io.decode_png(tf.io.read_file(image_file), channels=3)
serve = loaded.signatures["serving_default"]
outputs = serve(images=image[tf.newaxis])
names = {head: [n.decode() for n in value.numpy()] for head, value in loaded.signatures["labels"]().items()}
np.savez(out_file, **{name: tensor.numpy() for name, tensor in outputs.items()})
inputs = serve.structured_input_signature[1]
print(json.dumps({
    "names": names,
    "inputs": {name: [spec.dtype.name, spec.shape.as_list()] for name, spec in inputs.items()},
    "artnet_loaded": sorted(m for m in sys.modules if m == "artnet" or m.startswith("artnet.")),
}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny model with confident, distinct answers (large random head weights), exported by `artnet export`."""
    from artnet.models.artnet import ArtNet

    folder = tmp_path_factory.mktemp("standalone")
    keras.utils.set_random_seed(3)
    model = ArtNet("tiny", image_size=32, year_head=True, dropout=0.5)
    rng = np.random.default_rng(3)
    for task in model.tasks:
        layer = model.get_layer(task)
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(0, 1.0, kernel.shape).astype(np.float32), bias])
    model.save(folder / "trained.keras")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", "artnet.cli", "export", "--model", str(folder / "trained.keras"), "--out", "export"],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "export"


@pytest.fixture(scope="module")
def painting(tmp_path_factory) -> Path:
    """A fixed, non-square image (so the crop to a square matters) with structure at every scale."""
    y, x = np.mgrid[0:45, 0:61]
    pixels = np.stack([(x * 4) % 256, (y * 5) % 256, ((x * y) // 3) % 256], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("painting") / "painting.png"
    Image.fromarray(pixels).save(path)
    return path


def test_the_savedmodel_serves_the_keras_models_answers_without_artnet(exported, painting, tmp_path):
    from artnet.models.artnet import EMBEDDING
    from artnet.serving.predictor import Predictor

    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    out = tmp_path / "served.npz"
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE, str(exported / "saved_model"), str(painting), str(out)],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["artnet_loaded"] == []
    assert report["inputs"] == {"images": ["uint8", [None, None, None, 3]]}  # any size, any batch
    served = dict(np.load(out))

    # The class names travel inside the SavedModel, in the order of the probabilities.
    assert report["names"] == {head: list(labels.VOCABULARIES[head]) for head in labels.HEADS}
    assert report["names"] == json.loads((exported / "labels.json").read_text())

    predictor = Predictor(exported / "model.keras", top_k=max(len(v) for v in labels.VOCABULARIES.values()))
    expected = predictor.predict(str(painting))
    assert set(served) >= set(labels.HEADS)
    for head in labels.HEADS:
        by_name = dict(expected[head])
        keras_probabilities = np.array([by_name[name] for name in labels.VOCABULARIES[head]])
        assert served[head].shape == (1, len(labels.VOCABULARIES[head]))
        # The same graph on the same machine: only float32 round-off between the two runtimes.
        np.testing.assert_allclose(served[head][0], keras_probabilities, atol=1e-5)
        assert served[head][0].sum() == pytest.approx(1.0, abs=1e-5)
        assert served[head][0].max() > 1.5 / len(labels.VOCABULARIES[head])  # confident: a mix-up would show
    year, sigma = expected[labels.YEAR]
    np.testing.assert_allclose(served[labels.YEAR][0], year, rtol=0, atol=1e-2)  # years: 1e-2 of a year
    np.testing.assert_allclose(served["year_sigma"][0], sigma, rtol=1e-5)
    if EMBEDDING in served:  # the export serves no embedding today; if it does, it must be the predictor's
        np.testing.assert_allclose(served[EMBEDDING][0], expected[EMBEDDING], atol=1e-5)
    else:
        assert set(served) == {*labels.HEADS, labels.YEAR, "year_sigma"}
