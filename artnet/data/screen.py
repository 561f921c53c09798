"""Is this a photo of a screen? The photo step's check for a painting photographed off a monitor or a phone.

A screen's picture is drawn by a grid of red, green and blue stripes side by side. A camera sees that grid, or,
where its own pixels sample the grid at a non-integer scale, moiré: coloured bands. Either way the photo holds a
narrow peak in its spectrum, at one frequency over the whole picture. Paintings hold periodic patterns too (canvas
weave, an engraving's hatching, a striped cloth, a tiled floor), so a peak alone says little. What a screen adds is
that its colour TURNS across the period: the red, green and blue stripes are a third of a screen pixel apart, so the
three channels swing out of phase. A weave's shadow, ink lines on paper or a cloth of two colours swing all three
channels in phase (one colour direction, darker and lighter), whatever their colours.

So, on a few patches from the middle of the found picture (or of the photo), at the photo's own resolution (the
locate step's 640-pixel copy would wash a grid out): the power spectrum of the red, green and blue channels, and
the coherent colour "turn" at each frequency, the area of the ellipse that (R, G, B) traces over one period
(|Re v × Im v| of the channels' Fourier coefficients v, summed over the patches so that random content cancels),
as a share of the power there. A photo looks like a screen's where one frequency stands out from its neighbours
by `MIN_PROMINENCE` (natural log of power) and its colour turns by at least `MIN_TURN`.

Where the thresholds come from (`benchmarks/screen_photos.py`, figures in `benchmarks/results/screen_photos.json`):
the real images and rendered gallery photos it reads (1,151 WGA thumbnails, 2,400 WikiArt images, 600 gallery
photos rendered from paintings, the 96 real gallery photos of `../shared`) raise no alarm; their strongest
colour-turning peak stands 1.35 above its ring, and `MIN_PROMINENCE` is 0.65 higher (the number of images above a
level falls about tenfold every 0.25 there). No real photos of screens were available: the detection rate (84 % of
300 renders of `artnet.testing.screen_photo`, 80 % read the way serving decodes an upload) is on our own renders,
so it is optimistic. A camera's own colour moiré can alarm too: a perfectly regular fine pattern (machine-ruled
hatching) photographed near the sensor's resolution through its Bayer filter turns colour the way a screen does.
The check only adds words to the answer; it never changes where the painting is or what is said about it.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

SCREEN_CHECK = True  # switch for the whole check (it only ever adds a sentence to the answer)
MIN_PROMINENCE = 2.0  # a peak's log power above the highest of its neighbours RING frequency steps around it
MIN_TURN = 0.1  # share of the peak's power in colour that turns (0: one colour direction; at most 0.5)
MIN_FREQUENCY = 0.04  # cycles per pixel: slower patterns are the picture's own composition
PATCH_SIDES = (256, 128, 64)  # the largest that fits the picture, in a 2 x 2 block of them where there is room
RING = 4  # frequency steps from a peak to the neighbours it must stand above


@dataclasses.dataclass(frozen=True)
class ScreenEvidence:
    """The strongest colour-turning peak of a photo's spectrum: its `prominence` (natural log of power above its
    ring of neighbours), its `turn` (share of its power in turning colour) and its `frequency` (x, y) in cycles
    per pixel; `patches` of `side` pixels were read."""

    prominence: float
    turn: float
    frequency: tuple[float, float]
    patches: int
    side: int

    @property
    def is_screen(self) -> bool:
        return self.prominence >= MIN_PROMINENCE


def looks_like_a_screen(rgb: np.ndarray, corners: np.ndarray | None = None) -> bool:
    """Whether `rgb` (H, W, 3) looks like a photo of a screen, read inside `corners` (the found picture, 4 × [x, y])
    or in the middle of the photo; False for anything too small or too odd to tell."""
    if not SCREEN_CHECK:
        return False
    evidence = screen_evidence(rgb, corners)
    return evidence is not None and evidence.is_screen


def screen_evidence(rgb: np.ndarray, corners: np.ndarray | None = None) -> ScreenEvidence | None:
    """The strongest colour-turning peak (see the module's docstring), or None where there is nothing to read:
    a picture region under 64 pixels a side, or not a colour image."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return None
    box = _region(rgb.shape[:2], corners)
    side = next((n for n in PATCH_SIDES if min(box[2] - box[0], box[3] - box[1]) >= n), None)
    if side is None:
        return None
    patches = _patches(rgb, box, side)
    power, turning = _spectra(patches, side)
    valid, ring, fx, fy, _ = _geometry(side)
    log_power = np.log(power + 1e-9)
    # The spectrum is periodic: wrap it before taking each frequency's neighbours.
    padded = cv2.copyMakeBorder(log_power, RING, RING, RING, RING, cv2.BORDER_WRAP)
    prominence = log_power - cv2.dilate(padded, ring)[RING:-RING, RING:-RING]
    turn = turning / (power + 1e-9)
    prominence[~valid | (turn < MIN_TURN)] = -np.inf
    best = int(np.argmax(prominence))
    if not np.isfinite(prominence.flat[best]):
        return ScreenEvidence(0.0, 0.0, (0.0, 0.0), len(patches), side)
    frequency = (float(fx.flat[best]), float(fy.flat[best]))
    return ScreenEvidence(float(prominence.flat[best]), float(turn.flat[best]), frequency, len(patches), side)


def _region(shape: tuple[int, int], corners) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the middle 80 % of the found picture's bounding box, or of the photo (away from a bezel,
    a frame and the wall)."""
    height, width = shape
    if corners is None:
        low, high = np.zeros(2), np.float64([width, height])
    else:
        points = np.asarray(corners, np.float64).reshape(-1, 2)
        low, high = np.maximum(points.min(axis=0), 0), np.minimum(points.max(axis=0), [width, height])
    centre, half = (low + high) / 2, np.maximum(high - low, 0) / 2 * 0.8
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _patches(rgb: np.ndarray, box: tuple[int, int, int, int], side: int) -> list[np.ndarray]:
    """A 2 x 2 block of patches at the region's centre where it has room, else one (or two side by side)."""
    x0, y0, x1, y1 = box
    across, down = (2 if x1 - x0 >= 2 * side else 1), (2 if y1 - y0 >= 2 * side else 1)
    left, top = (x0 + x1 - across * side) // 2, (y0 + y1 - down * side) // 2
    return [
        rgb[top + row * side : top + (row + 1) * side, left + column * side : left + (column + 1) * side, :3]
        for row in range(down)
        for column in range(across)
    ]


@functools.lru_cache(maxsize=len(PATCH_SIDES))
def _geometry(side: int):
    """For a spectrum of `side` (in the DFT's own order, zero frequency at [0, 0]): the frequencies looked at,
    the ring of neighbours, each bin's frequency (x, y) in cycles per pixel, and the window for the patches."""
    frequencies = np.fft.fftfreq(side).astype(np.float32)
    fy, fx = np.meshgrid(frequencies, frequencies, indexing="ij")
    # JPEG's 8 x 8 blocks (16 x 16 for subsampled colour) are periodic too, at multiples of 1/16 cycle a pixel
    # on both axes: skip those frequencies and their neighbours.
    on_block_grid = (np.abs(fx * 16 - np.round(fx * 16)) * side / 16 <= 1) & (
        np.abs(fy * 16 - np.round(fy * 16)) * side / 16 <= 1
    )
    valid = (np.hypot(fx, fy) >= MIN_FREQUENCY) & ~on_block_grid
    offsets = np.arange(-RING - 1, RING + 2)
    distance = np.hypot(*np.meshgrid(offsets, offsets))
    ring = ((distance >= RING - 0.5) & (distance <= RING + 0.6)).astype(np.uint8)
    return valid, ring, fx, fy, cv2.createHanningWindow((side, side), cv2.CV_32F)


def _spectra(patches: list[np.ndarray], side: int) -> tuple[np.ndarray, np.ndarray]:
    """(power, turning), each summed over the patches and over 3 x 3 neighbouring frequencies: the power of the
    three channels, and the length of the summed vector Re v × Im v of the channels' Fourier coefficients v.

    Its components are the imaginary parts of the channels' cross spectra, Im(F_x conj F_y) for the pairs (x, y)
    = (G, B), (B, R), (R, G). One complex DFT of x + i·y gives a pair's at once: with Z = DFT(x + i·y),
    |Z(k)|² - |Z(-k)|² = 4 Im(F_x conj F_y) and |Z(k)|² + |Z(-k)|² = 2 (|F_x|² + |F_y|²)."""
    window = _geometry(side)[4]
    squares = [np.zeros((side, side, 2), np.float32) for _ in range(3)]  # per pair: Re Z², Im Z²
    for patch in patches:
        red, green, blue = ((channel - channel.mean()) * window for channel in cv2.split(patch.astype(np.float32)))
        for pair, (x, y) in enumerate(((green, blue), (blue, red), (red, green))):
            cv2.accumulateSquare(cv2.dft(cv2.merge((x, y))), squares[pair])
    power, parts = 0.0, []
    for square in squares:
        modulus = square[..., 0] + square[..., 1]
        mirrored = np.roll(modulus[::-1, ::-1], 1, axis=(0, 1))  # at -k
        power = power + (modulus + mirrored) / 4
        parts.append(cv2.boxFilter((modulus - mirrored) / 4, -1, (3, 3), borderType=cv2.BORDER_WRAP))
    # The spectrum is periodic: its neighbours wrap around.
    total = cv2.boxFilter(power, -1, (3, 3), borderType=cv2.BORDER_WRAP)
    return total, cv2.sqrt(parts[0] ** 2 + parts[1] ** 2 + parts[2] ** 2)
