"""What a phone photo leaves on a painting after the photo step cut it out: training views that look like it.

`artnet.data.photo` finds a painting in a photo and warps it upright, but the cut-out is not a scan: the gallery's
light is still on it (a colour cast, light falling off across the canvas, a patch of glare), the phone's lens and
compression are in it (blur, noise, JPEG blocks), the corners found are a few pixels off (a slight perspective
left, a sliver of frame or wall along a side). `photo_residue` puts exactly those on a training image, at random and
at the model's input size, so that a model trained on scans also learns to read cut-outs
(`Augment(photo=True)`: the feature cache's views 2 and on, `artnet.training.feature_cache`).

Deliberately not the test renderer (`artnet.testing.gallery_photo`, which draws whole scenes for the photo
benchmark): training on the benchmark's own generator would tune the model to one look, and photos from other
generators and from real phones are what the results are checked on. Here only the residue of ANY good cut-out is
drawn, with its own ranges. numpy and OpenCV; one 224 px image costs about a millisecond.
"""

from __future__ import annotations

import cv2
import numpy as np

# Ranges, each drawn uniformly per image (chosen by looking at cut-outs of real gallery photos and of the rendered
# benchmark: the largest residue a good cut-out keeps, not the photo's own range).
CORNER_JITTER = 0.03  # of the side: the found corners' error
SLIVER = 0.04  # of the side: at most this much frame or wall along a side, on up to two sides
CAST = 0.12  # per-channel gain 1 +- CAST: tungsten, daylight, LED
FALLOFF = 0.3  # light falling off across the canvas: down to 1 - FALLOFF at the darker end
GLARE = 0.5  # probability of a glare patch; its peak adds up to 90 grey levels
BLUR_SIGMA = 1.2  # pixels, at the model's size
NOISE_SIGMA = 5.0  # grey levels
JPEG_QUALITY = (35, 90)
# With camera=True, what the phone itself does to every photo (each drawn with probability CAMERA_SHARE; ranges are a
# phone's: auto exposure fooled by a spotlight or a dark wall, its tone curve, its "vivid" colour, the lens' corners,
# its sharpening, a hand's shake at a gallery's dim light).
CAMERA_SHARE = 0.6
EXPOSURE_STOPS = 0.7  # +- stops of exposure error
TONE = 0.35  # strength of the S-shaped (or flattening) tone curve, +-
GAMMA = (0.8, 1.25)
SATURATION = (0.7, 1.35)
VIGNETTE = 0.35  # brightness lost at the cut-out's far corner
SHARPEN = 1.2  # unsharp-mask amount
SHAKE = 5  # pixels of motion blur at the model's size
# With frame=True, a cut-out that took the frame (or mount) with the picture: the photo step's commonest miss on a
# framed painting, and a costly one (a band of 4 % of each side all round costs the main job ~10 points of type on
# validation photos cut at their true corners pushed out by it). Drawn with probability FRAME_SHARE.
FRAME_SHARE = 0.5
FRAME_BAND = 0.10  # of the side: the widest band of moulding all round


def photo_residue(rgb: np.ndarray, rng: np.random.Generator, camera: bool = False, frame: bool = False) -> np.ndarray:
    """`rgb` (H, W, 3 uint8) with one random draw of what a cut-out keeps of its photo (see the top); `camera` adds
    the phone's own processing (`_camera`), `frame` sometimes a frame all round (`_frame_around`). Without them, the
    draws are those of the first photo views, unchanged."""
    height, width = rgb.shape[:2]
    if frame and rng.random() < FRAME_SHARE:
        rgb = _frame_around(rgb, rng)
    image = _perspective(rgb, rng)
    image = _sliver(image, rng).astype(np.float32)
    image *= rng.uniform(1 - CAST, 1 + CAST, 3).astype(np.float32)
    image *= _falloff(height, width, rng)[..., None]
    if rng.random() < GLARE:
        image += _glare(height, width, rng)[..., None]
    sigma = rng.uniform(0, BLUR_SIGMA)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if camera:
        image = _camera(image, rng)
    image += rng.normal(0, rng.uniform(0, NOISE_SIGMA), image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    quality = int(rng.integers(*JPEG_QUALITY))
    encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def photo_residues(batch: np.ndarray, seed: int, camera: bool = False, frame: bool = False) -> np.ndarray:
    """`photo_residue` of each image of a (N, H, W, 3) uint8 batch; the same `seed` gives the same batch."""
    rng = np.random.default_rng(seed)
    return np.stack([photo_residue(image, rng, camera, frame) for image in batch]) if len(batch) else batch


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone's processing on linear-ish float pixels (0-255): exposure, vignetting, hand shake, then its tone
    curve, colour saturation and sharpening; each step drawn with probability CAMERA_SHARE."""
    height, width = image.shape[:2]

    def drawn() -> bool:
        return rng.random() < CAMERA_SHARE

    if drawn():
        image = image * np.float32(2 ** rng.uniform(-EXPOSURE_STOPS, EXPOSURE_STOPS))
    if drawn():  # the lens' corners: darkening that grows with the distance from a centre somewhere off the cut-out
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        centre = rng.uniform(-0.5, 1.5, 2) * [width, height]
        distance = np.hypot(xs - centre[0], ys - centre[1])
        image = image * (1 - rng.uniform(0, VIGNETTE) * (distance / distance.max()) ** 2)[..., None]
    if drawn():
        length = int(rng.integers(2, SHAKE + 1))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1 / length
        turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, turn, (length, length))
        image = cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))
    unit = np.clip(image / 255, 0, 1)
    if drawn():
        unit = unit ** np.float32(rng.uniform(*GAMMA))
        strength = rng.uniform(-TONE, TONE)  # > 0: more contrast (an S around mid-grey); < 0: flatter
        unit = unit + strength * unit * (1 - unit) * (2 * unit - 1) * 2
    if drawn():
        grey = unit.mean(axis=2, keepdims=True)
        unit = grey + (unit - grey) * np.float32(rng.uniform(*SATURATION))
    image = np.clip(unit, 0, 1) * 255
    if drawn():
        soft = cv2.GaussianBlur(image, (0, 0), 1.0)
        image = image + rng.uniform(0, SHARPEN) * (image - soft)
    return image.astype(np.float32)


def _perspective(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image as cut out at corners a little off the true ones (the border replicated, as `rectify` does)."""
    height, width = rgb.shape[:2]
    corners = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    jitter = rng.uniform(-CORNER_JITTER, CORNER_JITTER, (4, 2)) * [width, height]
    found = (corners + jitter).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(found, corners)
    return cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _frame_around(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The picture shrunk inside a band of moulding on all four sides, as a cut-out whose outline was the frame's.

    Each side's band is near one common width (a frame seen slightly off square). Across the band, 1 to 3 steps of
    one colour, each lighter or darker (lip, cove, slip), the innermost sometimes a pale mount; the sides are lit
    unequally (light from above falls on the top and one side). The corners are mitred: a pixel belongs to the side
    it is nearest, in shares of that side's band."""
    height, width = rgb.shape[:2]
    top, right, bottom, left = rng.uniform(0.01, FRAME_BAND) * rng.uniform(0.6, 1.4, 4)
    top, bottom = max(1, round(top * height)), max(1, round(bottom * height))
    right, left = max(1, round(right * width)), max(1, round(left * width))
    if width - left - right < 8 or height - top - bottom < 8:
        return rgb
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    across = np.stack([ys / top, (width - 1 - xs) / right, (height - 1 - ys) / bottom, xs / left])  # 0 outside edge
    side, depth = across.argmin(axis=0), across.min(axis=0)  # which side's band, and how far into it (1: the picture)
    steps = int(rng.integers(1, 4))
    cuts = np.sort(rng.uniform(0, 1, steps - 1))
    colour = rng.uniform(15, 225) * rng.uniform(0.75, 1.25, 3)  # gilt, black, walnut, white, silver, ...
    levels = [colour * rng.uniform(0.6, 1.35) for _ in range(steps)]
    if steps > 1 and rng.random() < 0.3:
        levels[-1] = rng.uniform(170, 245) * rng.uniform(0.93, 1.07, 3)  # a mount inside the frame
    step = np.searchsorted(cuts, np.minimum(depth, 0.999))
    light = rng.uniform(0.75, 1.25, 4).astype(np.float32)
    band = np.asarray(levels, np.float32)[step] * light[side][..., None]
    picture = cv2.resize(rgb, (width - left - right, height - top - bottom), interpolation=cv2.INTER_AREA)
    image = np.clip(band, 0, 255).astype(np.uint8)
    image[top : height - bottom, left : width - right] = picture
    return image


def _sliver(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A band of frame or wall (one flat, dim or bright colour) along up to two sides."""
    image = rgb.copy()
    height, width = image.shape[:2]
    colour = rng.uniform(20, 230) * rng.uniform(0.8, 1.2, 3)
    for side in rng.choice(4, size=int(rng.integers(0, 3)), replace=False):
        band = int(rng.uniform(0, SLIVER) * (height if side % 2 == 0 else width))
        if band == 0:
            continue
        if side == 0:
            image[:band] = colour
        elif side == 1:
            image[:, width - band :] = colour
        elif side == 2:
            image[height - band :] = colour
        else:
            image[:, :band] = colour
    return image


def _falloff(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp of brightness in a random direction, from 1 to 1 - up to FALLOFF."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1)) / np.sqrt(2)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return (1 - rng.uniform(0, FALLOFF) * ramp).astype(np.float32)


def _glare(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A soft bright patch: a lamp's reflection on varnish."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    centre = rng.uniform(0, 1, 2) * [width, height]
    sigma = rng.uniform(0.08, 0.3) * max(height, width)
    spot = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return (rng.uniform(25, 90) * spot).astype(np.float32)
