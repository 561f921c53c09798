"""The Gradio demo: its backend directly, then the real server on 127.0.0.1 through gradio_client."""

import base64
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from image_corpus import CORPUS, write_corpus
from PIL import Image

from artnet import labels
from artnet.demo import DemoBackend, build_demo, example_images, model_card_markdown, uploaded_image
from artnet.export import export
from artnet.models.artnet import ArtNet
from artnet.synthetic import synthetic_source


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    source = synthetic_source(24, seed=5)
    source.meta = [
        {"author": f"PAINTER {i}", "title": f"Work {i}", "date": "1620", "url": f"https://www.wga.hu/html/p/{i}.html"}
        for i in range(24)
    ]
    model = ArtNet("tiny", image_size=32)
    export(model, folder, card={"data": "synthetic", "train_examples": 24}, index_source=source)
    return folder


@pytest.fixture
def painting(tmp_path):
    path = tmp_path / "painting.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_classify_gives_three_labels_a_note_and_similar_paintings(export_dir, painting):
    backend = DemoBackend(export_dir)
    before = backend.predictor.forward_passes
    per_head, note, gallery, links = backend.classify(painting)
    assert backend.predictor.forward_passes == before + 1  # one forward pass answers everything
    assert set(per_head) == {"school", "timeframe", "type"}
    for scores in per_head.values():
        values = list(scores.values())
        assert len(values) == 3 and values == sorted(values, reverse=True) and 0 < sum(values) <= 1 + 1e-6
    assert "unsure" in note or "confident" in note
    assert len(gallery) == 6 and all(Image.open(path).size[0] > 0 for path, _ in gallery)
    assert "https://www.wga.hu/html/p/" in links


def test_gradcam_gives_one_overlay_per_head_at_model_size(export_dir, painting):
    backend = DemoBackend(export_dir)
    overlays = backend.explain(painting)
    assert [caption.split(":")[0] for _, caption in overlays] == ["school", "timeframe", "type"]
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
    with pytest.raises(gr.Error, match="cannot be read"):
        backend.classify(str(text))
    with pytest.raises(gr.Error):
        backend.classify(None)
    assert set(backend.classify(painting)[0]) == {"school", "timeframe", "type"}


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


@pytest.fixture
def served_demo(export_dir, free_port):
    """The demo (with its examples) served on 127.0.0.1: its URL."""
    demo = build_demo(export_dir, examples=example_images(export_dir))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_the_served_demo_answers_gradio_client(served_demo, painting, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served_demo, verbose=False)
    school, timeframe, kind, note, gallery, links = client.predict(handle_file(painting), api_name="/classify")
    for label in (school, timeframe, kind):
        assert len(label["confidences"]) == 3
    assert len(gallery) == 6
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


def test_a_pasted_image_arrives_as_a_data_url(export_dir, painting):
    with open(painting, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    pasted = uploaded_image({"path": None, "url": f"data:image/jpeg;base64,{encoded}", "meta": {}})
    assert pasted == Path(painting).read_bytes()
    assert set(DemoBackend(export_dir).classify(pasted)[0]) == {"school", "timeframe", "type"}
    with pytest.raises(gr.Error, match="not valid base64"):
        uploaded_image({"path": None, "url": "data:image/jpeg;base64,@@@", "meta": {}})
    with pytest.raises(gr.Error, match="No image arrived"):
        uploaded_image({"path": None, "url": None, "meta": {}})


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def test_a_browser_uploads_a_painting_and_reads_three_labels(served_demo, painting, tmp_path):
    """End to end in headless Chromium: what a person does, and what they see."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(served_demo)
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(painting)
        selector = '[data-testid="label-output-value"]'
        WebDriverWait(driver, 60).until(
            lambda d: len([e for e in d.find_elements(By.CSS_SELECTOR, selector) if e.text]) == 3
        )
        shown = [element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)]
        assert shown[0] in labels.SCHOOLS and shown[1] in labels.TIMEFRAMES and shown[2] in labels.TYPES
        driver.save_screenshot(str(tmp_path / "demo.png"))
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        driver.quit()
