"""Naming served: the export stores each indexed painting's local features, and the demo's API and `artnet
predict` name a photographed painting of the index (and nothing for one outside it), through the photo step."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from artnet import labels
from artnet.data.sources import Source
from artnet.models.artnet import ArtNet
from artnet.serving.backend import DemoBackend
from artnet.serving.batch_predict import run_batch_prediction
from artnet.serving.export import export
from artnet.serving.files import ExportError
from artnet.testing.gallery_photo import made_up_painting, render_gallery_photo

PAINTINGS = 6


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def paintings():
    return [made_up_painting(seed, 320, 260) for seed in range(PAINTINGS)]


@pytest.fixture(scope="module")
def export_dir(paintings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("named-export")
    codes = {head: np.arange(PAINTINGS) % len(labels.VOCABULARIES[head]) for head in labels.HEADS}
    source = Source(
        name="made-up paintings",
        images=tf.data.Dataset.from_tensor_slices(tf.constant([jpeg(p) for p in paintings], dtype=tf.string)),
        labels=codes,
        meta=[
            {
                "author": f"PAINTER {i}",
                "title": f"Work {i}",
                "date": "1620",
                "url": f"https://www.wga.hu/html/p/{i}.html",
            }
            for i in range(PAINTINGS)
        ],
    )
    export(
        ArtNet("tiny", image_size=32),
        folder,
        card={"data": "made-up", "train_examples": PAINTINGS},
        index_source=source,
    )
    return folder


def photo_file(tmp_path, painting, seed, name):
    path = tmp_path / name
    path.write_bytes(jpeg(render_gallery_photo(painting, seed=seed, difficulty="easy").image))
    return path


def test_the_export_stores_every_paintings_local_features(export_dir):
    with np.load(export_dir / "index" / "features.npz", allow_pickle=False) as table:
        assert int(table["count"]) == PAINTINGS
        assert table["descriptors"].dtype == np.uint8 and table["descriptors"].shape[1] == 128
        assert set(np.unique(table["owners"])) == set(range(PAINTINGS))  # every painting has features of its own


def test_the_api_names_a_photographed_painting_of_the_index_and_not_an_outside_one(export_dir, paintings, tmp_path):
    backend = DemoBackend(export_dir)
    answer = backend.classify(str(photo_file(tmp_path, paintings[3], seed=1, name="indexed.jpg")))
    assert answer.photo["outline"] is not None  # found on the wall and cut out first
    assert answer.named is not None and answer.named["index"] == 3
    assert answer.named["title"] == "Work 3" and answer.named["painter"] == "PAINTER 3"
    assert answer.named["labels"] == {
        head: labels.VOCABULARIES[head][3 % len(labels.VOCABULARIES[head])] for head in labels.HEADS
    }
    assert answer.named["inliers"] >= 12 and "This is *Work 3* by PAINTER 3" in answer.note
    outside = backend.classify(str(photo_file(tmp_path, made_up_painting(200, 320, 260), seed=2, name="outside.jpg")))
    assert outside.named is None and "This is *" not in outside.note


def test_artnet_predict_writes_the_named_painting_or_null(export_dir, paintings, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo_file(folder, paintings[1], seed=4, name="a_indexed.jpg")
    photo_file(folder, made_up_painting(300, 320, 260), seed=5, name="b_outside.jpg")
    out = tmp_path / "answers.jsonl"
    assert run_batch_prediction(str(export_dir), [str(folder)], str(out)) == 0
    indexed, outside = [json.loads(line) for line in out.read_text().splitlines()]
    assert indexed["named"]["index"] == 1 and indexed["named"]["url"] == "https://www.wga.hu/html/p/1.html"
    assert outside["named"] is None
    csv_out = tmp_path / "answers.csv"
    run_batch_prediction(str(export_dir), [str(folder)], str(csv_out))
    with csv_out.open(newline="") as stream:
        first = next(csv.DictReader(stream))
    assert first["named_title"] == "Work 1" and first["named_index"] == "1"


def test_an_index_without_features_serves_and_names_nothing(export_dir, paintings, tmp_path):
    old = tmp_path / "old-export"
    shutil.copytree(export_dir, old)
    (old / "index" / "features.npz").unlink()
    backend = DemoBackend(old)
    assert backend.namer is None
    answer = backend.classify(str(photo_file(tmp_path, paintings[3], seed=1, name="indexed.jpg")))
    assert answer.named is None and len(answer.neighbours) == PAINTINGS


@pytest.mark.parametrize(
    "crafted, says",
    [
        ({"owners": np.full(10, 99, np.int32)}, "outside the index"),
        ({"count": np.int64(PAINTINGS + 1)}, "describes 7 paintings"),
        ({"descriptors": np.zeros((10, 128), np.float64)}, "not uint8"),
        ({"points": np.full((10, 2), np.nan, np.float32)}, "NaN"),
        ({"points": np.array([{"a": 1}] * 10, dtype=object)}, "not a readable feature table"),
    ],
)
def test_a_crafted_feature_table_is_refused_naming_the_file(export_dir, tmp_path, crafted, says):
    bad = tmp_path / "bad-export"
    shutil.copytree(export_dir, bad)
    table = {
        "points": np.zeros((10, 2), np.float32),
        "descriptors": np.zeros((10, 128), np.uint8),
        "owners": np.zeros(10, np.int32),
        "count": np.int64(PAINTINGS),
        **crafted,
    }
    np.savez(bad / "index" / "features.npz", **table)
    with pytest.raises(ExportError, match=says) as raised:
        DemoBackend(bad)
    assert "features.npz" in str(raised.value)


def test_on_a_phone_sized_page_a_photo_shows_what_was_read_and_names_the_painting(
    export_dir, paintings, tmp_path, free_port
):
    """390 x 844, a visitor's phone: the camera and the answers come before the model's facts; a photo of an
    indexed painting shows the cut-out the model read, says it was found, and names the painting."""
    from browser import chromium

    from artnet.serving.demo import build_demo
    from artnet.serving.launch import launch

    demo = build_demo(export_dir)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    driver = chromium(tmp_path, 390, 844)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def top(xpath):
        """Where the first shown element that `xpath` finds starts, down the page."""
        shown = [element for element in driver.find_elements(By.XPATH, xpath) if element.is_displayed()]
        assert shown, xpath
        return min(element.rect["y"] for element in shown)

    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        photo = photo_file(tmp_path, paintings[3], seed=1, name="photo.jpg")
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(photo))
        named = "//*[contains(normalize-space(.), 'This is Work 3 by PAINTER 3')]"
        WebDriverWait(driver, 90).until(lambda d: d.find_elements(By.XPATH, named))
        caption = driver.find_element(By.CSS_SELECTOR, ".artnet-read figcaption").text
        assert caption.startswith("painting found in the photo and cut out"), caption
        read = driver.find_element(By.CSS_SELECTOR, ".artnet-read img")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", read)
        facts = top("//*[contains(text(), 'About this model')]")
        assert top("//*[starts-with(normalize-space(text()), 'Where: school')]") < facts  # answers first
        assert driver.find_element(By.CSS_SELECTOR, "input[type=file]").find_element(By.XPATH, "..").rect["y"] < facts
        wide = driver.execute_script(
            "const wide = e => e.getBoundingClientRect().right > 392;"
            "return [...document.querySelectorAll('body *')].filter(e => wide(e) && ![...e.children].some(wide))"
            ".map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width))"
        )
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 390 + 1, wide
        driver.save_screenshot(str(tmp_path / "phone.png"))
    finally:
        driver.quit()
        demo.close()


def test_a_large_index_names_through_the_embeddings_nearest_alone(export_dir, paintings, tmp_path, monkeypatch):
    """Past VOTE_MAX_FEATURES descriptors no vote is taken (no forest is built): the candidates verified are the
    embedding's nearest paintings, in the demo as in `artnet predict` (here all six are near enough)."""
    from artnet.serving import naming

    monkeypatch.setattr(naming, "VOTE_MAX_FEATURES", 0)
    backend = DemoBackend(export_dir)
    assert backend.namer._forest is None
    answer = backend.classify(str(photo_file(tmp_path, paintings[4], seed=3, name="indexed.jpg")))
    assert answer.named is not None and answer.named["index"] == 4
    folder = tmp_path / "photos"
    folder.mkdir()
    photo_file(folder, paintings[4], seed=3, name="indexed.jpg")
    out = tmp_path / "answers.jsonl"
    run_batch_prediction(str(export_dir), [str(folder)], str(out))
    assert json.loads(out.read_text())["named"]["index"] == 4
