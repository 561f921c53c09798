"""Export a trained ArtNet: the `.keras` file, and a TensorFlow SavedModel for serving without artnet.

The SavedModel's `serving_default` signature takes a batch of uint8 RGB images of any size and returns one
probability tensor per head; its `labels` signature returns the class names per head, so that
`tf.saved_model.load(path)` alone (TF Serving, no artnet, no Keras) gives named answers. `labels.json` and
`model_card.json` sit beside them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import tensorflow as tf

import artnet.models.artnet  # noqa: F401  (registers ArtNet for deserialisation, for `load_model`)
from artnet import labels
from artnet.data.atomic_files import write_atomically
from artnet.evaluation.calibration import calibration_to_json
from artnet.serving import similar
from artnet.serving.litert import write_tflite
from artnet.serving.model_card import write_readme
from artnet.workdir import Export


class ServingModule(tf.Module):
    """The model's own serving function (`ArtNet.serving_function`) and the class names, for a SavedModel."""

    def __init__(self, model):
        super().__init__(name="artnet_serving")
        self.model = model  # tracked: its variables are saved with the module
        self._heads = tuple(model.heads)
        self.serve = model.serving_function()

    @tf.function(input_signature=[])
    def label_names(self):
        return {head: tf.constant(list(labels.VOCABULARIES[head])) for head in self._heads}


def export(
    model, out_dir: str | Path, card: dict | None = None, index_source=None, calibration=None, litert: bool = True
) -> Path:
    """Write `model.keras`, `saved_model/`, `labels.json`, `model_card.json`, `README.md` (the Hugging Face
    model card) and, with `litert`, `model.tflite` (LiteRT, for offline apps) into `out_dir`.

    With `index_source` (the training collection), also `index/`: embeddings and thumbnails for the demo's
    similar-paintings search. With `calibration` (per head, a `calibration.HeadCalibration` fitted on validation),
    also `calibration.json`, which the predictor applies. Everything is written to a staging folder that replaces
    `out_dir` only when complete, and every file of it is fsynced before that rename (and the parent folder after
    it): an export killed halfway, or cut by a power loss, never leaves a folder that looks finished (`make demo`
    keys on it).
    The JSON files are strict JSON: a NaN of the card (an empty test split's accuracy) is written as null.
    """
    final_dir = Path(out_dir)
    staging = Export(final_dir.with_name(f".{final_dir.name}.partial"))
    shutil.rmtree(staging.root, ignore_errors=True)  # a previous attempt that was killed
    staging.root.mkdir(parents=True)
    model.save(str(staging.model))
    module = ServingModule(model)
    tf.saved_model.save(
        module,
        str(staging.saved_model),
        signatures={"serving_default": module.serve, "labels": module.label_names},
    )
    label_table = {head: list(labels.VOCABULARIES[head]) for head in model.heads}
    write_atomically(staging.labels, json.dumps(label_table, indent=2).encode())
    card = {
        "backbone": model.backbone_name,
        "heads": list(model.heads),
        "image_size": model.image_size,
        "parameters": int(model.count_params()),
        **(card or {}),
    }
    write_atomically(staging.card, json.dumps(similar.json_safe(card), indent=2, allow_nan=False).encode())
    # The sharing files (artnet.serving.model_card, artnet.serving.litert): the Hub card, and LiteRT unless refused.
    write_readme(staging.root, similar.json_safe(card), label_table)
    if litert:
        write_tflite(model, staging.root)
    if calibration:
        record = calibration_to_json({head: calibration[head] for head in model.heads if head in calibration})
        write_atomically(staging.calibration, json.dumps(record, indent=2, allow_nan=False).encode())
    if index_source is not None:
        similar.build_index(model, index_source, staging.index.root)
    fsync_tree(staging.root)
    if final_dir.exists():
        previous = final_dir.with_name(f".{final_dir.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        final_dir.rename(previous)
        staging.root.rename(final_dir)
        shutil.rmtree(previous)
    else:
        staging.root.rename(final_dir)
    _fsync(final_dir.parent)
    return final_dir


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (symbolic links are not followed): what a rename of `root`
    then publishes is on disk, not only in the page cache."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                _fsync(path)
        _fsync(Path(folder))


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_model(path: str | Path):
    """A `.keras` file (or an export folder holding model.keras) -> the ArtNet model."""
    path = Path(path)
    if path.is_dir():
        path = Export(path).model
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}: train one with `artnet train` or give a .keras file")
    try:
        return keras.models.load_model(str(path), compile=False)  # inference needs no optimizer state
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(f"{path} is not a readable ArtNet .keras file ({error}); re-export or retrain it") from error
