"""Export a trained ArtNet: the `.keras` file, and a TensorFlow SavedModel for serving without artnet.

The SavedModel's `serving_default` signature takes a batch of uint8 RGB images of any size and returns one
probability tensor per head, calibrated when the export is (with the raw softmax and the conformal set beside it:
`artnet.serving.calibrated_signature`); its `labels` signature returns the class names per head, so that
`tf.saved_model.load(path)` alone (TF Serving, no artnet, no Keras) gives the answers artnet gives. `labels.json`,
`model_card.json` (with the model's `image_size` and `framing`, what a LiteRT client needs to prepare an image)
and `README.md` (the Hub model card) sit beside them; with `litert`, the LiteRT models too (`artnet.serving.litert`).
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
from artnet.evaluation.calibration import calibration_from_json, calibration_to_json
from artnet.serving import similar
from artnet.serving.calibrated_signature import calibrated
from artnet.serving.litert import write_litert
from artnet.serving.model_card import write_readme
from artnet.workdir import Export


class ServingModule(tf.Module):
    """The model's own serving function (`ArtNet.serving_function`), calibrated when `calibration` (per head, a
    `HeadCalibration`) is given, and the class names, for a SavedModel."""

    def __init__(self, model, calibration: dict | None = None):
        super().__init__(name="artnet_serving")
        self.model = model  # tracked: its variables are saved with the module
        self._heads = tuple(model.heads)
        serve = model.serving_function()
        self.serve = calibrated(serve, calibration) if calibration else serve

    @tf.function(input_signature=[])
    def label_names(self):
        return {head: tf.constant(list(labels.VOCABULARIES[head])) for head in self._heads}


def export(
    model,
    out_dir: str | Path,
    card: dict | None = None,
    index_source=None,
    calibration=None,
    litert: bool = False,
    representative=None,
    carry_from: str | Path | None = None,
) -> Path:
    """Write `model.keras`, `saved_model/`, `labels.json`, `model_card.json`, `README.md` (the Hugging Face
    model card) and, with `litert`, `model.tflite`, `model_fp16.tflite` and (calibrated on `representative`,
    uint8 training images) `model_int8.tflite` (LiteRT, for offline apps: `artnet.serving.litert`) into `out_dir`.
    LiteRT is off by default: its conversions take minutes for a full-size backbone, which a run's own export
    (`artnet.run`) should not spend; a refusing converter raises `LiteRTError` and nothing is published.

    `carry_from`, an export folder (re-exporting it, e.g. with `--litert`): its card (under `card`'s keys), its
    `calibration.json` and its `index/` come along, read through the same guarded readers as the demo's.

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
    try:
        _write(model, staging, card, index_source, calibration, litert, representative, carry_from)
    except BaseException:
        shutil.rmtree(staging.root, ignore_errors=True)  # nothing half-made stays behind
        raise
    fsync_tree(staging.root)
    return _publish(staging, final_dir)


def _write(model, staging: Export, card, index_source, calibration, litert, representative, carry_from) -> None:
    previous = Export(Path(carry_from)) if carry_from else None
    record = None  # what the export serves: its calibration.json, or none (uncalibrated)
    if calibration:
        record = calibration_to_json({head: calibration[head] for head in model.heads if head in calibration})
    elif previous and previous.calibration.is_file():
        record = similar.read_json_inside(previous.root, previous.calibration)
    # Read back through the guarded reader: a carried, crafted calibration.json is refused here, not served.
    source = str(previous.calibration) if previous and not calibration else "calibration"
    served = calibration_from_json(record, source=source) if record else None
    model.save(str(staging.model))
    module = ServingModule(model, served)
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
        "framing": getattr(model, "framing", "crop"),
        "parameters": int(model.count_params()),
        **(_read_card(previous) if previous else {}),
        **(card or {}),
    }
    write_atomically(staging.card, json.dumps(similar.json_safe(card), indent=2, allow_nan=False).encode())
    if record:
        write_atomically(staging.calibration, json.dumps(record, indent=2, allow_nan=False).encode())
    # The sharing files (artnet.serving.litert, artnet.serving.model_card): LiteRT when asked, then the Hub card,
    # which states the calibration served and lists the LiteRT files written.
    written = write_litert(model, staging.root, representative) if litert else {}
    write_readme(
        staging.root,
        similar.json_safe(card),
        label_table,
        calibration=record or None,
        litert_files=[path.name for path in written.values()],
    )
    if index_source is not None:
        similar.build_index(model, index_source, staging.index.root)
    elif previous and previous.index.embeddings.is_file():
        similar.SimilarityIndex.load(previous.index.root, root=previous.root)  # refuses links out and bad files
        shutil.copytree(previous.index.root, staging.index.root, symlinks=True)


def _read_card(files: Export) -> dict:
    """The card of an export being re-exported, through the demo's guarded reader (a regular file inside it, a
    JSON object), imported here: it brings gradio, which a run's own export does not need."""
    from artnet.serving.files import read_card

    return read_card(files)


def _publish(staging: Export, final_dir: Path) -> Path:
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


def refuse_non_empty(out: str | Path, force: bool, option: str = "--out") -> None:
    """ValueError, saying what is there, when `out` is a folder (or a file) holding anything and not `force`:
    writing there would replace it."""
    out = Path(out)
    if not os.path.lexists(out) or force:
        return
    if not out.is_dir() or out.is_symlink():
        raise ValueError(f"{option} {out} is a file, not a folder: pick another folder, or pass --force to replace it")
    names = sorted(path.name for path in out.iterdir())
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ValueError(
            f"{option} {out} is not empty (it holds {shown}): pass --force to replace what is there, "
            "or pick another folder"
        )


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
