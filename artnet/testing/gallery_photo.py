"""A deterministic renderer of gallery photos: a painting hung on a wall in a frame, seen by a visitor's phone.

The model and the photo step are measured on photos of held-out paintings whose true corners are known. Real
photos with outlines are few (`../shared/gallery-photos`), so the project renders its own from any painting:
a wall (colour, texture, uneven light), a frame (plain or ornate, sometimes none), sometimes a passe-partout,
a perspective of up to ~30°, a drop shadow, glare, a colour cast, blur, noise and JPEG, and clutter: a wall label,
a neighbouring painting cut by the photo's edge, a visitor's head across a corner. Each photo is a pure function
of (painting, seed), so a benchmark is repeatable; results are also checked on photos of another generator, so
nothing here is a target to tune to.
"""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np
from PIL import Image

WALLS = ((222, 214, 196), (180, 180, 176), (120, 32, 36), (58, 82, 66), (244, 243, 238), (40, 52, 84), (26, 26, 28))
FRAMES = ((176, 138, 62), (40, 30, 24), (20, 20, 20), (150, 110, 70), (210, 205, 195))


@dataclasses.dataclass(frozen=True)
class GalleryPhoto:
    """`image` (H, W, 3 uint8); `corners`: the picture's four corners in it, clockwise from the top-left;
    `frame_corners`: the frame's outer corners; `settings`: what was drawn, for reading a result by difficulty."""

    image: np.ndarray
    corners: np.ndarray
    frame_corners: np.ndarray
    settings: dict


def _wall(rng, width: int, height: int) -> np.ndarray:
    colour = np.asarray(WALLS[rng.integers(len(WALLS))], dtype=np.float32)
    texture = cv2.resize(rng.normal(0, 1, (height // 16 + 1, width // 16 + 1)).astype(np.float32), (width, height))
    light = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(0.9, 1.15), height, dtype=np.float32)[:, None]
    wall = colour[None, None, :] * light[..., None] + 6 * texture[..., None]
    return np.clip(wall, 0, 255)


def _framed(rng, painting: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """The painting with its mount and frame, seen from the front, and the picture's corners in it."""
    height, width = painting.shape[:2]
    side = max(height, width)
    mount = int(side * rng.uniform(0.06, 0.16)) if settings["mount"] else 0
    border = int(side * rng.uniform(0.03, 0.11)) if settings["frame"] != "none" else 0
    full_h, full_w = height + 2 * (mount + border), width + 2 * (mount + border)
    colour = np.asarray(FRAMES[rng.integers(len(FRAMES))], dtype=np.float32)
    flat = np.empty((full_h, full_w, 3), np.float32)
    flat[:] = colour
    if settings["frame"] == "ornate":  # gilded mouldings: bands of light and shade with a grain
        ys, xs = np.mgrid[0:full_h, 0:full_w]
        depth = np.minimum.reduce([ys, xs, full_h - 1 - ys, full_w - 1 - xs]).astype(np.float32)
        flat *= (0.8 + 0.25 * np.sin(depth / max(1, border) * 9))[..., None]
        flat += rng.normal(0, 10, flat.shape).astype(np.float32)
    elif border:  # a bevel: the top and left catch the light
        for step in range(border):
            shade = 1.15 - 0.3 * step / border
            flat[step, step : full_w - step] *= shade
            flat[step : full_h - step, step] *= shade
    inner = border
    if mount:
        flat[inner : full_h - inner, inner : full_w - inner] = rng.uniform(225, 245) * np.asarray([1, 0.98, 0.93])
    top = border + mount
    flat[top : top + height, top : top + width] = painting
    corners = np.float32([[top, top], [top + width, top], [top + width, top + height], [top, top + height]])
    return np.clip(flat, 0, 255), corners


def _homography(rng, flat_w: int, flat_h: int, photo_w: int, photo_h: int, settings: dict) -> np.ndarray:
    """The flat frame -> the photo, through a pinhole camera turned by the settings' yaw, pitch and roll."""
    yaw, pitch, roll = (np.radians(settings[name]) for name in ("yaw", "pitch", "roll"))
    rotation = cv2.Rodrigues(np.float64([pitch, yaw, 0]))[0] @ cv2.Rodrigues(np.float64([0, 0, roll]))[0]
    square = np.float64([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * [flat_w / 2, flat_h / 2, 0]
    camera = square @ rotation.T + [0, 0, 2.5 * max(flat_w, flat_h)]
    projected = camera[:, :2] / camera[:, 2:3]
    projected -= projected.mean(axis=0)
    span = projected[:, 0].max() - projected[:, 0].min()
    projected *= settings["width_share"] * photo_w / span
    tall = projected[:, 1].max() - projected[:, 1].min()
    projected *= min(1.0, 0.9 * photo_h / tall)  # a tall painting is seen whole: the visitor steps back
    centre = np.float64([photo_w, photo_h]) * [0.5 + settings["shift_x"], 0.5 + settings["shift_y"]]
    source = np.float32([[0, 0], [flat_w, 0], [flat_w, flat_h], [0, flat_h]])
    return cv2.getPerspectiveTransform(source, np.float32(projected + centre))


def _clutter(rng, photo: np.ndarray, frame: np.ndarray, settings: dict) -> None:
    height, width = photo.shape[:2]
    if settings["label"]:  # a white card with lines of text, beside the frame's bottom right
        x, y = frame[:, 0].max() + width * 0.02, frame[:, 1].max() - height * 0.1
        w, h = width * 0.06, height * 0.05
        cv2.rectangle(photo, (int(x), int(y)), (int(x + w), int(y + h)), (238, 238, 232), -1)
        for line in range(3):
            ly = int(y + h * (0.25 + 0.25 * line))
            cv2.line(photo, (int(x + w * 0.1), ly), (int(x + w * rng.uniform(0.5, 0.9)), ly), (40, 40, 40), 1)
    if settings["neighbour"]:  # the next painting on the wall, cut by the photo's edge
        x = 0 if rng.random() < 0.5 else int(width * 0.93)
        colour = rng.integers(20, 200, 3).tolist()
        cv2.rectangle(photo, (x, int(height * 0.25)), (x + int(width * 0.07), int(height * 0.7)), colour, -1)
    if settings["head"]:  # a visitor's head across a bottom corner
        corner = frame[3] if rng.random() < 0.5 else frame[2]
        axes = (int(width * 0.09), int(height * 0.13))
        cv2.ellipse(photo, (int(corner[0]), int(height * 0.97)), axes, 0, 0, 360, (30, 24, 22), -1)


def _light_and_lens(rng, photo: np.ndarray, settings: dict) -> np.ndarray:
    height, width = photo.shape[:2]
    photo = photo * np.asarray(settings["cast"], dtype=np.float32)
    if settings["glare"]:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.2, 0.6) * height
        radius = rng.uniform(0.05, 0.15) * width
        photo += settings["glare"] * np.exp(-((xs - cx) ** 2 + ((ys - cy) * 1.6) ** 2) / (2 * radius**2))[..., None]
    if settings["blur"]:
        photo = cv2.GaussianBlur(photo, (0, 0), settings["blur"])
    photo += rng.normal(0, settings["noise"], photo.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=settings["jpeg"])
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def draw_settings(rng, difficulty: str = "mixed") -> dict:
    """The random choices of one photo. `easy`: frontal, plain, clean; `hard`: steep, cluttered, badly lit."""
    hard = difficulty == "hard" or (difficulty == "mixed" and rng.random() < 0.5)
    steep = 30 if hard else 12
    return {
        "difficulty": "hard" if hard else "easy",
        "portrait": bool(rng.random() < 0.4),
        "frame": str(rng.choice(["plain", "ornate", "none"], p=[0.5, 0.4, 0.1])),
        "mount": bool(rng.random() < 0.3),
        "yaw": float(rng.uniform(-steep, steep)),
        "pitch": float(rng.uniform(-steep / 3, steep / 3)),
        "roll": float(rng.uniform(-3, 3)),
        "width_share": float(rng.uniform(0.35, 0.75)),
        "shift_x": float(rng.uniform(-0.08, 0.08)),
        "shift_y": float(rng.uniform(-0.06, 0.06)),
        "label": bool(rng.random() < (0.7 if hard else 0.3)),
        "neighbour": bool(rng.random() < (0.5 if hard else 0.1)),
        "head": bool(hard and rng.random() < 0.3),
        "glare": float(rng.uniform(60, 140)) if rng.random() < (0.7 if hard else 0.3) else 0.0,
        "cast": [float(v) for v in rng.uniform(0.85, 1.15, 3)] if hard else [1.0, 1.0, 1.0],
        "blur": float(rng.uniform(0.5, 1.8)) if hard else float(rng.uniform(0, 0.8)),
        "noise": float(rng.uniform(2, 7)) if hard else 1.5,
        "jpeg": int(rng.integers(55, 80)) if hard else 88,
    }


def render_gallery_photo(painting: np.ndarray, seed: int, difficulty: str = "mixed", long_side: int = 1200):
    """A `GalleryPhoto` of `painting` (H, W, 3 uint8): the same (painting, seed, difficulty) always gives the
    same photo."""
    rng = np.random.default_rng(seed)
    settings = draw_settings(rng, difficulty)
    photo_w, photo_h = (long_side * 3 // 4, long_side) if settings["portrait"] else (long_side, long_side * 3 // 4)
    photo = _wall(rng, photo_w, photo_h)
    flat, picture = _framed(rng, painting.astype(np.float32), settings)
    matrix = _homography(rng, flat.shape[1], flat.shape[0], photo_w, photo_h, settings)
    mask = cv2.warpPerspective(np.ones(flat.shape[:2], np.float32), matrix, (photo_w, photo_h), flags=cv2.INTER_LINEAR)
    shadow = cv2.GaussianBlur(np.roll(mask, (int(photo_h * 0.01), int(photo_w * 0.008)), (0, 1)), (0, 0), 6)
    photo *= (1 - 0.45 * shadow)[..., None]
    warped = cv2.warpPerspective(flat, matrix, (photo_w, photo_h), flags=cv2.INTER_LINEAR)
    photo = photo * (1 - mask[..., None]) + warped * mask[..., None]
    frame_corners = cv2.perspectiveTransform(
        np.float32([[0, 0], [flat.shape[1], 0], [flat.shape[1], flat.shape[0]], [0, flat.shape[0]]])[None], matrix
    )[0]
    corners = cv2.perspectiveTransform(picture[None], matrix)[0]
    _clutter(rng, photo, frame_corners, settings)
    image = _light_and_lens(rng, photo, settings)
    return GalleryPhoto(image, corners.astype(np.float64), frame_corners.astype(np.float64), settings)


def made_up_painting(seed: int, height: int = 300, width: int = 240) -> np.ndarray:
    """A painting-like test image: a smooth colour field, a mottled texture of its own (so that each painting
    has local features no other has, as real brushwork does) and strokes across it; for tests that must not need
    real paintings."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.uniform(30, 220, (4, 4, 3)).astype(np.float32), (width, height))
    field += cv2.resize(rng.normal(0, 30, (height // 12, width // 12, 3)).astype(np.float32), (width, height))
    for _ in range(8):
        start = (int(rng.integers(width)), int(rng.integers(height)))
        end = (int(rng.integers(width)), int(rng.integers(height)))
        cv2.line(field, start, end, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 6)))
    return field.clip(0, 255).astype(np.uint8)
