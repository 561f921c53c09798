"""Export a trained ArtNet: the `.keras` file, and a TensorFlow SavedModel for serving without artnet.

The SavedModel's `serving_default` signature takes a batch of uint8 RGB images of any size and returns one
probability tensor per head; its `labels` signature returns the class names per head, so that
`tf.saved_model.load(path)` alone (TF Serving, no artnet, no Keras) gives named answers. `labels.json` and
`model_card.json` sit beside them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

import artnet.models.artnet  # noqa: F401  (registers ArtNet for deserialisation, for `load_model`)
from artnet import labels
from artnet.serving import similar
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


def export(model, out_dir: str | Path, card: dict | None = None, index_source=None) -> Path:
    """Write `model.keras`, `saved_model/`, `labels.json`, `model_card.json` into `out_dir`.

    With `index_source` (the training collection), also `index/`: embeddings and thumbnails for the demo's
    similar-paintings search. Everything is written to a staging folder that replaces `out_dir` only when
    complete: an export killed halfway never leaves a folder that looks finished (`make demo` keys on it).
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
    staging.labels.write_text(json.dumps(label_table, indent=2))
    card = {
        "backbone": model.backbone_name,
        "heads": list(model.heads),
        "image_size": model.image_size,
        "parameters": int(model.count_params()),
        **(card or {}),
    }
    staging.card.write_text(json.dumps(card, indent=2))
    if index_source is not None:
        similar.build_index(model, index_source, staging.index.root)
    if final_dir.exists():
        previous = final_dir.with_name(f".{final_dir.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        final_dir.rename(previous)
        staging.root.rename(final_dir)
        shutil.rmtree(previous)
    else:
        staging.root.rename(final_dir)
    return final_dir


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
