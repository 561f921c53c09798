"""The Gradio demo: its backend directly, then the real server on 127.0.0.1 through gradio_client.

The export is written outside both the working folder and the temp dir, where gradio serves nothing by itself:
every served test below also proves that any export folder serves (the similar-paintings thumbnails included).
"""

import base64
import html
import io
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from browser import chromium
from image_corpus import CORPUS, write_corpus
from PIL import Image

from artnet import labels
from artnet.data.synthetic import synthetic_source
from artnet.models.artnet import ArtNet
from artnet.serving.backend import DemoBackend
from artnet.serving.cards import model_card_facts, model_card_markdown
from artnet.serving.demo import build_demo, example_images, uploaded_image
from artnet.serving.export import export
from artnet.serving.launch import launch


def outside_cwd_and_temp() -> Path:
    """A fresh folder in neither the working folder nor the temp dir (gradio's two default served places)."""
    for base in (Path("/var/tmp"), Path.home()):
        if not (base.is_dir() and os.access(base, os.W_OK)):
            continue
        folder = Path(tempfile.mkdtemp(prefix="artnet-export-", dir=base)).resolve()
        if not any(folder.is_relative_to(Path(p).resolve()) for p in (os.getcwd(), tempfile.gettempdir())):
            return folder
        shutil.rmtree(folder)
    pytest.skip("no writable folder outside the cwd and the temp dir")


@pytest.fixture(scope="module")
def export_dir():
    folder = outside_cwd_and_temp()
    source = synthetic_source(24, seed=5)
    source.meta = [
        {"author": f"PAINTER {i}", "title": f"Work {i}", "date": "1620" if i % 2 else "-"}
        | {"url": f"https://www.wga.hu/html/p/{i}.html"}
        for i in range(24)
    ]
    model = ArtNet("tiny", image_size=32)
    export(model, folder, card={"data": "synthetic", "train_examples": 24}, index_source=source)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def painting(tmp_path):
    path = tmp_path / "painting.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_classify_gives_three_labels_a_note_and_similar_paintings(export_dir, painting):
    backend = DemoBackend(export_dir)
    before = backend.predictor.forward_passes
    answer = backend.classify(painting)
    per_head, note, cards, neighbours = answer.labels, answer.note, answer.similar, answer.neighbours
    assert backend.predictor.forward_passes == before + 1  # one forward pass answers everything
    assert set(per_head) == {"school", "timeframe", "type"}
    for head, scores in per_head.items():
        values = list(scores.values())
        assert len(values) == 3 and values == sorted(values, reverse=True) and 0 < sum(values) <= 1 + 1e-6
        top, probability = next(iter(scores.items()))
        assert top in labels.VOCABULARIES[head]
        # An unsure head says so in its label; a confident one names its class (no bold headline either way).
        expected = f"{top} (" if probability >= 0.5 else f"unsure (best guess {top}, "
        assert expected in answer.titles[head], answer.titles[head]
    assert "unsure" in note or "confident" in note
    # The cards: six thumbnails inlined (each decodes as the index's own thumbnail), a caption under each.
    thumbnails = [base64.b64decode(uri) for uri in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', cards)]
    assert len(thumbnails) == 6 and all(Image.open(io.BytesIO(data)).size[0] > 0 for data in thumbnails)
    assert "of the 24 paintings" in cards and cards.count("<figcaption>") == 6
    # Neighbours as data: painter, title, date ("-" is unknown), their own labels, similarity, a wga.hu url.
    assert len(neighbours) == 6 and neighbours[0]["similarity"] >= neighbours[-1]["similarity"]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", cards)
    links = re.findall(r'<a href="([^"]+)"', cards)
    for record, caption, link in zip(neighbours, captions, links, strict=True):
        assert set(record) == {"title", "painter", "date", "labels", "similarity", "url"}
        assert record["url"].startswith("https://www.wga.hu/html/p/") and set(record["labels"]) == set(labels.HEADS)
        assert link == record["url"]
        caption = html.unescape(caption)
        assert caption.startswith(f"{record['painter']}, {record['title']} ({record['date'] or 'date unknown'})")
        assert f"similarity {record['similarity']:.2f}" in caption
    assert any(record["date"] is None for record in backend.similar(backend.index.embeddings[0], 24)[1])


def test_a_batch_of_neighbour_searches_answers_as_each_search_alone(export_dir):
    index = DemoBackend(export_dir).index
    queries = np.random.default_rng(2).normal(size=(5, index.embeddings.shape[1])).astype(np.float32)
    for k in (1, 6, 24, 100):  # 24 is the whole index; more is capped to it
        batched = index.query_batch(queries, k)
        alone = [index.query(row, k) for row in queries]
        assert [len(items) for items in batched] == [min(k, 24)] * 5
        for many, one, row in zip(batched, alone, queries, strict=True):
            assert [item["score"] for item in many] == pytest.approx([item["score"] for item in one], abs=1e-6)
            scores = index.embeddings @ (row / np.linalg.norm(row))
            assert [item["score"] for item in many] == pytest.approx(sorted(scores, reverse=True)[:k], abs=1e-5)


def test_gradcam_gives_one_overlay_per_head_at_model_size(export_dir, painting):
    backend = DemoBackend(export_dir)
    overlays = backend.explain(painting)
    answer = backend.classify(painting).labels
    # Each overlay names its head, the class it explains and that class's probability.
    for (_, caption), head in zip(overlays, ("school", "timeframe", "type"), strict=True):
        top, probability = next(iter(answer[head].items()))
        assert caption == f"{head}: {top} ({100 * probability:.0f} %)"
    assert all(Image.open(path).size == (32, 32) for path, _ in overlays)
    # Overlays live in the backend's own folder, and old ones go as new ones are written: the disk stays bounded.
    assert {Path(path).parent for path, _ in overlays} == {backend._overlays}
    an_hour_ago = time.time() - 3600
    for path, _ in overlays:
        os.utime(path, (an_hour_ago, an_hour_ago))
    newer = backend.explain(painting)
    assert sorted(backend._overlays.iterdir()) == sorted(Path(path) for path, _ in newer)


def test_bad_input_is_a_gradio_error_and_the_next_request_works(export_dir, painting, tmp_path):
    backend = DemoBackend(export_dir)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="cannot be read") as raised:
        backend.classify(str(text))
    assert raised.value.title == "Unreadable image" and "notes.jpg" in raised.value.message
    with pytest.raises(gr.Error, match="Upload"):
        backend.classify(None)
    assert set(backend.classify(painting).labels) == {"school", "timeframe", "type"}


def test_model_card_says_when_the_model_is_small():
    card = {
        "backbone": "efficientnet_lite0",
        "image_size": 224,
        "parameters": 3.4e6,
        "heads": ["school"],
        "data": "wga/sample:train",
        "train_examples": 69,
        "test": {"school": {"n": 20, "top1": 0.5, "top3": 0.9, "balanced_accuracy": 0.4}},
    }
    text = model_card_markdown(card)
    assert "small sample-scale model" in text and "top-1 50.0 %" in text
    # The key facts for the top of the page: what it saw, its test n, balanced accuracy against chance and the
    # test majority (named), and the sample-scale warning.
    card["train_painters"], card["test_painters"] = 31, 9
    card["test"]["school"]["data_majority"] = {"class": "Italian", "top1": 0.65}
    facts = model_card_facts(card)
    assert facts.startswith("**About this model:** 69 training images by 31 painters")
    assert "Tested on 20 images by 9 painters" in facts
    assert "school: balanced accuracy 40.0 % (chance 16.7 %, always answering the test majority (Italian) 65.0 %)" in (
        facts
    )
    assert "sample-scale" in facts
    del card["test"]["school"]["data_majority"], card["train_painters"]
    facts = model_card_facts(card)
    assert "painters not recorded" in facts and "majority baseline not recorded" in facts
    card["test"]["school"]["majority_baseline"] = 0.3
    assert "always answering the training majority 30.0 %" in model_card_facts(card)


@pytest.fixture
def served_demo(export_dir, free_port):
    """The demo (with its examples) served on 127.0.0.1: its URL."""
    demo = build_demo(export_dir, examples=example_images(export_dir))
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_the_served_demo_answers_gradio_client(served_demo, painting, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served_demo, verbose=False)
    answer = client.predict(handle_file(painting), api_name="/classify")
    school, timeframe, kind, note, read_view, photo, cards, neighbours = answer
    for label in (school, timeframe, kind):
        assert len(label["confidences"]) == 3
    # What the photo step did travels with the answer: a scan is read whole, and nothing is named without features.
    assert set(photo) == {"outline", "found", "confidence", "named"}
    assert photo["outline"] is None and photo["found"] in html.unescape(read_view)
    assert read_view.count('src="data:image/jpeg;base64,') == 1
    whole = client.predict(handle_file(painting), api_name="/classify_whole")
    assert whole[5]["found"] == "the whole image was used, as asked"
    assert cards.count('src="data:image/jpeg;base64,') == 6
    assert [html.unescape(caption) for caption in re.findall(r"<figcaption>(.*?)</figcaption>", cards)] == [
        f"{n['painter']}, {n['title']} ({n['date'] or 'date unknown'}); "
        + ", ".join(v for v in n["labels"].values() if v)
        + f"; similarity {n['similarity']:.2f}"
        for n in neighbours
    ]
    # Every output has a name in the API (no value_10 / value_16).
    returns = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/classify"]["returns"]
    names = [item["label"] for item in returns]
    assert all(names) and not any(name.startswith("value_") for name in names), names
    text = tmp_path / "bad.jpg"
    text.write_text("not an image")
    with pytest.raises(Exception, match="cannot be read as an image"):
        client.predict(handle_file(str(text)), api_name="/classify")
    assert client.predict(handle_file(painting), api_name="/classify")[0]["label"]  # still serving
    overlays = client.predict(handle_file(painting), api_name="/explain")
    assert len(overlays) == 3
    assert Image.open(overlays[0]["image"]).size == (32, 32)


def test_the_bad_input_corpus_through_the_served_demo(served_demo, tmp_path):
    """Every odd file answers, every bad one is a clear error naming the file (not gradio's cache path or its
    "Could not preprocess input component"), for both endpoints, and the server keeps serving."""
    from gradio_client import Client, handle_file

    client = Client(served_demo, verbose=False)
    corpus = write_corpus(tmp_path)
    for name, (_, expected) in CORPUS.items():
        upload = handle_file(str(corpus / name))
        expected = DEMO_REFUSES.get(name, expected)
        if isinstance(expected, tuple):  # readable, but refused: the message says why, never "unreadable"
            for endpoint in ("/classify", "/explain"):
                with pytest.raises(Exception, match=expected[0]) as raised:
                    client.predict(upload, api_name=endpoint)
                assert f"({name}: " in str(raised.value) and "cannot be read" not in str(raised.value), name
            continue
        if expected == "ok":
            school, timeframe, kind, *_ = client.predict(upload, api_name="/classify")
            assert school["label"] in labels.SCHOOLS and timeframe["label"] in labels.TIMEFRAMES, name
            assert kind["label"] in labels.TYPES, name
            assert len(client.predict(upload, api_name="/explain")) == 3, name
            continue
        for endpoint in ("/classify", "/explain"):
            with pytest.raises(Exception, match="cannot be read as an image") as raised:
                client.predict(upload, api_name=endpoint)
            message = str(raised.value)
            assert f"({name}: " in message and expected in message, (endpoint, message)
            assert "gradio" not in message.lower(), message  # no server paths, no framework internals


# The demo refuses readable images it cannot honestly answer, as the predictor and `artnet predict` do, and also
# images over its own pixel limit (tuples: the message must say why, never "unreadable").
DEMO_REFUSES = {
    "huge_20000x20000.png": ("too large .*400 Mpx",),  # the real size, not "over 179 Mpx"
    "large_12000x10000.png": ("too large .*120 Mpx > 16 Mpx",),
    "cmyk.jpg": ("under 32 px",),
    "rgba.png": ("under 32 px",),
    "animated.gif": ("under 32 px",),
    "one_pixel.png": ("under 32 px",),
    "strip_1x4000.png": ("under 32 px",),
    "strip_10x1000000.png": ("too large|under 32 px",),
}


def test_a_pasted_image_arrives_as_a_data_url(export_dir, painting):
    with open(painting, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    pasted = uploaded_image({"path": None, "url": f"data:image/jpeg;base64,{encoded}", "meta": {}})
    assert pasted == Path(painting).read_bytes()
    assert set(DemoBackend(export_dir).classify(pasted).labels) == {"school", "timeframe", "type"}
    with pytest.raises(gr.Error, match="not valid base64"):
        uploaded_image({"path": None, "url": "data:image/jpeg;base64,@@@", "meta": {}})
    with pytest.raises(gr.Error, match="No image arrived"):
        uploaded_image({"path": None, "url": None, "meta": {}})


# For each image matching the selector: decoded, laid out, drawn uncropped (object-fit contain, or a box of its own
# aspect ratio), and not clipped by its container.
SHOWN_WHOLE = """
return [...document.querySelectorAll(arguments[0])].map(img => {
  const box = img.getBoundingClientRect(), frame = img.parentElement.getBoundingClientRect();
  const ratio = img.naturalWidth / img.naturalHeight, drawn = box.width / box.height;
  const uncropped = getComputedStyle(img).objectFit === "contain" || Math.abs(ratio - drawn) < 0.05 * ratio;
  const inside = box.width <= frame.width + 1 && box.height <= frame.height + 1;
  return img.complete && img.naturalWidth > 0 && box.width > 20 && uncropped && inside;
});
"""


def test_a_browser_uploads_explains_and_clicks_an_example(served_demo, painting, tmp_path):
    """End to end in headless Chromium: what a person does, and what they see (upload -> labels, explain ->
    overlays of the current image, a new image clears the old overlays, an example click -> labels)."""
    driver = chromium(tmp_path, 1400, 2400)
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(other)

    def fresh(read):
        """`read` retried while gradio re-renders the elements it found (a stale element is not an answer)."""

        def reader():
            for _ in range(20):
                try:
                    return read()
                except StaleElementReferenceException:
                    time.sleep(0.1)
            return read()

        return reader

    def wait(seconds):
        return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))

    @fresh
    def shown_labels():
        """The three heads' answers as their labels read, e.g. "Where: school: unsure (best guess Dutch, 19 %)"."""
        found = []
        for title in ("Where: school: ", "When: timeframe: ", "What: type: "):
            path = f"//*[starts-with(normalize-space(text()), '{title}')]"
            found += [element.text for element in driver.find_elements(By.XPATH, path) if element.text]
        return found

    @fresh
    def overlays():
        captions = driver.find_elements(By.XPATH, "//*[contains(text(), 'school: ')]")
        return [element.text for element in captions if element.text.startswith("school: ")]

    def click(text):
        # Gradio renders an accordion's contents only once it opens, later still on a loaded machine: wait for it.
        button = (By.XPATH, f"//button[contains(., '{text}')]")
        wait(30).until(lambda d: d.find_elements(*button) and d.find_element(*button).is_displayed())
        driver.find_element(*button).click()

    def upload(path):
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(path))

    try:
        driver.get(served_demo)
        wait(30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        upload(painting)
        wait(60).until(lambda d: len(shown_labels()) == 3)
        shown = shown_labels()
        # The similar paintings: six cards, each thumbnail decoded and laid out, each caption in full.
        wait(30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".artnet-neighbours img")) == 6)
        assert driver.execute_script(SHOWN_WHOLE, ".artnet-neighbours img") == [True] * 6
        captions = [element.text for element in driver.find_elements(By.CSS_SELECTOR, ".artnet-neighbours figcaption")]
        assert len(captions) == 6 and all("similarity" in caption for caption in captions), captions
        for text, vocabulary in zip(shown, (labels.SCHOOLS, labels.TIMEFRAMES, labels.TYPES), strict=True):
            assert any(name in text for name in vocabulary), shown
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="label-output-value"]')  # no bold headline
        click("Why? Grad-CAM")
        click("Show where each head looked")
        wait(60).until(lambda d: overlays())
        # Each overlay is shown whole (not cropped to a square tile), beside its caption.
        assert driver.execute_script(SHOWN_WHOLE, ".gallery-item img") == [True] * 3, "an overlay is cut off"
        # The overlay explains the school shown for THIS image (same class in its caption).
        assert overlays()[0].split(": ", 1)[1].split(" (")[0] in shown[0]
        driver.find_element(By.CSS_SELECTOR, "button[aria-label='Remove Image']").click()
        wait(30).until(lambda d: not overlays() and not shown_labels())
        upload(other)
        wait(60).until(lambda d: len(shown_labels()) == 3)
        assert not overlays()  # the previous image's heatmaps are gone
        driver.find_element(By.CSS_SELECTOR, "button[aria-label='Remove Image']").click()
        wait(30).until(lambda d: not shown_labels())
        example = driver.find_element(By.XPATH, "//*[contains(text(), 'training painting')]/ancestor::button[1]")
        driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", example)
        wait(60).until(lambda d: len(shown_labels()) == 3)  # an example classifies on click
        driver.save_screenshot(str(tmp_path / "demo.png"))
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        driver.quit()
