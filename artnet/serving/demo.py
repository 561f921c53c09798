"""The Gradio demo: drop in a painting, get when / where / what from ONE forward pass, and, on request, why
(Grad-CAM per head) and which paintings of the training collection it resembles.

`build_demo(export_dir)` returns the Blocks; `demo/app.py` and `artnet demo` launch it. An export folder holds
`model.keras`, `model_card.json` and optionally `index/` (see `artnet.serving.export` and `artnet.serving.similar`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

import gradio as gr
import numpy as np
from PIL import Image

from artnet import labels
from artnet.data.images import MAX_OVERSIZE, ImageError, ImageShapeError, ImageTooLarge, check_shape, open_image
from artnet.evaluation.metrics import percent
from artnet.serving.explain import GradCam, overlay
from artnet.serving.predictor import Predictor
from artnet.serving.similar import SimilarityIndex
from artnet.workdir import Export

_percent = functools.partial(percent, suffix=" %")
LOW_CONFIDENCE = 0.5
YEAR_TITLE = "When: year (± one standard deviation, the model's own uncertainty)"
SMALL_MODEL_EXAMPLES = 5_000
TITLES = {"school": "Where: school", "timeframe": "When: timeframe", "type": "What: type"}
OVERLAY_MAX_AGE_S = 600  # gradio copies a returned file into its cache at once; ours only need to outlive that
GRADIO_CACHE_CLEANUP = (3600, 3600)  # every hour, drop uploads and outputs older than an hour
# gradio keeps each visitor session's state in memory, up to 10,000 sessions by default. For this stateless page
# that measured as nothing much (RSS alike with and without this cap over 240 sessions, benchmarks/README.md), but
# a bound costs nothing: an evicted session only starts afresh.
SESSIONS_KEPT = 100
# Uploads over this are refused by gradio itself, before they are written to its cache (the loader's own limit).
MAX_FILE_SIZE = "64mb"
# One budget for every event that runs the model (classify, explain, examples): concurrency is per event in
# gradio, so two classify plus two explain requests used to decode four worst-case images at once (8.1 GB).
# Up to CONCURRENCY requests are in flight; their forward passes are batched (`Batcher`), and at most
# DECODE_SLOTS of them decode an upload at once, which is what bounds memory.
CONCURRENCY = 8
CONCURRENCY_ID = "model"
DECODE_SLOTS = 2
MAX_BATCH = 8
# The demo's pixel limit, below the loader's 100 Mpx: an RGBA PNG costs about 9 bytes a pixel at its peak (the
# decoded RGBA, its alpha, the white RGB it is pasted on), and DECODE_SLOTS decode at once, so four concurrent
# worst-case uploads stay under the 1.5 GB budget (measured: benchmarks/README.md, "Worst-case uploads").
DEMO_MAX_PIXELS = 16_000_000
# Grad-CAM files: gradio copies each returned file into its own cache at once, so ours need to outlive only that.
OVERLAY_MAX_FILES = 30
GRADIO_ANALYTICS = {"GRADIO_ANALYTICS_MAX_EVENTS": "1000", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "100"}
# The demo's parallelism is its concurrent requests, not threads inside one: under load those only fight each
# other for the cores. Measured with 20 visitors on 2 cores (benchmarks/README.md, "Demo under load"):
# OpenBLAS's threads spin-waiting after the neighbour search, TensorFlow's inter-op pool beside its intra-op one,
# and two intra-op threads per forward pass (25.2 ms of CPU per image at batch 8, against 20.6 ms on one thread)
# all cost CPU that the requests needed. So a serving process runs each forward pass on one thread, and as many
# passes at once as it has cores (`forward_lanes`). A user's own settings of these variables win.
SERVING_THREADS = 1
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
K_SIMILAR = 6  # similar paintings shown per answer
NEAREST = "nearest"  # the batch's search result, in a forward result (`DemoBackend._forward`)
THUMBS_CACHED = 2048  # data: URIs of index thumbnails kept in memory, ~8 KB each
LOG = logging.getLogger("artnet.serving.demo")
# The only pages a neighbour may link to: the painting's own page on wga.hu.
WGA_PAGE = re.compile(r"https://www\.wga\.hu/html/[A-Za-z0-9_\-/]+\.html?")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>])")


def escape_markdown(text) -> str:
    """Catalogue text as literal Markdown: HTML escaped and every Markdown character backslashed, so a title
    such as `Madonna](https://evil.example) [x` or `<img src=...>` shows as text, never as a link or a tag."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=True))


def safe_url(url) -> str | None:
    """`url` when it is a wga.hu painting page, else None (the index is data: it may hold anything)."""
    url = str(url or "")
    return url if WGA_PAGE.fullmatch(url) and ".." not in url else None


def is_sample_scale(card: dict) -> bool:
    train_examples = card.get("train_examples")
    return train_examples is not None and train_examples < SMALL_MODEL_EXAMPLES


def model_card_facts(card: dict) -> str:
    """The key facts, shown at the top of the page: what the model saw, how it did on its test split, and what
    chance and always answering the test split's majority class would score."""
    painters = card.get("train_painters")
    trained = f"{card.get('train_examples', 'an unrecorded number of')} training images"
    trained += f" by {painters} painters" if painters else " (painters not recorded)"
    lines = [f"**About this model:** {trained}, from {escape_markdown(card.get('data', 'unrecorded data'))}."]
    test = card.get("test") or {}
    if test:
        first = next(iter(test.values()))
        test_painters = card.get("test_painters")
        lines[0] += f" Tested on {first.get('n', '?')} images" + (
            f" by {test_painters} painters." if test_painters else " (painters not recorded)."
        )
    for head, result in test.items():
        chance = 1 / len(labels.VOCABULARIES[head]) if head in labels.VOCABULARIES else None
        majority = result.get("data_majority") or {}
        against = f"chance {_percent(chance)}"
        if majority.get("top1") is not None:
            against += f", always answering the test majority ({escape_markdown(majority.get('class'))}) " + _percent(
                majority["top1"]
            )
        elif result.get("majority_baseline") is not None:
            against += f", always answering the training majority {_percent(result['majority_baseline'])}"
        else:
            against += ", majority baseline not recorded"
        lines.append(f"- {head}: balanced accuracy {_percent(result.get('balanced_accuracy'))} ({against})")
    year = card.get("test_year") or {}
    if year.get("mae") is not None:
        constant = year.get("mae_constant")
        lines.append(
            f"- year: mean error {year['mae']:.0f} years over {year.get('n', '?')} dated test paintings"
            + (f" (always answering the training mean year: {constant:.0f} years)" if constant is not None else "")
        )
    if is_sample_scale(card):
        lines.append(
            f"- **A small sample-scale model** ({card['train_examples']} training images): its answers demonstrate "
            "the pipeline; they are not an expert's opinion."
        )
    return "\n".join(lines)


def model_card_markdown(card: dict) -> str:
    lines = ["### Model card", ""]
    lines.append(
        f"- **Backbone:** {escape_markdown(card.get('backbone', '?'))} at {card.get('image_size', '?')} px, "
        f"{card.get('parameters', 0) / 1e6:.1f} M parameters, heads: {', '.join(card.get('heads', []))}"
    )
    train_examples = card.get("train_examples")
    if card.get("data"):
        lines.append(
            f"- **Trained on:** {escape_markdown(card['data'])}"
            + (f" ({train_examples} images)" if train_examples else "")
        )
    for head, result in (card.get("test") or {}).items():
        if result.get("top1") is not None:
            lines.append(
                f"- **Test {head}:** top-1 {100 * result['top1']:.1f} %, top-3 {100 * result['top3']:.1f} %, "
                f"balanced {100 * result['balanced_accuracy']:.1f} % over {result['n']} images"
            )
    if is_sample_scale(card):
        lines += [
            "",
            f"**This is a small sample-scale model** ({train_examples} training images): its answers are a "
            "demonstration of the pipeline, not an expert's opinion.",
        ]
    return "\n".join(lines)


def label_value(ranked: list[tuple[str, float]]) -> dict[str, float]:
    """gr.Label's value for one head: its top classes and their probabilities."""
    return {name: float(p) for name, p in ranked}


def head_title(head: str, ranked: list[tuple[str, float]]) -> str:
    """The head's label on the page, which says in words what it answers, or that it is unsure."""
    top, probability = ranked[0]
    if probability >= LOW_CONFIDENCE:
        return f"{TITLES[head]}: {top} ({100 * probability:.0f} %)"
    return f"{TITLES[head]}: unsure (best guess {top}, {100 * probability:.0f} %)"


def neighbour_record(item: dict) -> dict:
    """One similar painting as structured data (what /classify returns beside the cards)."""
    item_labels = item.get("labels") or {}
    return {
        "title": item.get("title") or None,
        "painter": item.get("author") or None,
        "date": item.get("date") if item.get("date") not in (None, "", "-") else None,
        "labels": {head: item_labels.get(head) for head in labels.HEADS},
        "similarity": round(float(item["score"]), 4),
        "url": safe_url(item.get("url")),
    }


def neighbour_caption(record: dict) -> str:
    """Plain text (escaped where the page shows it): painter, title, date, labels, similarity."""
    known = [value for value in record["labels"].values() if value]
    return (
        f"{record['painter'] or 'unknown painter'}, {record['title'] or 'untitled'} "
        f"({record['date'] or 'date unknown'})" + (f"; {', '.join(known)}" if known else "") + f"; "
        f"similarity {record['similarity']:.2f}"
    )


def html_text(text) -> str:
    """Catalogue text for the page's HTML: every tag and quote escaped, and `$` and backticks too, because
    gr.HTML fills its value into a JavaScript template literal (a title cannot become markup or a placeholder)."""
    return html.escape(str(text), quote=True).replace("$", "&#36;").replace("`", "&#96;")


@functools.lru_cache(maxsize=THUMBS_CACHED)
def thumbnail_data_uri(path: str) -> str:
    """A thumbnail inlined as a data: URI (~8 KB): the page needs no request per thumbnail, and the server no
    file handling (see `DemoBackend.similar`). Cached: the index's thumbnails never change while it serves."""
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def neighbours_html(records: list[dict], thumbnails: list[str | None], total: int) -> str:
    """The similar paintings as cards: thumbnail shown whole, the full caption under it (labels, similarity,
    "date unknown"), each linked to its wga.hu page when it has a safe one. All catalogue text is escaped."""
    cards = []
    for record, thumbnail in zip(records, thumbnails, strict=True):
        caption = html_text(neighbour_caption(record))
        image = f'<img src="{thumbnail_data_uri(thumbnail)}" alt="{caption}">' if thumbnail else ""
        body = f"{image}<figcaption>{caption}</figcaption>"
        if record["url"]:  # a wga.hu page (safe_url): no quotes or markup can be in it
            body = f'<a href="{record["url"]}" target="_blank" rel="noopener noreferrer">{body}</a>'
        cards.append(f"<figure>{body}</figure>")
    header = f"<p>The {len(records)} nearest of the {total:,} paintings of the training collection:</p>"
    return header + f'<div class="artnet-neighbours">{"".join(cards)}</div>'


NEIGHBOURS_CSS = """
.artnet-neighbours { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.artnet-neighbours figure { margin: 0; }
.artnet-neighbours a { color: inherit; text-decoration: none; }
.artnet-neighbours img { display: block; width: 100%; height: 180px; object-fit: contain; }
.artnet-neighbours figcaption { font-size: 0.85em; line-height: 1.3; overflow-wrap: anywhere; }
"""


class Answer(NamedTuple):
    """What one classify request shows."""

    labels: dict[str, dict[str, float]]  # head -> {class: probability}, top classes
    titles: dict[str, str]  # head -> its label on the page, saying what it answers or that it is unsure
    note: str
    similar: str  # HTML cards (`neighbours_html`): thumbnails, escaped captions, links to wga.hu only
    neighbours: list[dict]  # structured: title, painter, date, labels, similarity, url
    year: str | None = None  # "c. 1640 ± 25" when the model has a year head


_BACKENDS: weakref.WeakSet = weakref.WeakSet()


class Batcher:
    """Concurrent requests share forward passes: a request whose input no pass has taken leads one over every
    request waiting (up to `max_batch`, oldest first) when fewer than `lanes` passes are running, and hands over
    once its own result is in; the others wait. Unlike gradio's `batch=True`, each request keeps its own errors:
    one bad upload never fails the requests batched with it (it is refused before it gets here)."""

    def __init__(self, run, max_batch: int = MAX_BATCH, lanes: int = 1):
        self._run = run  # list of model-size uint8 arrays -> list of results
        self._max_batch = max_batch
        self._lanes = max(1, int(lanes))
        self._turn = threading.Condition()
        self._pending: list[tuple[np.ndarray, Future]] = []
        self._running = 0  # passes under way
        self.batch_sizes: list[int] = []  # for tests and the benchmark

    def __call__(self, pixels: np.ndarray):
        future: Future = Future()
        with self._turn:
            self._pending.append((pixels, future))
        while True:
            with self._turn:
                # A taken input is `running` until its pass sets the result; only an untaken one may lead.
                while not future.done() and (future.running() or self._running >= self._lanes):
                    self._turn.wait()
                if future.done():
                    return future.result()
                self._running += 1
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                for _, taken in batch:
                    taken.set_running_or_notify_cancel()
            try:
                self._pass(batch)
            finally:
                with self._turn:
                    self._running -= 1
                    self._turn.notify_all()

    def _pass(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            results = self._run([pixels for pixels, _ in batch])
        except Exception as error:  # noqa: BLE001  (handed to each request of the batch, raised there)
            for _, future in batch:
                future.set_exception(error)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)


class DemoBackend:
    """What the UI calls: plain Python, testable without a browser."""

    def __init__(self, export_dir: str | Path, top_k: int = 3, max_pixels: int = DEMO_MAX_PIXELS):
        files = Export(export_dir)
        self.predictor = Predictor(files.model, top_k=top_k)
        self.model = self.predictor.model
        self.card = files.read_card()
        self.index = SimilarityIndex.load(files.index.root) if files.index.embeddings.is_file() else None
        self.thumbs = files.index.thumbs
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
        results = self.predictor.predict_batch(batch)
        if results and self.index is not None and len(self.index):
            found = self.index.query_batch(np.stack([result["embedding"] for result in results]), K_SIMILAR)
            for result, items in zip(results, found, strict=True):
                result[NEAREST] = items
        return results

    def close(self) -> None:
        """Remove this backend's Grad-CAM files (idempotent)."""
        self._cleanup()

    def read(self, image: str | Path | bytes) -> np.ndarray:
        """An upload -> the model's uint8 input pixels, under the demo's pixel limit and shape rules, or
        `ImageError`."""
        if isinstance(image, str | Path):
            try:
                data = Path(image).read_bytes()  # gradio has already refused anything over MAX_FILE_SIZE
            except OSError as error:
                raise ImageError(f"{Path(image).name}: cannot read the file: {error.strerror or error}") from None
        else:
            data = bytes(image)
        try:
            with self._decode_slots:  # decoding is where a request's memory peaks: at most DECODE_SLOTS at once
                rgb = open_image(data, max_pixels=self.max_pixels)
                check_shape(*rgb.size)
                # Box-reduce a huge image while it is still a PIL image (as `bound_size` would, one copy later).
                size = self.predictor.image_size
                factor = min(rgb.size) // (2 * size)
                if min(rgb.size) > MAX_OVERSIZE * size and factor >= 2:
                    rgb = rgb.reduce(factor)
                return self.predictor.fit_pixels(np.asarray(rgb))
        except ImageError as error:
            name = Path(image).name if isinstance(image, str | Path) else "pasted image"
            raise type(error)(f"{name}: {error}") from None

    def classify(self, image: str | Path | bytes | None, k_similar: int = K_SIMILAR):
        """An `Answer`: labels and titles per head, a note, the similar paintings: one (batched) forward pass."""
        if image is None:
            raise user_error("Upload, paste or photograph a painting first.", "No image")
        try:
            pixels = self.read(image)
        except ImageError as error:
            raise refusal(error) from None
        return self._answer(self.batcher(pixels), k_similar)

    def _answer(self, result: dict, k_similar: int) -> Answer:
        per_head = {head: label_value(result[head]) for head in self.model.heads}
        titles = {head: head_title(head, result[head]) for head in self.model.heads}
        unsure = [
            f"{head} ({result[head][0][0]}, {100 * result[head][0][1]:.0f} %)"
            for head in self.model.heads
            if result[head][0][1] < LOW_CONFIDENCE
        ]
        note = (
            "The model is unsure about " + ", ".join(unsure) + ": treat those answers as guesses."
            if unsure
            else f"{'All answers are' if len(self.model.heads) > 1 else 'The answer is'} fairly confident "
            f"(top probability ≥ {100 * LOW_CONFIDENCE:.0f} %)."
        )
        if is_sample_scale(self.card):
            note += " This is a small sample-scale model: see the facts at the top."
        similar, records = self.similar(result["embedding"], k_similar, result.get(NEAREST))
        year = None
        if labels.YEAR in result:
            from artnet.models.year import year_text

            year = year_text(*result[labels.YEAR])
        return Answer(per_head, titles, note, similar, records, year)

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
        return neighbours_html(records, [item.get("thumbnail") for item in nearest], len(self.index)), records

    def explain(self, image: str | Path | bytes | None):
        """One Grad-CAM overlay per head, each for that head's top class, captioned head: class (probability)."""
        if image is None:
            raise user_error("Upload a painting first.", "No image")
        try:
            pixels = self.read(image)  # bounded first: a 10 x 1,000,000 strip is not a 22 GB tensor
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


def uploaded_image(payload) -> str | bytes | None:
    """The demo image input's raw value as artnet's loader takes it: the uploaded file's path, or a pasted image's
    bytes.

    The demo's events run with `preprocess=False` because gradio's own preprocessing opens every upload with PIL:
    a text file, an empty file or a 20000x20000 PNG then fails inside gradio with an opaque "Could not preprocess
    input component", and a CMYK or 16-bit file is re-encoded before artnet sees it. artnet's loader reads every
    mode, applies EXIF and guards against decompression bombs with a message that says what is wrong. (gradio
    still moves and checks the upload before this: only its PIL pass is skipped.)
    """
    if payload is None or isinstance(payload, str):
        return payload
    url = payload.get("url") or ""
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.partition(",")[2], validate=True)
        except binascii.Error:
            raise gr.Error("The pasted image is not valid base64 data: paste or upload it again.") from None
    if payload.get("path"):
        return payload["path"]
    raise gr.Error("No image arrived with the request: upload, paste or photograph a painting again.")


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


GRADCAM_LEGEND = (
    "Colour shows how much each region raised that head's answer: **red** most, then yellow and green, **blue** "
    "least (Grad-CAM, scaled per image). Each overlay names the head, its top class and that class's probability."
)


def build_demo(export_dir: str | Path, examples: list[str] | None = None) -> gr.Blocks:
    backend = DemoBackend(export_dir)
    heads = backend.model.heads
    # The examples (index thumbnails) are served where they lie, from any working folder: gradio otherwise refuses
    # files outside the cwd and the temp dir ("Cannot move ... to the gradio cache dir"), which once failed every
    # /classify call, when the neighbours still came back as files.
    gr.set_static_paths([backend.thumbs])
    with gr.Blocks(title="artnet: when, where and what is this painting?", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(
            "# artnet\nWhen, where and what is this painting? One model, one forward pass, three answers "
            "(European paintings 1401-1900: " + ", ".join(labels.SCHOOLS) + ")."
        )
        gr.Markdown(model_card_facts(backend.card))
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Painting")
                classify = gr.Button("Classify", variant="primary")
            with gr.Column():
                outputs = {
                    # No heading: the top class is not a bold verdict; the label above says it in words.
                    head: gr.Label(num_top_classes=3, label=TITLES[head], show_heading=False)
                    for head in heads
                }
                # The year head's answer sits under the block: "c. 1640 ± 25" (one standard deviation).
                year = gr.Textbox(label=YEAR_TITLE, interactive=False) if backend.model.year_head else None
                note = gr.Markdown(label="note")
        with gr.Accordion("Why? Grad-CAM per head (on request)", open=False):
            explain = gr.Button("Show where each head looked")
            heatmaps = gr.Gallery(label="Grad-CAM", columns=3, object_fit="contain", height="auto")
            gr.Markdown(GRADCAM_LEGEND)
        with gr.Accordion("Similar paintings of the training collection", open=True):
            similar = gr.HTML(label="similar paintings", css_template=NEIGHBOURS_CSS, js_on_load=None)
            neighbours = gr.JSON(label="neighbours", visible=False)
        with gr.Accordion("Model card", open=False):
            gr.Markdown(model_card_markdown(backend.card))

        extra = [year] if year is not None else []
        targets = [outputs[head] for head in heads] + extra + [note, similar, neighbours]
        shown = [outputs[head] for head in heads]

        def on_classify(upload):
            answer = backend.classify(uploaded_image(upload))
            return (
                [answer.labels[head] for head in heads]
                + ([answer.year] if extra else [])
                + [answer.note, answer.similar, answer.neighbours]
            )

        def on_new_image(upload):
            return [gr.skip()] * len(targets) if upload is None else on_classify(upload)

        def on_explain(upload):
            return backend.explain(uploaded_image(upload))

        def clear():
            # A new image: nothing shown may still describe the previous one.
            return [None] * len(heads) + [""] * len(extra) + ["", "", None, None]

        def retitle(*values):
            """Each head's label says in words what it answers, or that it is unsure (the API keeps plain
            values: this runs in the page only, after the answer arrived)."""
            titles = []
            for head, value in zip(heads, values, strict=True):
                ranked = sorted((value or {}).items(), key=lambda item: -item[1])
                titles.append(gr.Label(label=head_title(head, ranked) if ranked else TITLES[head]))
            return titles

        shared = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": CONCURRENCY, "preprocess": False}
        quick = {"api_name": False, "queue": False}
        # preprocess=False: artnet reads the upload itself (see `uploaded_image`).
        classify.click(on_classify, inputs=image, outputs=targets, api_name="classify", **shared).then(
            retitle, inputs=shown, outputs=shown, **quick
        )
        # Any new image (upload, paste, webcam, an example's click) first clears what described the old one, then
        # is classified; clearing the image only clears.
        image.change(clear, outputs=targets + [heatmaps], **quick).then(
            on_new_image, inputs=image, outputs=targets, api_name=False, **shared
        ).then(retitle, inputs=shown, outputs=shown, **quick)
        explain.click(on_explain, inputs=image, outputs=heatmaps, api_name="explain", **shared)
        if examples:
            gr.Examples(
                examples=[[path] for path in examples],
                inputs=[image],
                example_labels=[f"training painting {Path(path).stem}" for path in examples],
            )
    # gradio 6.31 keeps analytics of up to 10,000 events and, after EVERY event, rebuilds their summary as a pandas
    # DataFrame over all of them: a cost that grew with each request served (and its memory with it). A shorter
    # record, summarised every 100 events, keeps a long-running demo as fast as a fresh one. (Variables a user set
    # win; they are read when the queue is made.)
    for variable, value in GRADIO_ANALYTICS.items():
        os.environ.setdefault(variable, value)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)
    demo.backend = backend  # for tests and the CLI
    return demo


def parse_auth(value: str | None = None, path: str | Path | None = None) -> list[tuple[str, str]] | None:
    """`--auth user:password` and/or a credentials file (one `user:password` a line, # comments) -> gradio's auth."""
    entries = [value] if value else []
    if path:
        entries += [line.strip() for line in Path(path).read_text().splitlines()]
    pairs = []
    for entry in entries:
        if not entry or entry.startswith("#"):
            continue
        user, colon, password = entry.partition(":")
        if not (user and colon and password):
            raise ValueError("credentials must read user:password (a non-empty user and password)")
        pairs.append((user, password))
    return pairs or None


def share_warning(share: bool, auth) -> str | None:
    if share and not auth:
        return (
            "artnet demo: warning: --share without --auth publishes this demo to anyone with the gradio.live link; "
            "add --auth user:password (or --auth-file FILE)"
        )
    return None


def remove_files_on_sigterm() -> None:
    """On SIGTERM, remove every backend's Grad-CAM files, then die of SIGTERM as usual (atexit does not run on
    a signal). Only from the main thread, and only where no one else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def on_sigterm(signum, frame):
        for backend in list(_BACKENDS):
            backend.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def limit_serving_threads() -> dict[str, int]:
    """Before the model loads, in a process that serves the demo: one BLAS thread, and one TensorFlow thread per
    op and per graph (see SERVING_THREADS). Returns what it set; a variable the user set, or a TensorFlow that
    has already run, is left alone (the latter said in the log)."""
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    applied = {}
    if not any(variable in os.environ for variable in BLAS_VARIABLES):
        threadpool_limits(limits=SERVING_THREADS, user_api="blas")  # for the life of the process
        applied["blas"] = SERVING_THREADS
    pools = {
        "tf_inter_op": ("TF_NUM_INTEROP_THREADS", tf.config.threading.set_inter_op_parallelism_threads),
        "tf_intra_op": ("TF_NUM_INTRAOP_THREADS", tf.config.threading.set_intra_op_parallelism_threads),
    }
    for name, (variable, set_threads) in pools.items():
        if variable in os.environ:
            continue
        try:
            set_threads(SERVING_THREADS)
            applied[name] = SERVING_THREADS
        except RuntimeError:  # TensorFlow has already run an op in this process: its pools are fixed
            LOG.info("TensorFlow is already initialised: its %s threads stay as they are", name)
    return applied


def forward_lanes() -> int:
    """How many forward passes may run at once: one per core when each pass runs on one thread
    (`limit_serving_threads`), else one (a pass already spreads over the cores), never more than CONCURRENCY."""
    import tensorflow as tf

    threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()  # TensorFlow reads it; its API does not say
    if (int(threads) if threads.isdigit() else tf.config.threading.get_intra_op_parallelism_threads()) != 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, CONCURRENCY))


def launch(demo: gr.Blocks, **options):
    """`demo.launch` with artnet's serving defaults: errors shown to the user (they say what is wrong with an
    upload), uploads over MAX_FILE_SIZE refused, the state of at most SESSIONS_KEPT sessions kept in memory (the
    oldest are dropped), Grad-CAM files removed on SIGTERM, and a warning when --share has no auth."""
    options.setdefault("show_error", True)
    options.setdefault("state_session_capacity", SESSIONS_KEPT)
    options.setdefault("max_file_size", MAX_FILE_SIZE)
    warning = share_warning(options.get("share", False), options.get("auth"))
    if warning:
        print(warning, file=sys.stderr)
    remove_files_on_sigterm()
    return demo.launch(**options)


def example_images(export_dir: str | Path, count: int = 3) -> list[str]:
    """A few thumbnails of the training collection as examples (the user's own copies, never shipped)."""
    thumbs = sorted(Export(export_dir).index.thumbs.glob("*.jpg"))
    step = max(1, len(thumbs) // max(1, count))
    return [str(path) for path in thumbs[::step][:count]]
