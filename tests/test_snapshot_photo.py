"""The second gallery-photo renderer (`artnet.testing.snapshot_photo`) keeps its promises: the same seed gives the same
photo, the returned corners are where the picture really is (inside the photo, clockwise, exact enough to warp the
painting back out), the framed painting fills the stated share of the photo, and the settings are JSON."""

from __future__ import annotations

import functools
import json

import cv2
import numpy as np
import pytest

from artnet.testing.snapshot_photo import BORDER_RANGE, FILL_RANGE, MAX_OCCLUSION, Snapshot, render_snapshot

SEEDS = range(40)
SMALL = 480  # a small long side keeps 40 renders to a few seconds; the geometry does not depend on it


def quadrants(height: int = 300, width: int = 400) -> np.ndarray:
    """Four flat colours: structure so large that blur, noise, JPEG and a colour cast cannot hide where it went."""
    painting = np.empty((height, width, 3), np.uint8)
    painting[: height // 2, : width // 2] = (200, 40, 40)
    painting[: height // 2, width // 2 :] = (40, 180, 60)
    painting[height // 2 :, : width // 2] = (40, 60, 200)
    painting[height // 2 :, width // 2 :] = (230, 220, 80)
    return painting


# Paintings of several shapes, so a square-only bug cannot hide: landscape, portrait, tiny, large, long and thin.
SHAPES = [(300, 400), (420, 280), (200, 230), (1100, 900), (220, 900)]


@functools.cache
def snap(seed: int) -> tuple[np.ndarray, Snapshot]:
    painting = quadrants(*SHAPES[seed % len(SHAPES)])
    return painting, render_snapshot(painting, seed, long_side=SMALL)


def signed_area(corners: np.ndarray) -> float:
    """Shoelace area in image coordinates (y down): positive when the points run clockwise on screen, as
    top-left (0, 0) -> top-right (1, 0) -> bottom-right (1, 1) -> bottom-left (0, 1) gives +1."""
    x, y = corners[:, 0], corners[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def warped_back(snapshot: Snapshot, height: int, width: int, corners: np.ndarray | None = None) -> np.ndarray:
    """The photo rectified onto the painting's own pixel grid, from the corners (the picture's outer edges)."""
    corners = snapshot.corners if corners is None else corners
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]]) - 0.5
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(snapshot.image, m, (width, height), flags=cv2.INTER_LINEAR)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images over a coarse grid (all channels), which ignores noise and fine blur."""
    a = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    b = cv2.resize(b, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_signed_area_convention():
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)  # clockwise on screen
    assert signed_area(unit) == 1.0
    assert signed_area(unit[::-1]) == -1.0


def test_same_seed_same_photo():
    painting = quadrants()
    a, b = render_snapshot(painting, 11, long_side=SMALL), render_snapshot(painting, 11, long_side=SMALL)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.corners, b.corners)
    assert a.settings == b.settings


def test_different_seeds_differ():
    images = [snap(seed)[1].image for seed in (0, 5, 10)]  # same painting shape, different seeds
    settings = [snap(seed)[1].settings for seed in (0, 5, 10)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert images[i].shape != images[j].shape or not np.array_equal(images[i], images[j])
            assert settings[i] != settings[j]


def test_painting_is_not_modified_and_bad_input_is_refused():
    painting = quadrants()
    before = painting.copy()
    render_snapshot(painting, 3, long_side=SMALL)
    assert np.array_equal(painting, before)
    with pytest.raises(ValueError):
        render_snapshot(painting.astype(np.float32), 0)
    with pytest.raises(ValueError):
        render_snapshot(painting[..., 0], 0)


def check_size(image: np.ndarray, long_side: int) -> float:
    """Asserts an RGB uint8 photo with the given long side at one of the four phone aspects; returns that aspect."""
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    height, width = image.shape[:2]
    assert max(height, width) == long_side
    nearest = min((4 / 3, 3 / 4, 16 / 9, 9 / 16), key=lambda a: abs(a - width / height))
    assert abs(nearest - width / height) < 2 / min(height, width)  # off only by rounding to whole pixels
    return nearest


def test_dtype_shape_and_aspect():
    aspects = {check_size(snap(seed)[1].image, SMALL) for seed in SEEDS}
    assert len(aspects) >= 3
    assert any(a > 1 for a in aspects) and any(a < 1 for a in aspects)


def test_full_size_photo():
    for seed in range(2):
        check_size(render_snapshot(quadrants(), seed).image, 1280)


@pytest.mark.parametrize("seed", SEEDS)
def test_corners_inside_and_clockwise(seed):
    _, snapshot = snap(seed)
    corners = snapshot.corners
    height, width = snapshot.image.shape[:2]
    assert corners.shape == (4, 2) and corners.dtype == np.float64
    assert (corners[:, 0] >= 0).all() and (corners[:, 0] <= width - 1).all()
    assert (corners[:, 1] >= 0).all() and (corners[:, 1] <= height - 1).all()
    assert signed_area(corners) > 0
    # Clockwise from the painting's own top-left: with at most 6° of roll, the first corner is up and to the left.
    assert corners[0, 1] < corners[3, 1] and corners[0, 0] < corners[1, 0]


@pytest.mark.parametrize("seed", SEEDS)
def test_picture_inside_the_corners_is_the_painting(seed):
    painting, snapshot = snap(seed)
    height, width = painting.shape[:2]
    back = warped_back(snapshot, height, width)
    # Glare, a colour cast and an occasional visitor cost some correlation; mislocated corners cost far more.
    assert correlation(back, painting) > 0.6, snapshot.settings
    # The check can fail: the same photo read with its corners one step out of order does not match.
    rolled = warped_back(snapshot, height, width, np.roll(snapshot.corners, 1, axis=0))
    assert correlation(rolled, painting) < 0.5


def test_corners_are_exact_under_distortion():
    """A seed with barrel distortion and an unoccluded, glare-free picture matches the painting closely, so the
    corners were distorted like the image was (a pinhole-only corner would be off by several pixels)."""
    checked = 0
    painting = quadrants()
    for seed in range(200):
        snapshot = render_snapshot(painting, seed, long_side=320)
        s = snapshot.settings
        if s["distortion"] < 0.03 or s["glare"] != "none" or s["occlusion"] > 0.01:
            continue
        back = warped_back(snapshot, *painting.shape[:2])
        assert correlation(back, painting) > 0.9, s
        checked += 1
        if checked == 2:
            break
    assert checked == 2


@pytest.mark.parametrize("seed", SEEDS)
def test_fill_and_frame_share(seed):
    _, snapshot = snap(seed)
    s = snapshot.settings
    assert FILL_RANGE[0] <= s["fill"] <= FILL_RANGE[1]
    height, width = snapshot.image.shape[:2]
    extent = snapshot.corners.max(axis=0) - snapshot.corners.min(axis=0)
    picture_share = max(extent[0] / width, extent[1] / height)
    # The picture is inside its frame, and the frame is at most 18 % of the picture's size on each side.
    assert picture_share <= s["fill"] + 1e-6
    assert picture_share >= s["fill"] * 0.5
    if s["frame"] == "none":
        assert s["frame_frac"] == 0
    else:
        assert BORDER_RANGE[0] - 1e-9 <= s["frame_frac"] <= BORDER_RANGE[1] + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_settings_are_json(seed):
    settings = snap(seed)[1].settings
    assert all(isinstance(v, (str, float, int, bool)) for v in settings.values())
    assert json.loads(json.dumps(settings)) == settings
    assert settings["occlusion"] <= MAX_OCCLUSION + 0.01


def test_variety_over_seeds():
    """Forty seeds draw most of the walls, frames, lights and clutter the module offers."""
    settings = [snap(seed)[1].settings for seed in SEEDS]
    assert len({s["wall"] for s in settings}) >= 5
    assert {s["frame"] for s in settings} == {"gilt", "strip", "mount", "none"}
    assert len({s["light"] for s in settings}) >= 3
    assert any(s["distortion"] > 0 for s in settings) and any(s["distortion"] == 0 for s in settings)
    assert any(s["visitor"] for s in settings) and any(s["barrier"] != "none" for s in settings)
    assert any(s["label"] for s in settings) and any(s["neighbour"] for s in settings)
    assert any(s["glare"] != "none" for s in settings)
    assert max(abs(s["yaw"]) for s in settings) > 15
    assert 55 <= min(s["jpeg_quality"] for s in settings) and max(s["jpeg_quality"] for s in settings) <= 92


def test_corner_projection_matches_the_rendering_under_distortion():
    """The corners come from the inverse of the map the renderer samples with (Newton on the distortion): a plane
    point sent to the photo by `to_image` lands on a pixel whose plane coordinates are that point again."""
    from artnet.testing.snapshot_photo import _build_camera

    camera = _build_camera((640, 480), 480.0, 30.0, -12.0, 5.0, 4.0, -3.0, 1500.0, (300.0, 200.0), 0.07)
    u, v = camera.plane_maps()
    points = np.array([[0, 0], [600, 0], [600, 400], [0, 400], [123.4, 321.0], [-50.0, 450.0]])
    xy = camera.to_image(points)
    assert ((xy >= 0) & (xy <= [639, 479])).all()
    mx, my = xy[:, 0].astype(np.float32)[None], xy[:, 1].astype(np.float32)[None]
    seen = np.c_[cv2.remap(u, mx, my, cv2.INTER_LINEAR)[0], cv2.remap(v, mx, my, cv2.INTER_LINEAR)[0]]
    assert np.abs(seen - points).max() < 0.05
    # ...and the distortion matters: a pinhole projection of the same corners is pixels away.
    pinhole = np.c_[points, np.ones(len(points))] @ camera.homography.T
    assert np.abs(pinhole[:, :2] / pinhole[:, 2:] - xy).max() > 3
