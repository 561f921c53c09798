"""Correcting the outline: the answer shows the visitor's photo with the outline found drawn on it; when it missed,
the visitor taps the painting's four corners there and "Classify my corners" reads the painting along them (the
issue: "the outline it found is drawn on the photo ... and a visitor can correct it").

The events are driven through gradio's own processing (`Blocks.process_api`, as the page's requests are), with
payloads shaped as the page sends them: files already uploaded into gradio's upload folder, and a tap as the
select event's data (`{"index": [x, y], "value": None}`, the pixel of the image shown that was tapped). One
`SessionState` per visitor carries the taps' `gr.State` from event to event, as gradio's session does.
"""

import asyncio
import base64
import io
import re
import shutil
import uuid
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
from gradio import utils as gradio_utils
from gradio.data_classes import FileData
from gradio.events import EventData
from gradio.state_holder import SessionState
from PIL import Image

from artnet.data.photo import order_corners, rectify
from artnet.models.artnet import ArtNet
from artnet.serving.backend import PHOTO_VIEW_SIDE, READ_VIEW_SIDE
from artnet.serving.batcher import CONCURRENCY
from artnet.serving.demo import (
    CONCURRENCY_ID,
    NOT_OUTLINED,
    OUTLINED,
    PHOTO_SHOWN_ID,
    TAP_HELP,
    TAP_LABEL,
    build_demo,
)
from artnet.serving.export import export
from artnet.serving.predictor import CORNERS_GIVEN, CornersError, check_corners

SMALL, LARGE = (480, 360), (1600, 1200)  # photos shown as they are, and shrunk to PHOTO_VIEW_SIDE
PAINTING = np.float32([[0.25, 0.2], [0.75, 0.24], [0.73, 0.8], [0.27, 0.76]])  # its corners, shares of the photo
WHOLE = "the whole image was used, as asked"
FOUND = "painting found in the photo and cut out"


def gallery_photo(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A painting (coloured blocks) seen at a slight angle on a plain wall: the photo step finds it."""
    width, height = size
    rng = np.random.default_rng(seed)
    photo = np.full((height, width, 3), (200, 195, 185), np.uint8)
    blocks = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    art = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    inside = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(inside, (PAINTING * [width, height]).round().astype(np.int32), 1)
    photo[inside > 0] = art[inside > 0]
    return photo


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corners-export")
    export(ArtNet("tiny", image_size=32), folder, card={"train_examples": 10})
    return folder


@pytest.fixture(scope="module")
def demo(export_dir):
    return build_demo(export_dir)


@pytest.fixture
def uploads():
    """A folder of its own inside gradio's upload folder, where a visitor's upload lands: a function writing a
    gallery photo of a size there, giving its path."""
    folder = Path(gradio_utils.get_upload_folder()) / f"artnet-corners-test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)

    def write(size: tuple[int, int], name: str = "photo.png", seed: int = 0) -> str:
        path = folder / name
        Image.fromarray(gallery_photo(size, seed)).save(path)
        return str(path)

    yield write
    shutil.rmtree(folder, ignore_errors=True)


def sent(path: str | None) -> dict | None:
    """A file as the page sends it to an event (gradio's FileData, marked as one)."""
    return None if path is None else FileData(path=path, orig_name=Path(path).name).model_dump()


def component(demo, kind, **wanted):
    """The one component of `kind` whose constructor arguments include `wanted`."""
    found = [
        block
        for block in demo.blocks.values()
        if isinstance(block, kind) and all(block.constructor_args.get(k) == v for k, v in wanted.items())
    ]
    assert len(found) == 1, (kind, wanted, found)
    return found[0]


def event(demo, block, trigger):
    """The first function `trigger` of `block` runs (not its .then() steps)."""
    found = [fn for fn in demo.fns.values() if (block._id, trigger) in fn.targets]
    assert len(found) == 1, (block, trigger, found)
    return found[0]


class Visitor:
    """One visitor's page: the events it triggers, run through gradio's processing in one session."""

    def __init__(self, demo):
        self.demo, self.session = demo, SessionState(demo)
        self.photo_shown = component(demo, gr.Image, label=TAP_LABEL)
        self.classify = event(demo, component(demo, gr.Button, value="Classify"), "click")
        self.tap_event = event(demo, self.photo_shown, "select")
        self.corners = event(demo, component(demo, gr.Button, value="Classify my corners"), "click")
        self.start_over = event(demo, component(demo, gr.Button, value="Start over"), "click")

    def run(self, fn, *inputs, event_data=None) -> list:
        """The event's outputs as gradio sends them to the page (after its pre- and postprocessing)."""
        answer = self.demo.process_api(block_fn=fn, inputs=list(inputs), state=self.session, event_data=event_data)
        data = asyncio.run(answer)["data"]
        return [value.model_dump() if hasattr(value, "model_dump") else value for value in data]  # gr.JSON's

    def upload(self, path: str) -> list:
        """The page's classify of an upload: the answer, then the photo shown and the taps' state."""
        return self.run(self.classify, sent(path), False)

    def tap(self, x, y) -> dict:
        """A tap on the photo shown at pixel (x, y) of it: the photo shown, updated (gradio's update dict)."""
        data = EventData(self.photo_shown, {"index": [x, y], "value": None})
        shown, _ = self.run(self.tap_event, None, event_data=data)
        return shown

    @property
    def taps(self):
        return self.session[self.tap_event.inputs[0]._id]


def shown_pixels(update: dict) -> np.ndarray:
    """The photo an update of the shown image sends the page, as pixels."""
    return np.asarray(Image.open(update["value"]["path"]).convert("RGB"))


def read_view_image(read_view: str) -> np.ndarray:
    """The image the read view shows (its inline JPEG)."""
    (uri,) = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', read_view)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB"))


def along(corners, samples: int = 20) -> np.ndarray:
    """Points along the closed outline through `corners`, away from the corners themselves."""
    corners = np.asarray(corners, np.float64)
    t = np.linspace(0.1, 0.9, samples)[:, None]
    return np.concatenate([corners[i] * (1 - t) + corners[(i + 1) % 4] * t for i in range(4)])


def colour_change(first: np.ndarray, second: np.ndarray, points) -> float:
    """The mean absolute difference of two same-sized images at `points` ([x, y])."""
    x, y = np.round(np.asarray(points)).astype(int).T
    return float(np.abs(first[y, x].astype(int) - second[y, x].astype(int)).mean())


def test_the_page_shows_the_photo_to_tap_a_state_and_two_buttons(demo):
    visitor = Visitor(demo)
    shown, state = visitor.photo_shown, visitor.tap_event.inputs[0]
    assert shown.interactive is False and isinstance(state, gr.State)
    instructions = [block for block in demo.blocks.values() if isinstance(block, gr.Markdown) and block.value]
    assert [block.value for block in instructions if "corners" in block.value] == [TAP_HELP]
    assert TAP_HELP.replace("**", "") == "Tap the painting's four corners (any order), then Classify my corners."
    # On a phone the columns stack: the camera and the three answers come first, the read view, then the photo.
    image = component(demo, gr.Image, label="Painting")
    answers = [block for block in demo.blocks.values() if isinstance(block, gr.Label)]
    read_view = component(demo, gr.HTML, label="what the model read")
    assert len(answers) == 3 and max(block._id for block in [image, *answers]) < read_view._id < shown._id
    # Each tap, "Start over" and "Classify my corners" read the state alone, page only, under the model's one
    # concurrency budget (the tap draws a picture, so it is queued: test_demo_safety allows no other unqueued work).
    for fn in (visitor.tap_event, visitor.start_over, visitor.corners):
        assert fn.inputs == [state] and fn.api_visibility == "private" and fn.queue is not False
        assert (fn.concurrency_id, fn.concurrency_limit) == (CONCURRENCY_ID, CONCURRENCY) and not fn.preprocess
    assert visitor.tap_event.outputs == visitor.start_over.outputs == [shown, state]
    # "Classify my corners" answers as the classify button does, empties the Grad-CAM overlays and records in the
    # state what it read (so that the overlays asked for next explain it).
    ids = [block._id for block in visitor.corners.outputs]
    assert ids[:-2] == [block._id for block in visitor.classify.outputs[:-2]]
    assert isinstance(visitor.corners.outputs[-2], gr.Gallery) and visitor.corners.outputs[-1] is state


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_the_answer_shows_the_photo_with_the_outline_found_drawn_on_it(demo, uploads, size):
    visitor = Visitor(demo)
    path = uploads(size)
    *_, photo_json, _, _, shown, state = visitor.upload(path)
    assert photo_json["found"] == FOUND and shown["label"] == OUTLINED and state is None  # kept by gradio, never sent
    drawn, photo = shown_pixels(shown), gallery_photo(size)
    # The photo itself, its long side at most PHOTO_VIEW_SIDE (a 12 Mpx photo is not sent to a phone).
    scale = max(1.0, max(size) / PHOTO_VIEW_SIDE)
    assert drawn.shape[:2] == (round(size[1] / scale), round(size[0] / scale))
    photo = cv2.resize(photo, drawn.shape[1::-1], interpolation=cv2.INTER_AREA)
    outline = np.asarray(photo_json["outline"]) / scale  # the photo's own pixels -> the pixels shown
    assert colour_change(drawn, photo, along(outline)) > 60  # the outline, drawn
    near = np.zeros(drawn.shape[:2], np.uint8)
    cv2.polylines(near, [outline.round().astype(np.int32)], True, 1, 16)
    away = np.abs(drawn.astype(int) - photo)[near == 0]
    assert away.mean() < 4  # elsewhere the photo, as it was (JPEG aside)
    taps = visitor.taps
    assert taps["photo"] == path and taps["taps"] == [] and tuple(taps["size"]) == drawn.shape[1::-1]


def test_with_the_whole_image_asked_for_the_photo_is_shown_with_no_outline(demo, uploads):
    visitor = Visitor(demo)
    *_, photo_json, _, _, shown, _ = visitor.run(visitor.classify, sent(uploads(SMALL)), True)
    assert photo_json["outline"] is None and photo_json["found"] == WHOLE and shown["label"] == NOT_OUTLINED
    assert np.abs(shown_pixels(shown).astype(int) - gallery_photo(SMALL)).mean() < 4  # nothing drawn


def test_four_taps_in_any_order_classify_along_the_visitor_s_corners(demo, uploads):
    visitor = Visitor(demo)
    path = uploads(LARGE)
    visitor.upload(path)
    scale = LARGE[0] / PHOTO_VIEW_SIDE  # the photo's own pixels per pixel shown
    # The visitor's outline: near the painting, not the one found; tapped bottom-right first, then around.
    taps = [[700.4, 490.0], [150.0, 120.0], [170.0, 560.0], [770.0, 140.0]]
    before = shown_pixels(visitor.tap(*taps[0]))
    for count, (x, y) in enumerate(taps[1:], start=2):
        shown = visitor.tap(x, y)
        assert shown["label"] == f"{OUTLINED}; your corners in pink ({count} of 4)"
    drawn = shown_pixels(shown)
    assert colour_change(drawn, before, along(order_corners(taps))) > 60  # with four, their outline is drawn
    assert visitor.taps["taps"] == taps
    passes = demo.backend.predictor.forward_passes
    note, read_view, photo_json, *_, heatmaps, _ = visitor.run(visitor.corners, None)[3:]
    assert demo.backend.predictor.forward_passes == passes + 1 and heatmaps == []  # the gallery, emptied
    # The outline is the visitor's, in the photo's own pixels, clockwise from the top-left.
    expected = order_corners(np.asarray(taps) * scale)
    assert np.allclose(photo_json["outline"], expected, atol=0.06), photo_json["outline"]
    assert photo_json["found"] == CORNERS_GIVEN and photo_json["confidence"] == 1.0
    assert f"Photo: {CORNERS_GIVEN}" in note and "outline: tapped by you" in read_view
    # The read view is the quadrilateral they outlined, rectified.
    rectified = Image.fromarray(rectify(gallery_photo(LARGE), expected))
    rectified.thumbnail((READ_VIEW_SIDE, READ_VIEW_SIDE))
    seen = read_view_image(read_view)
    assert seen.shape[1::-1] == rectified.size and np.abs(seen.astype(int) - np.asarray(rectified)).mean() < 6


def test_after_classify_my_corners_the_heatmaps_explain_the_reading_along_them(demo, uploads, monkeypatch):
    """Grad-CAM explains the reading the answer shown came from: the visitor's corners once classified (taps made
    after it do not move it), the photo step again after a new upload."""
    visitor = Visitor(demo)
    explain = event(demo, component(demo, gr.Button, value="Show where each head looked"), "click")
    reads = []
    read = demo.backend.read
    monkeypatch.setattr(
        demo.backend, "read", lambda *args, **kwargs: reads.append((args, kwargs)) or read(*args, **kwargs)
    )
    path = uploads(SMALL)
    visitor.upload(path)
    taps = [[100.0, 60.0], [380.0, 80.0], [360.0, 300.0], [110.0, 280.0]]
    for x, y in taps:
        visitor.tap(x, y)
    visitor.run(visitor.corners, None)
    visitor.tap(20, 20)  # a fifth tap: a new outline begun, not yet classified
    reads.clear()
    (overlays,) = visitor.run(explain, sent(path), False, None)
    assert len(overlays) == len(demo.backend.model.heads)
    (args, kwargs), *_ = reads
    corners = args[2] if len(args) > 2 else kwargs.get("corners")
    assert np.allclose(corners, taps)  # SMALL is shown at its own size: shown pixels are the photo's
    visitor.upload(path)
    reads.clear()
    visitor.run(explain, sent(path), False, None)
    (args, kwargs), *_ = reads
    assert (args[2] if len(args) > 2 else kwargs.get("corners")) is None


def test_a_fifth_tap_starts_over_and_so_does_the_button(demo, uploads):
    visitor = Visitor(demo)
    visitor.upload(uploads(SMALL))
    for x, y in [[100, 60], [380, 80], [360, 300], [110, 280]]:
        visitor.tap(x, y)
    shown = visitor.tap(50, 50)
    assert shown["label"].endswith("(1 of 4)") and visitor.taps["taps"] == [[50.0, 50.0]]
    empty, _ = visitor.run(visitor.start_over, None)
    assert empty["label"] == OUTLINED and visitor.taps["taps"] == []
    # The photo as the answer showed it, the outline found alone.
    assert np.abs(shown_pixels(empty).astype(int) - shown_pixels(shown)).max() > 100  # the tap's dot, gone


@pytest.mark.parametrize("count", [0, 1, 3])
def test_fewer_than_four_taps_say_so_and_nothing_is_classified(demo, uploads, count):
    visitor = Visitor(demo)
    visitor.upload(uploads(SMALL))
    for x, y in [[100, 60], [380, 80], [360, 300]][:count]:
        visitor.tap(x, y)
    passes = demo.backend.predictor.forward_passes
    with pytest.raises(gr.Error, match=re.escape(f"Tap all four corners of the painting first ({count} of 4 so far)")):
        visitor.run(visitor.corners, None)
    assert demo.backend.predictor.forward_passes == passes


def test_before_any_answer_there_is_nothing_to_tap_or_classify(demo):
    visitor = Visitor(demo)
    with pytest.raises(gr.Error, match="Upload or photograph a painting first"):
        visitor.tap(10, 10)
    with pytest.raises(gr.Error, match=re.escape("(0 of 4 so far)")):
        visitor.run(visitor.corners, None)


@pytest.mark.parametrize(
    ("taps", "words"),
    [
        ([[100, 100], [250, 101], [400, 102], [250, 300]], "Three of your corners lie almost on one line"),
        ([[100, 100], [400, 100], [250, 330], [250, 160]], "one lies inside the others' triangle"),
        ([[100, 100], [130, 100], [130, 130], [100, 130]], "outline only 0.5% of the photo, under 1%"),
    ],
    ids=["collinear", "not a quadrilateral", "tiny"],
)
def test_taps_that_outline_no_painting_are_refused_and_nothing_is_classified(demo, uploads, taps, words):
    visitor = Visitor(demo)
    visitor.upload(uploads(SMALL))
    for x, y in taps:
        visitor.tap(x, y)
    passes = demo.backend.predictor.forward_passes
    with pytest.raises(gr.Error, match=re.escape(words)) as raised:
        visitor.run(visitor.corners, None)
    assert raised.value.title == "Corners refused" and demo.backend.predictor.forward_passes == passes


@pytest.mark.parametrize("index", [[-1, 10], [10, 361], [481, 10], ["x", 10], [float("nan"), 10], [1, 2, 3], None])
def test_a_tap_that_is_not_a_point_on_the_photo_is_refused(demo, uploads, index):
    visitor = Visitor(demo)
    visitor.upload(uploads(SMALL))
    with pytest.raises(gr.Error, match="That tap was not on the photo"):
        visitor.run(visitor.tap_event, None, event_data=EventData(visitor.photo_shown, {"index": index, "value": 0}))
    assert visitor.taps["taps"] == []


@pytest.mark.parametrize(
    ("corners", "words"),
    [
        ([[0, 0], [10, 0]], "four corners, each two numbers"),
        ([[0, 0], [100, 0], [100, float("inf")], [0, 100]], "four corners, each two numbers"),
        ([[0, 0], ["a", 0], [100, 100], [0, 100]], "four corners, each two numbers"),
        ([[0, 0], [481, 0], [480, 360], [0, 360]], "inside the photo (480 x 360 pixels)"),
        ([[-1, 0], [480, 0], [480, 360], [0, 360]], "inside the photo"),
    ],
)
def test_the_backend_checks_the_corners_it_is_given(demo, uploads, corners, words):
    """The corners are numbers from a page: checked in the photo's own pixels whatever sent them."""
    with pytest.raises(CornersError, match=re.escape(words)):
        check_corners(corners, SMALL)
    passes = demo.backend.predictor.forward_passes
    with pytest.raises(gr.Error, match=re.escape(words)):
        demo.backend.classify(uploads(SMALL), corners=corners)
    assert demo.backend.predictor.forward_passes == passes


def test_corners_in_any_order_come_back_clockwise_from_the_top_left_and_may_lie_on_the_photo_s_edge():
    corners = check_corners([[480, 360], [0, 0], [0, 360], [480, 0]], SMALL)
    assert corners.tolist() == [[0, 0], [480, 0], [480, 360], [0, 360]]


@pytest.mark.parametrize("where", ["elsewhere", "climbing out"])
def test_a_photo_outside_gradio_s_upload_folder_is_refused_and_nothing_is_read(
    demo, uploads, tmp_path, monkeypatch, where
):
    """The page's classify refuses it (so no photo is shown to tap on), and taps are read only on the upload the
    server classified: a state naming another file (which no page can send: gradio keeps it) is refused too.

    The event functions are called directly: before the app is launched, gradio's own processing copies any file
    it is given into its upload folder (a launched app refuses it first, `processing_utils._check_allowed`)."""
    visitor = Visitor(demo)
    outside = tmp_path / "server-file.png"
    Image.fromarray(gallery_photo(SMALL)).save(outside)
    if where == "climbing out":  # a path that starts in the upload folder and leaves it
        inside = Path(uploads(SMALL, "decoy.png"))
        path = str(inside.parent) + "/.." * len(inside.parent.parts) + str(outside)
    else:
        path = str(outside)
    asked = []
    classify = demo.backend.classify
    monkeypatch.setattr(demo.backend, "classify", lambda *args, **kw: asked.append(args) or classify(*args, **kw))
    passes = demo.backend.predictor.forward_passes
    with pytest.raises(gr.Error, match="not uploaded to this demo") as raised:
        visitor.classify.fn(sent(path), False)
    assert raised.value.title == "Image refused" and str(outside) not in raised.value.message
    assert visitor.taps is None
    visitor.upload(uploads(SMALL))
    for x, y in [[100, 60], [380, 80], [360, 300], [110, 280]]:
        visitor.tap(x, y)
    taps = {**visitor.taps, "photo": path}
    with pytest.raises(gr.Error, match="not uploaded to this demo"):
        visitor.corners.fn(taps)
    assert len(asked) == 1 and demo.backend.predictor.forward_passes == passes + 1  # the upload's classify alone


def test_a_new_image_clears_the_photo_shown_and_its_taps(demo, uploads):
    visitor = Visitor(demo)
    image = component(demo, gr.Image, label="Painting")
    new_image = event(demo, image, "change")
    # Unqueued and cheap: it clears the answers, the photo shown and its taps, reading no image.
    assert new_image.fn.__name__ == "clear" and new_image.queue is False and new_image.inputs == []
    assert new_image.outputs[-2:] == visitor.tap_event.outputs
    visitor.upload(uploads(SMALL))
    visitor.tap(100, 60)
    *_, shown, state = visitor.run(new_image)
    assert shown["value"] is None and shown["label"] == TAP_LABEL and visitor.taps is None
    # A change of "use the whole image" does the same; the classify that follows shows the photo again.
    checkbox = event(demo, component(demo, gr.Checkbox), "change")
    assert checkbox.fn is new_image.fn and checkbox.outputs == new_image.outputs


def test_on_a_phone_the_visitor_taps_the_corners_and_classifies_them(export_dir, tmp_path, free_port, monkeypatch):
    """390 x 844 in headless Chromium: after an upload the photo is shown below the answers with the outline
    found; four taps at the painting's corners (mouse events at their places on the screen, as a phone's taps
    arrive) are drawn as they come, and "Classify my corners" answers along them."""
    from browser import chromium

    from artnet.serving.launch import launch

    photo = tmp_path / "photo.png"
    Image.fromarray(gallery_photo(LARGE, seed=5)).save(photo)
    demo = build_demo(export_dir)
    answers = []  # what the backend answered, in this process: the photo JSON's outline is checked from it
    classify = demo.backend.classify
    monkeypatch.setattr(demo.backend, "classify", lambda *a, **kw: answers.append(classify(*a, **kw)) or answers[-1])
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    driver = chromium(tmp_path, 390, 844)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def caption(driver) -> str:
        found = driver.find_elements(By.CSS_SELECTOR, ".artnet-read figcaption")
        return found[0].text if found else ""

    def shown(xpath):
        return lambda driver: [element for element in driver.find_elements(By.XPATH, xpath) if element.is_displayed()]

    photo_shown = f"//*[@id='{PHOTO_SHOWN_ID}']//img"

    def screen_point(x: float, y: float) -> tuple[float, float]:
        """Where pixel (x, y) of the photo shown is on the screen (CSS pixels), as gradio's page computes a tap."""
        img = driver.find_elements(By.XPATH, photo_shown)[-1]
        return driver.execute_script(
            """const img = arguments[0], box = img.getBoundingClientRect();
            const r = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight, 1);
            const left = (box.width - img.naturalWidth * r) / 2, top = (box.height - img.naturalHeight * r) / 2;
            return [box.left + left + arguments[1] * r, box.top + top + arguments[2] * r, r];""",
            img,
            x,
            y,
        )

    def tap(x: float, y: float, count: int) -> float:
        """A tap at pixel (x, y) of the photo shown, once the tap before it is drawn; the shown pixels per CSS
        pixel."""
        left, top, ratio = screen_point(x, y)
        for kind in ("mousePressed", "mouseReleased"):
            event = {"type": kind, "x": left, "y": top, "button": "left", "clickCount": 1}
            driver.execute_cdp_cmd("Input.dispatchMouseEvent", event)
        WebDriverWait(driver, 60).until(shown(f"//*[contains(normalize-space(.), '({count} of 4)')]"))
        return 1 / ratio

    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(photo))
        WebDriverWait(driver, 90).until(lambda d: caption(d).startswith(FOUND))  # the photo step's answer
        img = WebDriverWait(driver, 60).until(shown(photo_shown))[-1]
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].naturalWidth", img) > 0)
        assert driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img) == [
            PHOTO_VIEW_SIDE,
            PHOTO_VIEW_SIDE * LARGE[1] // LARGE[0],
        ]
        labels = shown("//*[starts-with(normalize-space(text()), 'What: type')]")(driver)
        assert labels and labels[0].rect["y"] < img.rect["y"]  # the answers come first
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 390 + 1
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
        scale = LARGE[0] / PHOTO_VIEW_SIDE  # the photo's own pixels per pixel shown
        corners = PAINTING * LARGE / scale  # the painting's corners, in the pixels shown
        order = [2, 0, 3, 1]  # tapped in any order
        per_css_pixel = max(tap(*map(float, corners[corner]), count) for count, corner in enumerate(order, 1))
        button = shown("//button[normalize-space(.)='Classify my corners']")(driver)[0]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", button)
        WebDriverWait(driver, 90).until(lambda d: caption(d) == CORNERS_GIVEN)
        outline = np.asarray(answers[-1].photo["outline"])
        # A tap lands on the pixel under it: within a CSS pixel and a half of the corner, in the photo's pixels.
        assert np.abs(outline - PAINTING * LARGE).max() <= 1.5 * per_css_pixel * scale, outline
        assert answers[-1].photo["found"] == CORNERS_GIVEN
        assert len(shown("//*[starts-with(normalize-space(text()), 'What: type')]")(driver)) == 1
    finally:
        driver.quit()
        demo.close()
