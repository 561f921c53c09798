"""The Gradio demo page: drop in a painting, get when / where / what from ONE forward pass, and, on request, why
(Grad-CAM per head) and which paintings of the training collection it resembles.

`build_demo(export_dir)` returns the Blocks; `demo/app.py` and `artnet demo` launch it (`artnet.serving.launch`).
This module is the page alone: its components (`_layout`) and the events that connect them to the backend
(`_connect`); what the events compute is `artnet.serving.backend.DemoBackend`, and the words and HTML it shows are
`artnet.serving.cards`. An export folder holds `model.keras`, `model_card.json` and optionally `index/` (see
`artnet.serving.export` and `artnet.serving.similar`).

Nothing of the export folder is served as a file: no folder of it is a gradio static path (gradio follows links
there, so an export whose `thumbs` linked to `/` once served every readable file of the machine); the
similar-paintings thumbnails travel inside the answer, and the examples are copied into gradio's cache when the page
is built. The events read only what gradio says a visitor uploaded (`uploaded_image`): a path outside gradio's
upload folder is refused.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import NamedTuple

import gradio as gr
from gradio import utils as gradio_utils

from artnet import labels
from artnet.serving.backend import DemoBackend, user_error
from artnet.serving.batcher import CONCURRENCY
from artnet.serving.cards import (
    NEIGHBOURS_CSS,
    TITLES,
    YEAR_TITLE,
    model_card_facts,
    model_card_markdown,
)
from artnet.serving.files import regular_inside
from artnet.serving.similar import regular_folder_inside
from artnet.workdir import Export

GRADIO_CACHE_CLEANUP = (3600, 3600)  # every hour, drop uploads and outputs older than an hour
# Every event that runs the model shares one gradio concurrency budget (see `artnet.serving.batcher.CONCURRENCY`).
CONCURRENCY_ID = "model"
GRADIO_ANALYTICS = {"GRADIO_ANALYTICS_MAX_EVENTS": "1000", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "100"}
GRADCAM_LEGEND = (
    "Colour shows how much each region raised that head's answer: **red** most, then yellow and green, **blue** "
    "least (Grad-CAM, scaled per image). Each overlay names the head, its top class and that class's probability."
)


def uploaded_file(path: str) -> str:
    """`path` when it lies in gradio's upload folder (where an upload, a webcam shot or an example's copy lands),
    else a refusal: an API caller naming a file of the server (`{"path": "/etc/passwd"}`) gets nothing read."""
    folder = os.path.realpath(gradio_utils.get_upload_folder())
    if not Path(os.path.realpath(path)).is_relative_to(folder):
        raise user_error(
            "That file was not uploaded to this demo: upload the image itself (with gradio_client: handle_file).",
            "Image refused",
        )
    return path


def uploaded_image(payload) -> str | bytes | None:
    """The demo image input's raw value as artnet's loader takes it: the uploaded file's path, or a pasted image's
    bytes.

    The demo's events run with `preprocess=False` because gradio's own preprocessing opens every upload with PIL:
    a text file, an empty file or a 20000x20000 PNG then fails inside gradio with an opaque "Could not preprocess
    input component", and a CMYK or 16-bit file is re-encoded before artnet sees it. artnet's loader reads every
    mode, applies EXIF and guards against decompression bombs with a message that says what is wrong. (gradio
    still moves and checks the upload before this: only its PIL pass is skipped; and a path must lie in its upload
    folder, `uploaded_file`.)
    """
    if payload is None:
        return None
    if isinstance(payload, str):
        return uploaded_file(payload)
    url = payload.get("url") or ""
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.partition(",")[2], validate=True)
        except binascii.Error:
            raise gr.Error("The pasted image is not valid base64 data: paste or upload it again.") from None
    if payload.get("path"):
        return uploaded_file(payload["path"])
    raise gr.Error("No image arrived with the request: upload, paste or photograph a painting again.")


class Page(NamedTuple):
    """The components the events read and write."""

    image: gr.Image
    whole_image: gr.Checkbox
    classify: gr.Button
    outputs: dict[str, gr.Label]  # head -> its answer
    year: gr.Textbox | None  # only for a model with a year head
    note: gr.Markdown
    read_view: gr.HTML  # the painting as the model read it: cut out of the photo, or the whole image
    photo: gr.JSON  # for the API: the outline, what was found, the painting named
    explain: gr.Button
    heatmaps: gr.Gallery
    similar: gr.HTML
    neighbours: gr.JSON


def build_demo(export_dir: str | Path, examples: list[str] | None = None) -> gr.Blocks:
    backend = DemoBackend(export_dir)  # ExportError, naming the file, for an export that is not safe to serve
    # No static paths: the examples are copied into gradio's cache as the page is built (from any folder: the app
    # has not launched yet), and the neighbours' thumbnails are inlined in the answer (see the top).
    with gr.Blocks(title="artnet: when, where and what is this painting?", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        page = _layout(backend)
        _connect(page, backend)
        if examples:
            gr.Examples(
                examples=[[path] for path in examples],
                inputs=[page.image],
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


def _layout(backend: DemoBackend) -> Page:
    """The page's components, top to bottom: the camera and the answers first (a visitor in a gallery holds a
    phone: on a 390 px wide screen the columns stack, so nothing else may come before them), what was read,
    then the facts, why, similar paintings and the model card."""
    gr.Markdown(
        "# artnet\nWhen, where and what is this painting? Photograph it, or upload a scan: three answers "
        "(European paintings 1401-1900: " + ", ".join(labels.SCHOOLS) + ")."
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Painting")
            whole_image = gr.Checkbox(
                label="Use the whole image (the painting was not found right, or this is a scan)", value=False
            )
            classify = gr.Button("Classify", variant="primary")
        with gr.Column():
            outputs = {
                # No heading: the top class is not a bold verdict; the label above says it in words.
                head: gr.Label(num_top_classes=3, label=TITLES[head], show_heading=False)
                for head in backend.model.heads
            }
            # The year head's answer sits under the block: "c. 1640 ± 25" (one standard deviation).
            year = gr.Textbox(label=YEAR_TITLE, interactive=False) if backend.model.year_head else None
            note = gr.Markdown(label="note")
            # Below the answers (on a phone they come first): the cut-out the model read, and how it was found.
            read_view = gr.HTML(label="what the model read")
            photo = gr.JSON(label="photo", visible=False)
    gr.Markdown(model_card_facts(backend.card))
    with gr.Accordion("Why? Grad-CAM per head (on request)", open=False):
        explain = gr.Button("Show where each head looked")
        heatmaps = gr.Gallery(label="Grad-CAM", columns=3, object_fit="contain", height="auto")
        gr.Markdown(GRADCAM_LEGEND)
    with gr.Accordion("Similar paintings of the training collection", open=True):
        similar = gr.HTML(label="similar paintings", css_template=NEIGHBOURS_CSS, js_on_load=None)
        neighbours = gr.JSON(label="neighbours", visible=False)
    with gr.Accordion("Model card", open=False):
        gr.Markdown(model_card_markdown(backend.card))
    return Page(
        image, whole_image, classify, outputs, year, note, read_view, photo, explain, heatmaps, similar, neighbours
    )


def _connect(page: Page, backend: DemoBackend) -> None:
    """The events: classify (button, any new image or a change of "use the whole image"; API /classify and
    /classify_whole), explain (button, API /explain), and clearing a stale answer as a new image arrives."""
    heads = backend.model.heads
    extra = [page.year] if page.year is not None else []
    answer_parts = [page.note, page.read_view, page.photo, page.similar, page.neighbours]
    targets = [page.outputs[head] for head in heads] + extra + answer_parts
    inputs = [page.image, page.whole_image]

    def on_classify(upload, whole_image=False, on_page=False):
        """The answer's outputs. On the page each head's label also says in words what it answers (its set with a
        calibrated export, or that it is unsure: `Answer.titles`); the API keeps plain values."""
        answer = backend.classify(uploaded_image(upload), whole_image=bool(whole_image))
        photo = {**(answer.photo or {}), "named": answer.named}
        return (
            [
                gr.Label(value=answer.labels[head], label=answer.titles[head]) if on_page else answer.labels[head]
                for head in heads
            ]
            + ([answer.year] if extra else [])
            + [answer.note, answer.read_view, photo, answer.similar, answer.neighbours]
        )

    def on_page(upload, whole_image=False):
        return [gr.skip()] * len(targets) if upload is None else on_classify(upload, whole_image, on_page=True)

    def on_explain(upload, whole_image=False):
        return backend.explain(uploaded_image(upload), whole_image=bool(whole_image))

    def clear():
        # A new image: nothing shown may still describe the previous one (its labels' titles included).
        cleared = [gr.Label(value=None, label=TITLES[head]) for head in heads]
        return cleared + [""] * len(extra) + ["", "", None, "", None, None]  # ..., heatmaps

    shared = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": CONCURRENCY, "preprocess": False}
    quick = {"api_name": False, "queue": False}
    # preprocess=False: artnet reads the upload itself (see `uploaded_image`).
    page.classify.click(on_page, inputs=inputs, outputs=targets, api_name=False, **shared)
    # Any new image (upload, paste, webcam, an example's click) first clears what described the old one, then
    # is classified; clearing the image only clears.
    for changed in (page.image, page.whole_image):  # the visitor's correction answers again at once
        changed.change(clear, outputs=targets + [page.heatmaps], **quick).then(
            on_page, inputs=inputs, outputs=targets, api_name=False, **shared
        )
    page.explain.click(on_explain, inputs=inputs, outputs=page.heatmaps, api_name=False, **shared)

    # The API, one input each (a REST call sends the image alone, as before the checkbox): /classify and /explain
    # read an upload as the page does, through the photo step; /classify_whole takes it whole.
    def on_whole(upload):
        return on_classify(upload, whole_image=True)

    gr.Button(visible=False).click(on_classify, inputs=page.image, outputs=targets, api_name="classify", **shared)
    gr.Button(visible=False).click(on_whole, inputs=page.image, outputs=targets, api_name="classify_whole", **shared)
    gr.Button(visible=False).click(on_explain, inputs=page.image, outputs=page.heatmaps, api_name="explain", **shared)


def example_images(export_dir: str | Path, count: int = 3) -> list[str]:
    """A few thumbnails of the training collection as examples (the user's own copies, never shipped): regular
    files inside the export only (`ExportError`, naming it, for one that links out)."""
    files = Export(export_dir)
    if not os.path.lexists(files.index.thumbs):
        return []
    regular_folder_inside(files.root, files.index.thumbs)
    thumbs = [regular_inside(files.root, path) for path in sorted(files.index.thumbs.glob("*.jpg"))]
    step = max(1, len(thumbs) // max(1, count))
    return [str(path) for path in thumbs[::step][:count]]
