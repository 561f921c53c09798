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

Correcting the outline: the answer also shows the photo with the outline found drawn on it, made by the server
from its own copy of the upload. A visitor taps the painting's four corners there (the image's select event) and
presses "Classify my corners". The taps live in a `gr.State`, which gradio keeps on the server (`Taps`): the page
sends only each tap's [x, y], numbers that are checked here and again, in the photo's pixels, by the backend.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from pathlib import Path
from typing import NamedTuple, TypedDict

import gradio as gr
import numpy as np
from gradio import utils as gradio_utils
from PIL import Image

from artnet import labels
from artnet.serving.backend import Answer, DemoBackend, draw_taps, user_error
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
CORNERS = 4
TAP_HELP = "Tap the painting's four corners (any order), then **Classify my corners**."
TAP_LABEL = "Your photo"
OUTLINED = "Your photo: the outline read, in green"
NOT_OUTLINED = "Your photo: no outline, the whole image was read"
PHOTO_SHOWN_ID = "artnet-photo-shown"  # the photo shown's element, for the browser tests
# The photo shown, as the taps' state keeps it: a JPEG of at most 1024 px a side (a few hundred KB a visitor, where
# its pixels would be 2-3 MB), each tap drawn on a fresh copy; the page is sent a JPEG too.
SHOWN_PHOTO_QUALITY = 90
GRADCAM_LEGEND = (
    "Colour shows how much each region raised that head's answer: **red** most, then yellow and green, **blue** "
    "least (Grad-CAM, scaled per image). Each overlay names the head, its top class and that class's probability."
)


def is_uploaded(path: str) -> bool:
    """Whether `path` lies in gradio's upload folder (where an upload, a webcam shot or an example's copy lands)."""
    folder = os.path.realpath(gradio_utils.get_upload_folder())
    return Path(os.path.realpath(path)).is_relative_to(folder)


def uploaded_file(path: str) -> str:
    """`path` when it lies in gradio's upload folder, else a refusal: an API caller naming a file of the server
    (`{"path": "/etc/passwd"}`) gets nothing read."""
    if not is_uploaded(path):
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


class Taps(TypedDict):
    """The corners a visitor tapped on the photo shown, and what it takes to read them (a `gr.State`: gradio keeps
    it on the server, the page never sends it)."""

    photo: str  # the upload in gradio's upload folder that was classified and is shown
    shown: bytes  # the photo as shown (with the outline found), JPEG: what each tap is drawn on
    label: str  # what it shows: OUTLINED or NOT_OUTLINED
    size: tuple[int, int]  # the photo shown, (width, height) in its pixels
    scale: tuple[float, float]  # the photo's own pixels per pixel shown, (x, y)
    taps: list[list[float]]  # [x, y] in the pixels shown, in the order tapped; at most CORNERS
    read: list[list[float]] | None  # the corners the answer shown was read along (photo pixels); None: the search's


def new_taps(photo: str | bytes, answer: Answer) -> Taps | None:
    """No taps yet on the photo just classified; None for an image with no photo shown (a pasted image's bytes,
    which only an API caller sends: it cuts its painting out itself)."""
    view = answer.photo_view
    if not isinstance(photo, str) or view is None:
        return None
    buffer = io.BytesIO()
    Image.fromarray(view.pixels).save(buffer, format="JPEG", quality=SHOWN_PHOTO_QUALITY)
    height, width = view.pixels.shape[:2]
    label = NOT_OUTLINED if (answer.photo or {}).get("outline") is None else OUTLINED
    return Taps(
        photo=photo, shown=buffer.getvalue(), label=label, size=(width, height), scale=view.scale, taps=[], read=None
    )


def shown_taps(taps: Taps | None) -> list:
    """The tap image's and the state's new values: the photo with the taps drawn, its label counting them."""
    if taps is None:
        return [gr.Image(value=None, label=TAP_LABEL), None]
    shown = np.asarray(Image.open(io.BytesIO(taps["shown"])).convert("RGB"))
    count = len(taps["taps"])
    label = f"{taps['label']}; your corners in pink ({count} of {CORNERS})" if count else taps["label"]
    return [gr.Image(value=draw_taps(shown, taps["taps"]), label=label), taps]


def tap_point(index, size: tuple[int, int]) -> list[float]:
    """A tap's [x, y] in the pixels shown, from `gr.SelectData.index` (numbers the page sends, so checked: two
    finite numbers inside the photo shown)."""
    try:
        x, y = (float(value) for value in index)
    except (TypeError, ValueError):
        x = y = math.nan
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= size[0] and 0 <= y <= size[1]):
        raise gr.Error("That tap was not on the photo: tap the painting's corners on the photo itself.")
    return [x, y]


def tapped_corners(taps: Taps | None) -> tuple[str, list[list[float]]]:
    """(the upload, the four corners tapped in its own pixels), or a refusal saying how many are missing."""
    count = len(taps["taps"]) if taps else 0
    if count != CORNERS:
        raise user_error(
            f"Tap all four corners of the painting first ({count} of {CORNERS} so far).", "Four corners needed"
        )
    scale_x, scale_y = taps["scale"]
    return uploaded_file(taps["photo"]), [[x * scale_x, y * scale_y] for x, y in taps["taps"]]


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
    shown_photo: gr.Image  # the photo with the outline drawn, where the visitor taps the painting's corners
    taps: gr.State  # `Taps`, or None before an answer
    classify_corners: gr.Button
    start_over: gr.Button


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
    phone: on a 390 px wide screen the columns stack, so nothing else may come before them), what was read and
    the photo with its outline, where the visitor corrects it, then the facts, why, similar paintings and the
    model card."""
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
            # The outline read, drawn on the photo, and the correction beside "Use the whole image": tapping the
            # painting's corners (a phone's way to outline it; it also undoes the perspective, which a rectangular
            # crop cannot). The image is an output only: its taps are select events (`_connect`).
            with gr.Accordion("The outline read, and your correction", open=True):
                gr.Markdown(TAP_HELP)
                shown_photo = gr.Image(
                    label=TAP_LABEL,
                    format="jpeg",
                    interactive=False,
                    buttons=["fullscreen"],
                    show_label=True,
                    elem_id=PHOTO_SHOWN_ID,
                )
                taps = gr.State(None)
                with gr.Row():
                    classify_corners = gr.Button("Classify my corners")
                    start_over = gr.Button("Start over")
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
        image,
        whole_image,
        classify,
        outputs,
        year,
        note,
        read_view,
        photo,
        explain,
        heatmaps,
        similar,
        neighbours,
        shown_photo,
        taps,
        classify_corners,
        start_over,
    )


def _connect(page: Page, backend: DemoBackend) -> None:
    """The events: classify (button, any new image or a change of "use the whole image"; API /classify and
    /classify_whole), the visitor's taps on the photo shown, "Start over" and "Classify my corners" (page only),
    explain (button, API /explain), and clearing a stale answer as a new image arrives."""
    heads = backend.model.heads
    extra = [page.year] if page.year is not None else []
    answer_parts = [page.note, page.read_view, page.photo, page.similar, page.neighbours]
    targets = [page.outputs[head] for head in heads] + extra + answer_parts
    tapping = [page.shown_photo, page.taps]
    inputs = [page.image, page.whole_image]

    def outputs_of(answer: Answer, on_page: bool) -> list:
        """The answer's outputs. On the page each head's label also says in words what it answers (its set with a
        calibrated export, or that it is unsure: `Answer.titles`); the API keeps plain values."""
        photo = {**(answer.photo or {}), "named": answer.named}
        return (
            [
                gr.Label(value=answer.labels[head], label=answer.titles[head]) if on_page else answer.labels[head]
                for head in heads
            ]
            + ([answer.year] if extra else [])
            + [answer.note, answer.read_view, photo, answer.similar, answer.neighbours]
        )

    def on_classify(upload, whole_image=False):
        return outputs_of(backend.classify(uploaded_image(upload), whole_image=bool(whole_image)), on_page=False)

    def on_page(upload, whole_image=False):
        """The answer, and the photo with the outline read drawn on it, ready for the visitor's taps."""
        if upload is None:
            return [gr.skip()] * (len(targets) + len(tapping))
        photo = uploaded_image(upload)
        answer = backend.classify(photo, whole_image=bool(whole_image), photo_view=isinstance(photo, str))
        return outputs_of(answer, on_page=True) + shown_taps(new_taps(photo, answer))

    def on_explain(upload, whole_image=False, taps: Taps | None = None):
        """Grad-CAM of the reading the answer shown came from: along the visitor's corners after "Classify my
        corners", else as classified (the photo step, or the whole image)."""
        if taps and taps.get("read"):
            return backend.explain(uploaded_file(taps["photo"]), corners=taps["read"])
        return backend.explain(uploaded_image(upload), whole_image=bool(whole_image))

    def on_tap(taps: Taps | None, event: gr.SelectData):
        """One more corner, drawn on the photo shown; a fifth tap starts over (a visitor who missed one taps on)."""
        if not taps:
            raise gr.Error("Upload or photograph a painting first: its corners are tapped on the photo shown here.")
        point = tap_point(event.index, taps["size"])
        earlier = taps["taps"] if len(taps["taps"]) < CORNERS else []
        return shown_taps({**taps, "taps": [*earlier, point]})

    def on_start_over(taps: Taps | None):
        return shown_taps({**taps, "taps": []} if taps else None)

    def on_corners(taps: Taps | None):
        """The visitor's four corners outline the painting: read along them (no search). The Grad-CAM overlays
        shown go, as they describe another reading; the state remembers the corners, so that "Show where each
        head looked" explains this reading (taps made after it do not change it until classified)."""
        photo, corners = tapped_corners(taps)
        answer = backend.classify(photo, corners=corners)
        return outputs_of(answer, on_page=True) + [None, {**taps, "read": corners}]

    def clear():
        """A new image, or a new choice of "use the whole image": nothing shown may still describe the previous
        answer (its labels' titles, the photo shown and its taps included). One function for both because the
        unqueued events are only this: it reads no image."""
        cleared = [gr.Label(value=None, label=TITLES[head]) for head in heads]
        return cleared + [""] * len(extra) + ["", "", None, "", None, None] + shown_taps(None)  # ..., heatmaps

    shared = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": CONCURRENCY, "preprocess": False}
    quick = {"api_name": False, "queue": False, "preprocess": False}
    cleared = targets + [page.heatmaps] + tapping
    # preprocess=False: artnet reads the upload itself (see `uploaded_image`).
    page.classify.click(on_page, inputs=inputs, outputs=targets + tapping, api_name=False, **shared)
    # Any new image (upload, paste, webcam, an example's click) first clears what described the old one, then is
    # classified; clearing the image only clears.
    page.image.change(clear, outputs=cleared, **quick).then(
        on_page, inputs=inputs, outputs=targets + tapping, api_name=False, **shared
    )
    page.whole_image.change(clear, outputs=cleared, **quick).then(  # answers again at once
        on_page, inputs=inputs, outputs=targets + tapping, api_name=False, **shared
    )
    page.explain.click(on_explain, inputs=[*inputs, page.taps], outputs=page.heatmaps, api_name=False, **shared)
    # The visitor's corners, page only (api_name=False: an API caller cuts its painting out itself and sends it to
    # /classify_whole). A tap draws on a picture, so it is queued (the unqueued events read no image and every
    # queued one shares the model's budget: tests/test_demo_safety.py); a tap costs milliseconds. trigger_mode
    # "once" (gradio's default) drops a tap made while the last is drawn, so two taps never race over the state
    # (the visitor sees the count in the photo's label, and taps again).
    page.shown_photo.select(on_tap, inputs=page.taps, outputs=tapping, api_name=False, **shared)
    page.start_over.click(on_start_over, inputs=page.taps, outputs=tapping, api_name=False, **shared)
    page.classify_corners.click(
        on_corners, inputs=page.taps, outputs=targets + [page.heatmaps, page.taps], api_name=False, **shared
    )

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
