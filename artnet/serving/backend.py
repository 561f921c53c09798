"""The demo's backend: everything its page calls, as plain Python that tests drive without a browser.

`DemoBackend` holds one export (model, model card, similar-paintings index) and answers an upload: it reads it
under the demo's limits, finds the painting in a photo (`artnet.data.photo`, the step `artnet predict` takes: an
`Answer` says what it found and shows what the model read), batches its forward pass with the other requests'
(`artnet.serving.batcher`), names the painting when the index holds it (`artnet.serving.naming`, verified by a
homography) and returns an `Answer` whose text comes from `artnet.serving.cards`; on request, Grad-CAM overlays as
files of its own that it cleans up. For the page it also shows the photo itself, small, with the outline found
drawn on it (`PhotoView`), where a visitor who saw the outline miss taps the painting's four corners: classified
along them (`classify(..., corners=...)`), with no search. Its one gradio import is `gr.Error`: a refused upload
raises what gradio shows the user as it is.

The export folder is data, never a door (`artnet.serving.files`): the model, the card and every index file must be
regular files inside it, the index's files must agree with each other and with the model, else the backend is not
made (`ExportError`, naming the file). An upload is read as `artnet.data.images.load_path` reads a file: a FIFO or
a device is refused before a byte is read, and nothing past the loader's byte limit is read.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import NamedTuple

import cv2
import gradio as gr
import numpy as np
from PIL import Image

from artnet import labels
from artnet.data.images import (
    MAX_BYTES,
    MAX_OVERSIZE,
    ImageError,
    ImageShapeError,
    ImageTooLarge,
    check_shape,
    open_image,
    upright_size,
)
from artnet.data.photo import order_corners
from artnet.evaluation.calibration import calibration_to_json
from artnet.models.artnet import POOLED
from artnet.serving.batcher import Batcher
from artnet.serving.cards import (
    confidence_note,
    head_title,
    html_text,
    is_sample_scale,
    label_value,
    named_markdown,
    neighbour_record,
    neighbours_html,
    year_words,
)
from artnet.serving.explain import GradCam, overlay
from artnet.serving.files import (
    ExportError,
    FileRefused,
    FileTooLarge,
    read_card,
    read_regular,
    regular_inside,
    shown_name,
)
from artnet.serving.predictor import SETS, CornersError, Predictor
from artnet.serving.similar import SimilarityIndex
from artnet.serving.threads import forward_lanes
from artnet.workdir import Export

# At most DECODE_SLOTS requests decode an upload at once: decoding is where a request's memory peaks.
DECODE_SLOTS = 2
# The demo's pixel limit, below the loader's 100 Mpx: an RGBA PNG costs about 9 bytes a pixel at its peak (the
# decoded RGBA, its alpha, the white RGB it is pasted on), and DECODE_SLOTS decode at once, so four concurrent
# worst-case uploads stay under the 1.5 GB budget (measured: benchmarks/README.md, "Worst-case uploads").
DEMO_MAX_PIXELS = 16_000_000
# Grad-CAM files: gradio copies each returned file into its own cache at once, so ours need to outlive only that.
OVERLAY_MAX_FILES = 30
OVERLAY_MAX_AGE_S = 600
K_SIMILAR = 6  # similar paintings shown per answer
# The photo step works on a copy whose long side is at least this (it locates at 640 px; naming matches at 480 px
# of the cut-out painting, which is often a third of the photo): a larger upload is box-reduced to it first.
PHOTO_SIDE = 1600
READ_VIEW_SIDE = 240  # the page's view of what the model read
# The photo as the page shows it to be corrected: long side at most this (a phone's screen is narrower; a 12 Mpx
# photo would cost the page megabytes per tap), the outline found in green and the visitor's taps in magenta, each
# over a dark edge that shows on light and dark paintings alike.
PHOTO_VIEW_SIDE = 1024
OUTLINE_COLOUR = (40, 255, 40)
TAPS_COLOUR = (255, 40, 220)
EDGE_COLOUR = (0, 0, 0)
NEAREST = "nearest"  # the batch's search result, in a forward result (`DemoBackend._forward`)
LOG = logging.getLogger("artnet.serving.demo")  # the demo's one logger, whichever of its modules logs
_BACKENDS: weakref.WeakSet = weakref.WeakSet()  # every live backend, for `close_all`


class PhotoView(NamedTuple):
    """The visitor's photo as the page shows it, to see the outline and tap the corners on."""

    pixels: np.ndarray  # uint8 RGB, long side at most PHOTO_VIEW_SIDE, the outline used drawn on it
    scale: tuple[float, float]  # the photo's own pixels per pixel shown, (x, y): a tap times this is in the photo's


class Reading(NamedTuple):
    """An upload as `DemoBackend.read` read it."""

    pixels: np.ndarray  # the model's uint8 input
    where: dict  # what the photo step did (`artnet.serving.predictor.describe`)
    painting: np.ndarray  # the painting's RGB pixels: cut out of the photo, or the whole image
    view: PhotoView | None = None  # only when asked for


class Answer(NamedTuple):
    """What one classify request shows."""

    labels: dict[str, dict[str, float]]  # head -> {class: probability}, top classes
    titles: dict[str, str]  # head -> its label on the page, saying what it answers or that it is unsure
    note: str
    similar: str  # HTML cards (`neighbours_html`): thumbnails, escaped captions, links to wga.hu only
    neighbours: list[dict]  # structured: title, painter, date, labels, similarity, url
    year: str | None = None  # "c. 1640 ± 25" when the model has a year head
    # What the photo step did: {"outline": 4 [x, y] corners in the upload's pixels or None, "found": in words,
    # "confidence"}, and the painting of the index the photo shows ({title, painter, ..., "inliers"}) or None.
    photo: dict | None = None
    named: dict | None = None
    read_view: str = ""  # HTML: the painting as the model read it (cut out of the photo, or whole), and why
    photo_view: PhotoView | None = None  # the photo with the outline used, when asked for (the page's)


def user_error(message: str, title: str) -> gr.Error:
    """An expected user error: shown to the user, logged as one line (no traceback)."""
    LOG.warning("refused a request: %s", message)
    return gr.Error(message, title=title, print_exception=False)


def refusal(error: ImageError) -> gr.Error:
    """What the user sees for a refused image: what is wrong (under the file's own name, never the server's cache
    path) and what to do; only an unreadable file is called unreadable."""
    if isinstance(error, ImageTooLarge):
        return user_error(f"That image is too large ({error}).", "Image too large")
    if isinstance(error, ImageShapeError):
        return user_error(f"That image cannot be classified ({error}).", "Image refused")
    return user_error(
        f"That file cannot be read as an image ({error}). Try a JPEG or PNG photo or scan of a painting.",
        "Unreadable image",
    )


def read_view_html(painting: np.ndarray, where: dict) -> str:
    """What the model read, for the page: the cut-out painting (or the whole image), small, inline as a JPEG data
    URI (a returned file would cost gradio's event loop a request of its own), and what the photo step did."""
    image = Image.fromarray(painting)
    image.thumbnail((READ_VIEW_SIDE, READ_VIEW_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure class="artnet-read"><img src="{uri}" alt="the painting as the model read it" '
        f'style="max-width:100%;max-height:{READ_VIEW_SIDE}px"><figcaption>{html_text(where["found"])}'
        "</figcaption></figure>"
    )


def make_photo_view(rgb: np.ndarray, shown_width: int, outline) -> PhotoView:
    """The decoded photo (`rgb`, a copy of the photo that is `shown_width` wide in its own pixels), at most
    PHOTO_VIEW_SIDE a side, with `outline` (four [x, y] in the photo's own pixels, or None) drawn on it."""
    height, width = rgb.shape[:2]
    shrink = min(1.0, PHOTO_VIEW_SIDE / max(height, width))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    pixels = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if shrink < 1 else np.array(rgb)
    photo_per_decoded = shown_width / width  # one factor for both sides, as a found outline is scaled
    scale = (width * photo_per_decoded / size[0], height * photo_per_decoded / size[1])
    if outline is not None:
        draw_outline(pixels, np.asarray(outline, np.float64) / scale, OUTLINE_COLOUR)
    return PhotoView(pixels, scale)


def draw_outline(pixels: np.ndarray, corners: np.ndarray, colour: tuple[int, int, int]) -> None:
    """A closed line through `corners` ([x, y] in `pixels`), 3-4 px wide on a shown photo, drawn in place."""
    width = max(3, round(max(pixels.shape[:2]) / 256))
    points = [np.round(np.asarray(corners)).astype(np.int32).reshape(-1, 1, 2)]
    cv2.polylines(pixels, points, True, EDGE_COLOUR, width + 2, cv2.LINE_AA)
    cv2.polylines(pixels, points, True, colour, width, cv2.LINE_AA)


def draw_taps(pixels: np.ndarray, taps: list) -> np.ndarray:
    """A copy of the shown photo with the visitor's taps ([x, y] in its pixels) as dots and, once there are four,
    the quadrilateral that will be read: the corners in the order they are read, whatever order they were
    tapped in."""
    drawn = np.array(pixels)
    if len(taps) == 4:
        draw_outline(drawn, order_corners(taps), TAPS_COLOUR)
    radius = max(5, round(max(drawn.shape[:2]) / 100))
    for x, y in taps:
        centre = (round(x), round(y))
        cv2.circle(drawn, centre, radius + 2, EDGE_COLOUR, -1, cv2.LINE_AA)
        cv2.circle(drawn, centre, radius, TAPS_COLOUR, -1, cv2.LINE_AA)
    return drawn


def close_all() -> None:
    """Remove the Grad-CAM files of every live backend (`artnet.serving.launch` calls it on SIGTERM)."""
    for backend in list(_BACKENDS):
        backend.close()


def check_index_fits(index: SimilarityIndex | None, model, files: Export) -> SimilarityIndex | None:
    """`index`, once its embeddings are known to have the model's width (an index of another model would fail
    every request), or `ExportError`."""
    if index is None or not len(index):
        return index
    width, expected = index.embeddings.shape[1], int(model.get_layer(POOLED).output.shape[-1])
    if width != expected:
        raise ExportError(
            f"{shown_name(files.root, files.index.embeddings)} in the export {files.root} holds {width}-wide "
            f"embeddings but the model's are {expected}-wide: the index belongs to another model; export again"
        )
    return index


class DemoBackend:
    """What the UI calls: plain Python, testable without a browser."""

    def __init__(self, export_dir: str | Path, top_k: int = 3, max_pixels: int = DEMO_MAX_PIXELS):
        """`ExportError` (naming the file) for an export that links out of itself or does not hold together."""
        files = Export(export_dir)
        self.root = files.root
        self.card = read_card(files)
        index = (
            SimilarityIndex.load(files.index.root, root=self.root) if os.path.lexists(files.index.embeddings) else None
        )
        self.predictor = Predictor(regular_inside(self.root, files.model), top_k=top_k)
        self.model = self.predictor.model
        # The card's calibration line states what is served (calibration.json, checked), whatever the card says.
        self.card["calibration"] = calibration_to_json(self.predictor.calibration)
        self.index = check_index_fits(index, self.model, files)
        self.namer = self.index.namer if self.index is not None else None  # made now, not by the first visitor
        self.max_pixels = max_pixels
        self._gradcam = None
        self._gradcam_lock = threading.Lock()
        self._decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)
        self.batcher = Batcher(self._forward, lanes=forward_lanes())
        self._overlays = Path(tempfile.mkdtemp(prefix="artnet-gradcam-"))
        # Runs at exit too (weakref.finalize registers with atexit); `launch` also runs it on SIGTERM.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._overlays, ignore_errors=True)
        _BACKENDS.add(self)

    def _forward(self, batch: list[np.ndarray]) -> list[dict]:
        """One forward pass over the batch, and the nearest K_SIMILAR paintings of each in one matrix product."""
        results = self.predictor.predict_pixels(batch)
        if results and self.index is not None and len(self.index):
            found = self.index.query_batch(np.stack([result["embedding"] for result in results]), K_SIMILAR)
            for result, items in zip(results, found, strict=True):
                result[NEAREST] = items
        return results

    def close(self) -> None:
        """Remove this backend's Grad-CAM files (idempotent)."""
        self._cleanup()

    def read(
        self, image: str | Path | bytes, whole_image: bool = False, corners=None, photo_view: bool = False
    ) -> Reading:
        """An upload -> its `Reading` (the model's uint8 input pixels, what the photo step did, the painting's RGB
        pixels, and with `photo_view` the photo as the page shows it), under the demo's pixel limit and shape
        rules, or `ImageError`. `whole_image`: skip the search (a visitor who saw the outline miss, or a scan);
        `corners`: skip it and cut the painting out along these (a visitor's taps, in the photo's own pixels,
        checked: `CornersError`)."""
        if isinstance(image, str | Path):
            try:  # as `load_path` reads a file: a FIFO or a device is refused before a byte is read
                data = read_regular(image, MAX_BYTES)
            except FileTooLarge as error:
                raise ImageTooLarge(f"{Path(image).name}: {error}") from None
            except FileRefused as error:
                raise ImageError(f"{Path(image).name}: {error}") from None
        else:
            data = bytes(image)
        try:
            with self._decode_slots:  # decoding is where a request's memory peaks: at most DECODE_SLOTS at once
                decoded = open_image(data, max_pixels=self.max_pixels)
                check_shape(*decoded.size)
                # Box-reduce a huge image while it is still a PIL image (one copy, not three); a large JPEG was
                # already decoded at a reduced size.
                factor = max(decoded.size) // PHOTO_SIDE
                if min(decoded.size) > MAX_OVERSIZE * self.predictor.image_size and factor >= 2:
                    decoded = decoded.reduce(factor)
                rgb, shown_width = np.asarray(decoded), upright_size(data)[0]
                painting, where = self.predictor.cut_out(rgb, shown_width, whole_image, corners=corners)
                view = make_photo_view(rgb, shown_width, where["outline"]) if photo_view else None
                return Reading(self.predictor.fit_pixels(painting), where, painting, view)
        except ImageError as error:
            name = Path(image).name if isinstance(image, str | Path) else "pasted image"
            raise type(error)(f"{name}: {error}") from None

    def classify(
        self,
        image: str | Path | bytes | None,
        k_similar: int = K_SIMILAR,
        whole_image: bool = False,
        corners=None,
        photo_view: bool = False,
    ):
        """An `Answer`: labels and titles per head, a note, what the photo step did, the painting named when the
        index holds it, the similar paintings: one (batched) forward pass. `corners`: the painting's four corners
        as a visitor tapped them (in the photo's own pixels, any order), read instead of searching; corners that
        outline no painting are refused before the model runs. `photo_view`: the answer also holds the photo as
        the page shows it (`PhotoView`)."""
        if image is None:
            raise user_error("Upload, paste or photograph a painting first.", "No image")
        try:
            pixels, where, painting, view = self.read(image, whole_image, corners, photo_view)
        except ImageError as error:
            raise refusal(error) from None
        except CornersError as error:
            raise user_error(str(error), "Corners refused") from None
        result = self.batcher(pixels)
        answer = self._answer(result, k_similar, where, self.name(painting, result.get(NEAREST)))
        return answer._replace(read_view=read_view_html(painting, where), photo_view=view)

    def name(self, painting: np.ndarray, nearest: list[dict] | None = None) -> dict | None:
        """The indexed painting `painting` shows (its record, with the `inliers` that verified it), or None: no
        features in the index, or no match sure enough. The embedding's nearest are checked beside the votes."""
        if self.index is None:
            return None
        return self.index.name(painting, [item["position"] for item in nearest or ()])

    def _answer(self, result: dict, k_similar: int, where: dict | None = None, named: dict | None = None) -> Answer:
        per_head = {head: label_value(result[head]) for head in self.model.heads}
        coverages = {calibration.sets.coverage for calibration in self.predictor.calibration.values()}
        coverage = coverages.pop() if len(coverages) == 1 else None
        sets = result.get(SETS) or {}  # a calibrated export's: each head answers with its set
        titles = {head: head_title(head, result[head], sets.get(head), coverage) for head in self.model.heads}
        note = confidence_note(self.model.heads, result, coverage)
        if where is not None:
            note = f"Photo: {where['found']}. {note}"
        if named is not None:
            note = named_markdown(named) + "\n\n" + note
        if is_sample_scale(self.card):
            note += " This is a small sample-scale model: see the facts at the top."
        similar, records = self.similar(result["embedding"], k_similar, result.get(NEAREST))
        year = year_words(result.get(labels.YEAR)) if labels.YEAR in result else None
        return Answer(per_head, titles, note, similar, records, year, where, named)

    def similar(self, embedding, k: int, nearest: list[dict] | None = None) -> tuple[str, list[dict]]:
        """(HTML cards of the k nearest training paintings, their structured records); `nearest` is the batch's
        search result when it has k items (`_forward`).

        The thumbnails travel inside the answer as data: URIs rather than as six files. Each returned file costs
        gradio's event loop a path check, a cache move and then a request of its own to serve it: under 20
        concurrent visitors that was over half of the loop's work, and the loop was the bottleneck
        (benchmarks/README.md, "Demo under load")."""
        if self.index is None or not len(self.index):
            return "<p>No similar-paintings index was exported with this model.</p>", []
        if nearest is None or len(nearest) != min(k, len(self.index)):
            nearest = self.index.query(embedding, k)
        records = [neighbour_record(item) for item in nearest]
        thumbnails = [item.get("thumbnail") for item in nearest]
        return neighbours_html(records, thumbnails, len(self.index), root=str(self.root)), records

    def explain(self, image: str | Path | bytes | None, whole_image: bool = False, corners=None):
        """One Grad-CAM overlay per head, each for that head's top class, captioned head: class (probability).
        `whole_image` and `corners` as for `classify`: the overlays explain the reading the answer came from."""
        if image is None:
            raise user_error("Upload a painting first.", "No image")
        try:
            # Through the photo step, as classify; bounded first: a 10 x 1,000,000 strip is not a 22 GB tensor.
            pixels = self.read(image, whole_image, corners).pixels
        except ImageError as error:
            raise refusal(error) from None
        result = self.batcher(pixels)  # the class names and probabilities the captions give
        with self._gradcam_lock:
            if self._gradcam is None:
                self._gradcam = GradCam(self.model)
        overlays = []
        for head in self.model.heads:
            name, probability = result[head][0]
            heatmap = self._gradcam.heatmap(pixels.astype(np.float32), head)
            caption = f"{head}: {name} ({100 * probability:.0f} %)"
            overlays.append((self._to_file(overlay(pixels, heatmap)), caption))
        return overlays

    def _to_file(self, image: np.ndarray) -> str:
        """A PNG under a fresh name (see `similar` for why gradio gets paths rather than arrays) in this backend's
        own folder, which keeps at most OVERLAY_MAX_FILES files, none older than OVERLAY_MAX_AGE_S: a
        long-running demo does not fill the disk."""
        cutoff = time.time() - OVERLAY_MAX_AGE_S
        existing = []
        for old in self._overlays.glob("*.png"):
            try:
                mtime = old.stat().st_mtime
                if mtime < cutoff:
                    old.unlink()
                else:
                    existing.append((mtime, old))
            except FileNotFoundError:
                pass  # a concurrent request removed it first
        for _, old in sorted(existing)[: max(0, len(existing) - OVERLAY_MAX_FILES + 1)]:
            old.unlink(missing_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=self._overlays, suffix=".png", delete=False)
        with handle:
            Image.fromarray(image).save(handle, format="PNG")
        return handle.name
