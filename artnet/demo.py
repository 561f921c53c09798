"""The Gradio demo: drop in a painting, get when / where / what from ONE forward pass, and, on request, why
(Grad-CAM per head) and which paintings of the training collection it resembles.

`build_demo(export_dir)` returns the Blocks; `demo/app.py` and `artnet demo` launch it. An export folder holds
`model.keras`, `model_card.json` and optionally `index/` (see `artnet.export` and `artnet.similar`).
"""

from __future__ import annotations

import base64
import binascii
import shutil
import tempfile
import time
import weakref
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from artnet import labels
from artnet.explain import GradCam, overlay
from artnet.images import ImageError
from artnet.predict import Predictor
from artnet.similar import SimilarityIndex
from artnet.workdir import Export

LOW_CONFIDENCE = 0.5
SMALL_MODEL_EXAMPLES = 5_000
TITLES = {"school": "Where: school", "timeframe": "When: timeframe", "type": "What: type"}
OVERLAY_MAX_AGE_S = 600  # gradio copies a returned file into its cache at once; ours only need to outlive that
GRADIO_CACHE_CLEANUP = (3600, 3600)  # every hour, drop uploads and outputs older than an hour
# gradio keeps each visitor session's state in memory, up to 10,000 sessions by default. For this stateless page
# that measured as nothing much (RSS alike with and without this cap over 240 sessions, benchmarks/README.md), but
# a bound costs nothing: an evicted session only starts afresh.
SESSIONS_KEPT = 100


def model_card_markdown(card: dict) -> str:
    lines = ["### Model card", ""]
    lines.append(
        f"- **Backbone:** {card.get('backbone', '?')} at {card.get('image_size', '?')} px, "
        f"{card.get('parameters', 0) / 1e6:.1f} M parameters, heads: {', '.join(card.get('heads', []))}"
    )
    train_examples = card.get("train_examples")
    if card.get("data"):
        lines.append(f"- **Trained on:** {card['data']}" + (f" ({train_examples} images)" if train_examples else ""))
    for head, result in (card.get("test") or {}).items():
        if result.get("top1") is not None:
            lines.append(
                f"- **Test {head}:** top-1 {100 * result['top1']:.1f} %, top-3 {100 * result['top3']:.1f} %, "
                f"balanced {100 * result['balanced_accuracy']:.1f} % over {result['n']} images"
            )
    if train_examples is not None and train_examples < SMALL_MODEL_EXAMPLES:
        lines += [
            "",
            f"**This is a small sample-scale model** ({train_examples} training images): its answers are a "
            "demonstration of the pipeline, not an expert's opinion.",
        ]
    return "\n".join(lines)


class DemoBackend:
    """What the UI calls: plain Python, testable without a browser."""

    def __init__(self, export_dir: str | Path, top_k: int = 3):
        files = Export(export_dir)
        self.predictor = Predictor(files.model, top_k=top_k)
        self.model = self.predictor.model
        self.card = files.read_card()
        self.index = SimilarityIndex.load(files.index.root) if files.index.embeddings.is_file() else None
        self._gradcam = None
        self._overlays = Path(tempfile.mkdtemp(prefix="artnet-gradcam-"))
        weakref.finalize(self, shutil.rmtree, self._overlays, ignore_errors=True)

    def classify(self, image: str | Path | bytes | None, k_similar: int = 6):
        """(labels per head, a note on confidence, similar-painting gallery, their links): one forward pass."""
        if image is None:
            raise gr.Error("Upload, paste or photograph a painting first.")
        try:
            result = self.predictor.predict(image)
        except ImageError as error:
            raise unreadable(image, error) from None
        per_head = {head: {name: float(p) for name, p in result[head]} for head in self.model.heads}
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
        gallery, links = self.similar(result["embedding"], k_similar)
        return per_head, note, gallery, links

    def similar(self, embedding, k: int):
        if self.index is None or not len(self.index):
            return [], "No similar-paintings index was exported with this model."
        gallery, links = [], []
        for item in self.index.query(embedding, k):
            caption = " — ".join(str(item[key]) for key in ("author", "title", "date") if item.get(key))
            caption = caption or "(no catalogue data)"
            if item.get("thumbnail"):
                # A path, not a PIL image: gradio copies files into its cache atomically, but rewrites a PIL
                # image's cache file in place, which truncated concurrent downloads under load (measured).
                gallery.append((item["thumbnail"], f"{caption} ({item['score']:.2f})"))
            if item.get("url"):
                links.append(f"- [{caption}]({item['url']})")
        return gallery, "\n".join(links) or "The index holds no links to wga.hu pages."

    def explain(self, image: str | Path | bytes | None):
        """One Grad-CAM overlay per head, each for that head's top class."""
        if image is None:
            raise gr.Error("Upload a painting first.")
        try:
            pixels = self.predictor.prepare(image)  # bounded first: a 10 x 1,000,000 strip is not a 22 GB tensor
        except ImageError as error:
            raise unreadable(image, error) from None
        if self._gradcam is None:
            self._gradcam = GradCam(self.model)
        overlays = []
        for head in self.model.heads:
            heatmap = self._gradcam.heatmap(pixels.astype(np.float32), head)
            overlays.append((self._to_file(overlay(pixels, heatmap)), f"{head}: where it looked"))
        return overlays

    def _to_file(self, image: np.ndarray) -> str:
        """A PNG under a fresh name (see `similar` for why gradio gets paths rather than arrays) in this backend's
        own folder, where overlays older than OVERLAY_MAX_AGE_S are removed: a long-running demo does not fill
        the disk."""
        cutoff = time.time() - OVERLAY_MAX_AGE_S
        for old in self._overlays.glob("*.png"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except FileNotFoundError:
                pass  # a concurrent request removed it first
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


def unreadable(image, error: ImageError) -> gr.Error:
    """The error a user sees: the file's own name (not the server's cache path), what is wrong, what to do."""
    if isinstance(image, (str, Path)):
        reason = str(error).replace(str(image), Path(image).name)
    else:
        reason = str(error)
    return gr.Error(
        f"That file cannot be read as an image ({reason}). Try a JPEG or PNG photo or scan of a painting.",
        title="Unreadable image",
    )


def build_demo(export_dir: str | Path, examples: list[str] | None = None) -> gr.Blocks:
    backend = DemoBackend(export_dir)
    heads = backend.model.heads
    with gr.Blocks(title="artnet: when, where and what is this painting?", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(
            "# artnet\nWhen, where and what is this painting? One model, one forward pass, three answers "
            "(European paintings 1401-1900: " + ", ".join(labels.SCHOOLS) + ")."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Painting")
                classify = gr.Button("Classify", variant="primary")
            with gr.Column():
                outputs = {head: gr.Label(num_top_classes=3, label=TITLES[head]) for head in heads}
                note = gr.Markdown()
        with gr.Accordion("Why? Grad-CAM per head (on request)", open=False):
            explain = gr.Button("Show where each head looked")
            heatmaps = gr.Gallery(label="Grad-CAM", columns=3, height=260)
        with gr.Accordion("Similar paintings of the training collection", open=False):
            similar = gr.Gallery(label="Nearest by embedding", columns=6, height=220)
            links = gr.Markdown()
        with gr.Accordion("Model card", open=False):
            gr.Markdown(model_card_markdown(backend.card))
        if examples:
            gr.Examples(examples=[[path] for path in examples], inputs=[image])

        def on_classify(upload):
            per_head, message, gallery, link_text = backend.classify(uploaded_image(upload))
            return [per_head[head] for head in heads] + [message, gallery, link_text]

        def on_explain(upload):
            return backend.explain(uploaded_image(upload))

        # preprocess=False: artnet reads the upload itself (see `uploaded_image`).
        targets = [outputs[head] for head in heads] + [note, similar, links]
        classify.click(on_classify, inputs=image, outputs=targets, api_name="classify", preprocess=False)
        image.upload(on_classify, inputs=image, outputs=targets, api_name=False, preprocess=False)
        explain.click(on_explain, inputs=image, outputs=heatmaps, api_name="explain", preprocess=False)
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.backend = backend  # for tests and the CLI
    return demo


def launch(demo: gr.Blocks, **options):
    """`demo.launch` with artnet's serving defaults: errors shown to the user (they say what is wrong with an
    upload), and the state of at most SESSIONS_KEPT sessions kept in memory (the oldest are dropped)."""
    options.setdefault("show_error", True)
    options.setdefault("state_session_capacity", SESSIONS_KEPT)
    return demo.launch(**options)


def example_images(export_dir: str | Path, count: int = 3) -> list[str]:
    """A few thumbnails of the training collection as examples (the user's own copies, never shipped)."""
    thumbs = sorted(Export(export_dir).index.thumbs.glob("*.jpg"))
    step = max(1, len(thumbs) // max(1, count))
    return [str(path) for path in thumbs[::step][:count]]
