"""Predict with a trained ArtNet: ranked labels and the embedding for one image or a list of images.

Every prediction is ONE forward pass of the model's own serving function (`ArtNet.serving_function`, the same
one the SavedModel export serves), which returns the head probabilities and the pooled embedding together.
Images are opened by `artnet.data.images.load_photo` (EXIF upright, any colour mode -> RGB, size limits). A photo
of a painting on a wall goes through the photo step (`artnet.data.photo`: locate the painting, rectify it; a scan
passes through unchanged), then `artnet.data.preprocessing.resize_and_crop` with the model's framing, the resize of
the training pipeline, so predictions see the pixels training saw. Each prediction says what the photo step did:
`outline` (the four corners used, in the photo's own pixels, clockwise from the top-left, or None for the whole
image) and `found` (in words). A visitor who saw the outline miss may give the corners instead (`cut_out`'s
`corners`, checked by `check_corners`): no search, their quadrilateral is rectified and the answer says so. Batch
prediction over files is `artnet.serving.batch_predict`.

With a calibration (`calibration.json` of the export folder it loads, or `calibration=` given), each head's
probabilities are the calibrated ones (its temperature applied) and each prediction also holds `sets`: per head,
the labels of its conformal prediction set (most probable first; more than one label means "unsure"). Without
one, predictions are as they were, with no `sets`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.data.images import (  # noqa: F401  (callers catch ImageError)
    ImageError,
    ImageShapeError,
    bound_size,
    check_shape,
    load_photo,
)
from artnet.data.photo import Location, order_corners, painting_of_photo, rectify
from artnet.data.preprocessing import resize_and_crop
from artnet.evaluation.calibration import HeadCalibration, calibration_from_json
from artnet.evaluation.conformal import prediction_sets
from artnet.models.artnet import EMBEDDING, YEAR_SIGMA
from artnet.serving.export import load_model
from artnet.serving.files import ExportError, read_json_inside, shown_name
from artnet.workdir import Export

WHOLE_IMAGE_FLAG = "the whole image was used (--whole-image)"
WHOLE_IMAGE_ASKED = "the whole image was used, as asked"
CORNERS_GIVEN = "outline: tapped by you (the painting was cut out along your four corners)"
# Corners that outline no painting: three this close to a line (the third point's distance from the line through
# the other two, as a share of their distance), or a quadrilateral under this share of the photo.
COLLINEAR = 0.05
MIN_CORNERS_AREA = 0.01
# A prediction's key for the conformal sets (only with a calibration), and the suffix of a batch's sets of a head.
SETS = "sets"
_SET = "/set"

# --- the predictor ---------------------------------------------------------------------------------------


class Predictor:
    """Ranked labels and the embedding for images, from one compiled forward pass per call.

    `forward_passes` counts the calls of the compiled model function (one per `predict` / `predict_batch`).
    """

    def __init__(self, model_or_path, top_k: int = 3, locate_painting: bool = True, calibration: dict | None = None):
        """`calibration`: per head, a `HeadCalibration` (or its JSON); by default, given a path, the export's
        `calibration.json` when there is one."""
        if isinstance(model_or_path, str | os.PathLike):
            if calibration is None:
                calibration = read_calibration(model_or_path)
            model_or_path = load_model(model_or_path)
        self.model = model_or_path
        self.heads: tuple[str, ...] = tuple(self.model.heads)
        self.calibration: dict[str, HeadCalibration] = {
            head: value if isinstance(value, HeadCalibration) else HeadCalibration.from_dict(value)
            for head, value in (calibration or {}).items()
            if head in self.heads
        }
        self.year_head = bool(getattr(self.model, "year_head", False))
        self.image_size = int(self.model.image_size)
        self.top_k = check_top_k(top_k)
        self.locate_painting = locate_painting  # False: every image is taken whole, as a scan
        self.forward_passes = 0

        image_size, framing = self.image_size, self.model.framing
        # The heads and the pooled features from a single forward pass.
        forward = self.model.serving_function(embedding=True)

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
        def resize(image):
            return resize_and_crop(image, image_size, framing)

        # Trace now, once: the first request should not pay for it, and the signature never retraces.
        self._forward = forward.get_concrete_function()
        self._resize = resize.get_concrete_function()

    def prepare(self, image) -> np.ndarray:
        """Any accepted input -> the uint8 (image_size, image_size, 3) pixels the model reads. An image under
        32 px a side or more elongated than the serving limit is refused (`ImageShapeError`): nothing can be said
        about a 1x1 image, and three confident-looking answers would mislead."""
        return self.prepare_photo(image)[0]

    def prepare_photo(self, image) -> tuple[np.ndarray, dict]:
        """(the model's input pixels, what the photo step did: {"outline", "found", "confidence"})."""
        painting, where = self.painting(image)
        return self.fit_pixels(painting), where

    def painting(self, image) -> tuple[np.ndarray, dict]:
        """Any accepted input -> (the painting's RGB pixels: rectified out of a photo, or the image as it is, and
        what the photo step did, with the outline in the photo's own pixels)."""
        rgb, (width, _) = load_photo(image)
        return self.cut_out(_checked(rgb), width, whole_image=not self.locate_painting, why=WHOLE_IMAGE_FLAG)

    @staticmethod
    def cut_out(
        rgb: np.ndarray, shown_width: int, whole_image: bool = False, why: str = WHOLE_IMAGE_ASKED, corners=None
    ):
        """The photo step on decoded pixels (the predictor's and the demo's): (the painting's pixels, what was
        done, with the outline in the photo's own pixels, `shown_width` wide). `whole_image` skips the search,
        saying `why`. `corners` (four [x, y] in the photo's own pixels, any order: a visitor's) skips it too:
        their quadrilateral is rectified, recorded as the outline with confidence 1 (as the whole image asked
        for is), or `CornersError` says why they outline no painting."""
        if corners is not None:
            return cut_out_along(rgb, shown_width, corners)
        if whole_image:
            return rgb, describe(Location(None, 1.0, why), 1.0)
        painting, location = painting_of_photo(rgb)
        return _checked(painting), describe(location, shown_width / rgb.shape[1])

    def fit_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """A uint8 RGB array (from `artnet.data.images.load_rgb`) -> the model's input pixels."""
        array = bound_size(rgb, self.image_size)
        if array.shape[:2] == (self.image_size, self.image_size):
            return array  # resize_and_crop is the identity at the target size (tested)
        return self._resize(tf.constant(array)).numpy()

    def predict(self, image, top_k: int | None = None) -> dict:
        """{head: [(label, probability), ...] best first, "embedding": float32 vector, "outline", "found"} for one
        image; with a year head also "year": (mean year, standard deviation in years)."""
        painting, where = self.painting(image)
        array = bound_size(painting, self.image_size)
        return {**self._rank(self._run(array[np.newaxis]), 0, top_k), **where}

    def predict_batch(self, images: list, top_k: int | None = None) -> list[dict]:
        """`predict` for many images (any sizes) in one forward pass; an empty list makes no pass."""
        if not images:
            return []
        prepared = [self.prepare_photo(image) for image in images]
        return self.predict_pixels([pixels for pixels, _ in prepared], [where for _, where in prepared], top_k)

    def predict_pixels(self, pixels: list[np.ndarray], wheres: list[dict] | None = None, top_k=None) -> list[dict]:
        """`predict_batch` for inputs already through `prepare_photo` (the model's pixels, and what the photo step
        did for each): one forward pass, and no second search for a painting inside a painting."""
        if not pixels:
            return []
        results = self._run(np.stack(pixels))
        wheres = wheres or [{} for _ in pixels]
        return [{**self._rank(results, index, top_k), **where} for index, where in enumerate(wheres)]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.forward_passes += 1
        results = {name: tensor.numpy() for name, tensor in self._forward(tf.constant(batch)).items()}
        for head, calibration in self.calibration.items():  # the calibrated probabilities, and their sets
            results[head] = calibration.probabilities(results[head])
            results[f"{head}{_SET}"] = prediction_sets(results[head], calibration.sets)
        return results

    def _rank(self, results: dict[str, np.ndarray], index: int, top_k: int | None) -> dict:
        top_k = self.top_k if top_k is None else check_top_k(top_k)
        prediction = {}
        for head in self.heads:
            probabilities = results[head][index]
            best = np.argsort(-probabilities, kind="stable")[:top_k]
            prediction[head] = [(labels.VOCABULARIES[head][i], float(probabilities[i])) for i in best]
        if self.calibration:
            prediction[SETS] = {
                head: [labels.VOCABULARIES[head][i] for i in results[f"{head}{_SET}"][index]]
                for head in self.calibration
            }
        if self.year_head:
            prediction[labels.YEAR] = (float(results[labels.YEAR][index]), float(results[YEAR_SIGMA][index]))
        prediction[EMBEDDING] = results[EMBEDDING][index]
        return prediction


def read_calibration(path) -> dict | None:
    """The calibration stored beside a model (`calibration.json` of its export folder), or None. Read as every
    export file is (a regular file inside the folder, `read_json_inside`) and checked field by field: a crafted
    one (a NaN or negative temperature, an unknown head, ...) is an `ExportError` naming the file."""
    files = Export.of(Path(path))
    if not os.path.lexists(files.calibration):
        return None
    record = read_json_inside(files.root, files.calibration)
    try:
        return calibration_from_json(record, f"{shown_name(files.root, files.calibration)} in the export {files.root}")
    except ValueError as error:
        raise ExportError(str(error)) from None


def cut_out_along(rgb: np.ndarray, shown_width: int, corners) -> tuple[np.ndarray, dict]:
    """`Predictor.cut_out` along a visitor's corners (the photo's own pixels, `shown_width` wide): the painting
    rectified, and what was done, the outline being their corners, ordered. The photo's height in its own pixels
    is the decoded pixels' scaled as its width is, as `describe` scales a found outline."""
    scale = rgb.shape[1] / shown_width  # decoded pixels per photo pixel: a large JPEG is decoded reduced
    ordered = check_corners(corners, (shown_width, rgb.shape[0] / scale))
    painting = rectify(rgb, ordered * scale)
    try:
        check_shape(width=int(painting.shape[1]), height=int(painting.shape[0]))
    except ImageShapeError as error:
        raise CornersError(f"The painting your corners outline cannot be read ({error}).") from None
    return painting, describe(Location(ordered, 1.0, CORNERS_GIVEN), 1.0)


class CornersError(ValueError):
    """Corners that outline no painting (not four points inside the photo, three in a line, a crossed or tiny
    quadrilateral): what is wrong, in words for the visitor who gave them."""


def check_corners(corners, photo_size: tuple[float, float]) -> np.ndarray:
    """A visitor's four [x, y] corners (any order; numbers from a page, so anything) -> the same corners ordered
    clockwise from the top-left, once they outline a painting inside the photo of `photo_size` (width, height,
    its own pixels), else `CornersError`."""
    try:
        points = np.asarray(corners, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.empty(0)
    if points.shape != (4, 2) or not np.isfinite(points).all():
        raise CornersError("Give the painting's four corners, each two numbers [x, y] in the photo's pixels.")
    width, height = photo_size
    if (points < 0).any() or (points[:, 0] > width).any() or (points[:, 1] > height).any():
        raise CornersError(f"Every corner must lie inside the photo ({width:.0f} x {height:.0f} pixels).")
    for left_out in range(4):  # any three of the four nearly on one line: no quadrilateral
        a, b, c = np.delete(points, left_out, axis=0)
        sides = [np.linalg.norm(b - a), np.linalg.norm(c - b), np.linalg.norm(a - c)]
        twice_area = abs(float(np.cross(b - a, c - a)))
        if twice_area <= COLLINEAR * max(sides) ** 2:
            raise CornersError(
                "Three of your corners lie almost on one line: tap the painting's four corners, one at each corner."
            )
    ordered = order_corners(points)
    turns = [np.cross(ordered[i] - ordered[i - 1], ordered[(i + 1) % 4] - ordered[i]) for i in range(4)]
    if not (all(turn > 0 for turn in turns) or all(turn < 0 for turn in turns)):
        raise CornersError(
            "Your corners do not outline a four-sided shape (one lies inside the others' triangle): tap the "
            "painting's four outer corners."
        )
    x, y = ordered[:, 0], ordered[:, 1]
    area = abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2  # the shoelace formula
    if area < MIN_CORNERS_AREA * width * height:
        raise CornersError(
            f"Your corners outline only {area / (width * height):.1%} of the photo, under {MIN_CORNERS_AREA:.0%}: "
            "tap the painting's four corners, or photograph it closer."
        )
    return ordered


def describe(location: Location, scale: float) -> dict:
    """What the photo step did, JSON-ready: the outline scaled by `scale` into the photo's own pixels."""
    outline = (
        None if location.corners is None else [[round(x * scale, 1), round(y * scale, 1)] for x, y in location.corners]
    )
    return {"outline": outline, "found": location.reason, "confidence": round(float(location.confidence), 3)}


def _checked(rgb: np.ndarray) -> np.ndarray:
    check_shape(width=int(rgb.shape[1]), height=int(rgb.shape[0]))
    return rgb


def check_top_k(top_k: int) -> int:
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    return int(top_k)
