"""A deterministic renderer of screen photos: a painting shown on a monitor, photographed with a phone.

The positive class of the photo step's screen check (`artnet.data.screen`). No real photos of screens were
available to the project, so this renderer IS the positive class, and a detection rate measured on its photos is
optimistic: its panel is a perfect grid of one layout, and it knows nothing of a real panel's subpixel shapes, a
real lens or a real phone's processing (sharpening, denoising, false-colour suppression). The check's thresholds
are therefore set from false alarms on real scans and gallery photos, never from these renders.

What is drawn: the painting is resized to the screen's resolution and shown on an RGB stripe panel (each screen
pixel three vertical stripes, red, green and blue, with a dark gap between them and a dark line between pixel rows,
drawn at `SUBCELLS` x `SUBCELLS` subcells a screen pixel), inside a bezel, on a plain background. The "camera"
sees it with a slight roll (±4°) and perspective (±10°) at a screen-pixel pitch of 2-5 photo pixels that is NOT
an integer: sampling the panel's grid at a non-integer scale is what makes moiré. The lens and the pixel's aperture
blur it (a Gaussian of 0.35-1 photo pixel, applied on the subcells before sampling); three photos in four go
through a Bayer colour filter and OpenCV's bilinear demosaicking (cruder than a phone's: it both makes colour
moiré and smears the stripes' colours), then noise and JPEG. Each photo is a pure function of (painting, seed).
"""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np
from PIL import Image

SUBCELLS = 9  # subcells per screen pixel along each side: three stripes of three, one of them the dark gap
BEZELS = ((18, 18, 20), (40, 40, 44), (205, 205, 210), (12, 12, 12))
BACKGROUNDS = ((200, 192, 178), (120, 118, 112), (60, 62, 70), (235, 234, 228))


@dataclasses.dataclass(frozen=True)
class ScreenPhoto:
    """`image` (H, W, 3 uint8); `corners`: the shown picture's four corners in it, clockwise from the top-left;
    `settings`: what was drawn."""

    image: np.ndarray
    corners: np.ndarray
    settings: dict


def draw_settings(rng) -> dict:
    """The random choices of one screen photo."""
    return {
        "pitch": float(rng.uniform(2.0, 5.0)),  # photo pixels per screen pixel
        "screen_share": float(rng.uniform(0.5, 0.8)),  # the lit area's width over the photo's
        "roll": float(rng.uniform(-4, 4)),  # degrees
        "yaw": float(rng.uniform(-10, 10)),
        "pitch_angle": float(rng.uniform(-6, 6)),
        "stripes": str(rng.choice(["RGB", "BGR"])),
        "bezel": int(rng.integers(len(BEZELS))),
        "background": int(rng.integers(len(BACKGROUNDS))),
        "exposure": float(rng.uniform(0.75, 1.05)),  # of the shown picture's own brightness
        "bayer": bool(rng.random() < 0.75),
        "blur": float(rng.uniform(0.35, 1.0)),  # photo pixels
        "noise": float(rng.uniform(1.0, 4.0)),
        "jpeg": int(rng.integers(75, 93)),
    }


def _panel(painting: np.ndarray, settings: dict) -> np.ndarray:
    """The painting on the panel at subcell resolution (uint8): every screen pixel's colour lights its own
    stripe of each channel; the gaps stay dark."""
    mask = np.zeros((SUBCELLS, SUBCELLS, 3), np.uint8)
    stripe = SUBCELLS // 3
    for position, channel in enumerate("RGB".index(name) for name in settings["stripes"]):
        mask[: SUBCELLS - 1, position * stripe : (position + 1) * stripe - 1, channel] = 1
    height, width = painting.shape[:2]
    cells = np.repeat(np.repeat(painting, SUBCELLS, axis=0), SUBCELLS, axis=1)
    return cells * np.tile(mask, (height, width, 1))


def _homography(settings: dict, source_w: int, source_h: int, target: np.ndarray) -> np.ndarray:
    """Subcells of the monitor -> the photo: the monitor seen through a camera turned by yaw, pitch and roll,
    scaled so that its lit area spans `target` = (width in photo pixels, centre x, centre y)."""
    yaw, pitch, roll = (np.radians(settings[name]) for name in ("yaw", "pitch_angle", "roll"))
    rotation = cv2.Rodrigues(np.float64([pitch, yaw, 0]))[0] @ cv2.Rodrigues(np.float64([0, 0, roll]))[0]
    square = np.float64([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * [source_w / 2, source_h / 2, 0]
    camera = square @ rotation.T + [0, 0, 3.0 * max(source_w, source_h)]
    projected = camera[:, :2] / camera[:, 2:3]
    projected -= projected.mean(axis=0)
    projected *= target[0] / (projected[:, 0].max() - projected[:, 0].min())
    source = np.float32([[0, 0], [source_w, 0], [source_w, source_h], [0, source_h]])
    return cv2.getPerspectiveTransform(source, np.float32(projected + target[1:]))


def _camera(rng, photo: np.ndarray, settings: dict) -> np.ndarray:
    """A phone's sensor and processing: Bayer colour filter and demosaicking, noise, JPEG."""
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    if settings["bayer"]:
        bayer = np.empty(photo.shape[:2], np.uint8)  # RGGB: each photo pixel keeps one colour
        bayer[0::2, 0::2] = photo[0::2, 0::2, 0]
        bayer[0::2, 1::2] = photo[0::2, 1::2, 1]
        bayer[1::2, 0::2] = photo[1::2, 0::2, 1]
        bayer[1::2, 1::2] = photo[1::2, 1::2, 2]
        photo = cv2.cvtColor(bayer, cv2.COLOR_BayerBG2RGB)  # OpenCV names an RGGB mosaic "BG" (checked)
    noisy = photo.astype(np.float32) + rng.normal(0, settings["noise"], photo.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=settings["jpeg"])
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def render_screen_photo(painting: np.ndarray, seed: int, long_side: int = 1600) -> ScreenPhoto:
    """A `ScreenPhoto` of `painting` (H, W, 3 uint8) shown full-screen on a monitor: the same (painting, seed)
    always gives the same photo. The photo is landscape, `long_side` pixels wide."""
    rng = np.random.default_rng(seed)
    settings = draw_settings(rng)
    photo_w, photo_h = long_side, long_side * 3 // 4
    # The screen shows the painting at as many screen pixels as the photo sees of it.
    lit_w = settings["screen_share"] * photo_w
    shown_w = max(8, round(lit_w / settings["pitch"]))
    height, width = painting.shape[:2]
    shown_h = max(8, round(shown_w * height / width))
    if shown_h * settings["pitch"] > 0.8 * photo_h:  # a tall painting: the screen is letterboxed to fit
        shown_h = max(8, round(0.8 * photo_h / settings["pitch"]))
        shown_w = max(8, round(shown_h * width / height))
    shown = cv2.resize(painting, (shown_w, shown_h), interpolation=cv2.INTER_AREA)
    panel = _panel(shown, settings)
    bezel = max(2, round(0.04 * max(panel.shape[:2])))
    monitor = cv2.copyMakeBorder(
        panel, bezel, bezel, bezel, bezel, cv2.BORDER_CONSTANT, value=BEZELS[settings["bezel"]]
    )
    # The pixel's aperture and the lens, on the subcells: about one photo pixel wide.
    subcells_per_photo_pixel = SUBCELLS / settings["pitch"]
    monitor = cv2.GaussianBlur(monitor, (0, 0), settings["blur"] * subcells_per_photo_pixel)
    lit_w = shown_w * settings["pitch"]
    target = np.float64([lit_w * monitor.shape[1] / panel.shape[1], photo_w / 2, photo_h / 2])
    matrix = _homography(settings, monitor.shape[1], monitor.shape[0], target)
    flat = np.ones(monitor.shape[:2], np.float32)
    mask = cv2.warpPerspective(flat, matrix, (photo_w, photo_h), flags=cv2.INTER_LINEAR)[..., None]
    seen = cv2.warpPerspective(monitor, matrix, (photo_w, photo_h), flags=cv2.INTER_LINEAR)
    light = np.linspace(0.85, 1.1, photo_w, dtype=np.float32)[None, :, None]
    background = np.asarray(BACKGROUNDS[settings["background"]], np.float32) * light
    # A channel lights one stripe of each pixel, less its gaps: the camera exposes for the panel's mean.
    gain = settings["exposure"] * SUBCELLS**2 / ((SUBCELLS // 3 - 1) * (SUBCELLS - 1))
    photo = background * (1 - mask) + gain * seen * mask
    lit = np.float32([[0, 0], [panel.shape[1], 0], [panel.shape[1], panel.shape[0]], [0, panel.shape[0]]]) + bezel
    corners = cv2.perspectiveTransform(lit[None], matrix)[0].astype(np.float64)
    return ScreenPhoto(_camera(rng, photo, settings), corners, settings)
