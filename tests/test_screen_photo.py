"""A photo of a screen gets a clear word (its grid or moiré can mislead the answers); paintings, with their own
periodic patterns (an engraving's hatching, canvas weave, stripes), do not; no image makes the check crash.

The screen photos are our own renders (`artnet.testing.screen_photo`): no real photos of screens were available.
"""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from artnet.data import screen
from artnet.data.images import load_path
from artnet.data.photo import FOUND, SCREEN, locate, painting_of_photo
from artnet.data.screen import screen_evidence
from artnet.testing.gallery_photo import made_up_painting, render_gallery_photo
from artnet.testing.screen_photo import render_screen_photo

SHARED = Path(__file__).resolve().parents[2] / "shared"


def jpeg(rgb, quality=88):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def lines(height=900, width=1200, period=4.3, angle=25.0, phase=0.0):
    """0..1: sharp parallel lines (an engraver's hatching), shaded where the burin cut deeper."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    along = np.cos(np.radians(angle)) * xs + np.sin(np.radians(angle)) * ys
    shade = cv2.resize(np.random.default_rng(3).uniform(0.3, 1, (5, 5)).astype(np.float32), (width, height))
    return (0.5 + 0.5 * np.cos(2 * np.pi * (along / period - phase))) ** 3 * shade


def engraving(ink, paper, **kwargs):
    """Ink lines on paper, crossed by a second, sparser set: every pixel a mix of the two colours."""
    amount = np.maximum(lines(**kwargs), 0.6 * lines(period=5.1, angle=100.0))[..., None]
    return jpeg((np.float32(paper) * (1 - amount) + np.float32(ink) * amount).clip(0, 255).astype(np.uint8))


def canvas_weave(painting, period=5.0, depth=0.1):
    """The painting lit across a canvas's threads: darker and lighter, whatever its colours."""
    height, width = painting.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    relief = 1 + depth * np.sin(2 * np.pi * xs / period) * np.sin(2 * np.pi * ys / (period * 1.04))
    return jpeg((painting * relief[..., None]).clip(0, 255).astype(np.uint8))


def striped_cloth(height=900, width=1200, period=9.0):
    """Two colours in alternating stripes across the whole image."""
    stripes = (np.arange(width) // (period / 2) % 2).astype(np.float32)[None, :, None]
    red, cream = np.float32([170, 30, 40]), np.float32([235, 225, 200])
    return jpeg(np.broadcast_to(red * stripes + cream * (1 - stripes), (height, width, 3)).astype(np.uint8))


def gradient(height=900, width=1200):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([255 * xs / width, 255 * ys / height, 128 + 0 * xs], axis=-1).astype(np.uint8)


SCREEN_PHOTO = render_screen_photo(made_up_painting(1, 600, 480), seed=1)


def test_a_photo_of_a_screen_says_so():
    location = locate(SCREEN_PHOTO.image)
    assert location.corners is not None and location.reason.startswith(FOUND)
    assert location.reason.endswith(SCREEN), location.reason
    painting, served = painting_of_photo(SCREEN_PHOTO.image)
    assert served.reason.endswith(SCREEN) and painting.shape != SCREEN_PHOTO.image.shape


def test_the_check_adds_words_and_changes_nothing_else(monkeypatch):
    with_check = locate(SCREEN_PHOTO.image)
    monkeypatch.setattr(screen, "SCREEN_CHECK", False)
    without = locate(SCREEN_PHOTO.image)
    assert SCREEN not in without.reason
    assert with_check.reason == without.reason + SCREEN
    np.testing.assert_array_equal(with_check.corners, without.corners)
    assert with_check.confidence == without.confidence


def test_screen_stripes_alarm_where_the_same_lines_in_one_colour_do_not():
    """The check reads colour that turns across the period (red, green and blue stripes a third of a period
    apart), not periodicity: the same lines drawn in ink, all channels in step, stay quiet."""
    in_step = engraving(ink=(40, 30, 90), paper=(240, 235, 215))
    turning = np.stack([lines(phase=shift) for shift in (0, 1 / 3, 2 / 3)], axis=-1)
    screen_like = jpeg((40 + 200 * turning).astype(np.uint8))
    assert SCREEN in locate(screen_like).reason
    assert SCREEN not in locate(in_step).reason


@pytest.mark.parametrize(
    "image",
    [
        gradient(),
        made_up_painting(7, 900, 700),
        render_gallery_photo(made_up_painting(2, 500, 400), seed=3, difficulty="easy").image,
        render_gallery_photo(made_up_painting(4, 400, 500), seed=8, difficulty="hard").image,
        engraving(ink=(20, 20, 20), paper=(235, 235, 235)),
        engraving(ink=(70, 40, 20), paper=(235, 220, 190), period=3.1, angle=-40.0),
        canvas_weave(made_up_painting(5, 900, 1200)),
        striped_cloth(),
    ],
    ids=["gradient", "painting", "gallery easy", "gallery hard", "grey engraving", "sepia engraving", "weave", "cloth"],
)
def test_paintings_and_their_patterns_do_not_alarm(image):
    assert SCREEN not in locate(image).reason


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1, 3), np.uint8),
        np.full((3, 5000, 3), 200, np.uint8),
        np.full((5000, 3, 3), 200, np.uint8),
        np.zeros((800, 600, 3), np.uint8),
        np.full((70, 70, 3), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (65, 900, 3), dtype=np.uint8),
    ],
    ids=["1x1", "3x5000", "5000x3", "all black", "grey 70x70", "noise strip"],
)
def test_odd_images_neither_crash_nor_alarm(image):
    location = locate(image)
    assert SCREEN not in location.reason
    painting_of_photo(image)


def test_evidence_is_none_where_there_is_nothing_to_read():
    assert screen_evidence(np.zeros((40, 4000, 3), np.uint8)) is None  # under 64 pixels across
    assert screen_evidence(np.zeros((300, 300), np.uint8)) is None  # not a colour image
    quiet = screen_evidence(np.full((300, 300, 3), 90, np.uint8))
    assert quiet is not None and not quiet.is_screen


@pytest.mark.skipif(not (SHARED / "wikiart-sample" / "images").is_dir(), reason="needs ../shared/wikiart-sample")
def test_real_paintings_do_not_alarm():
    """A sample of the validation set (benchmarks/screen_photos.py reads it all): real scans, none alarms."""
    paths = sorted((SHARED / "wikiart-sample" / "images").glob("*.jpg"))[:2400:60]
    photos = sorted((SHARED / "gallery-photos" / "estense" / "photos").glob("*.jpg"))[::10]
    alarms = [path.name for path in paths + photos if SCREEN in locate(load_path(path)).reason]
    assert len(paths) == 40 and alarms == []
