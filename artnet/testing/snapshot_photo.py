"""Phone snapshots of a painting hanging in a gallery: a second, independent photo renderer.

The project's photo step (find the painting in a phone photo, rectify it, classify it) was developed next to one
synthetic renderer, `artnet.testing.gallery_photo`. A step tuned, even unknowingly, to one renderer's look can pass
every test and still fail on real photos. This module is a second renderer, written from its own brief without
reading the first and deliberately sharing no code or choices with it, so that a result measured on these photos says
whether the photo step generalises rather than whether it learned one generator's habits.

Its choices, each taken from how real museum snapshots look:

* The wall is a plane in the scene, not a backdrop: wallpaper stripes, damask and planks recede in perspective with
  the painting, and the ceiling spot's pool of light falls on wall, frame and painting alike.
* Frames are shaded from a moulding cross-section (lip, cove, bead, slip, mount bevel), with mitred corners, cast
  shadows inside the profile, a side face seen at an angle and a drop shadow on the wall.
* The camera is a pinhole with a phone's field of view, optional barrel distortion, and a phone's processing: it meters
  the scene (so a dark wall pushes a spot-lit painting towards white, until the phone's HDR holds it back), adds
  sensor noise in linear light (so shadows are noisiest), corrects white balance imperfectly, applies a tone curve,
  oversharpens and saves a JPEG.
* Foreground clutter (rope barrier, bench, a visitor) is drawn out of focus, as it is close to the lens.

    snap = render_snapshot(painting, seed=7)
    snap.image      # (H, W, 3) uint8 RGB photo
    snap.corners    # (4, 2) the picture's corners in the photo, clockwise from the painting's top-left
    snap.settings   # what was drawn, JSON-ready

Conventions: image coordinates follow OpenCV (x right, y down, pixel centres at integers). The wall plane is measured
in the painting's own pixels: the picture spans u in [0, w] and v in [0, h], v pointing down the wall, so its corners
are the outer edges of its corner pixels. Colours are built in linear light; only the simulated camera turns them
into an sRGB-like JPEG. Only numpy and OpenCV are used, and every draw comes from `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["Snapshot", "render_snapshot"]

_ASPECTS = ((4, 3), (3, 4), (16, 9), (9, 16))
# Portrait and 4:3 are a phone's defaults; 16:9 is a setting fewer people change.
_ASPECT_ODDS = (0.3, 0.4, 0.15, 0.15)
FILL_RANGE = (0.20, 0.75)
BORDER_RANGE = (0.02, 0.18)
MAX_OCCLUSION = 0.09  # share of the picture a foreground occluder may hide ("never more than ~10 %")
_GAMMA = 2.2
_TO_LINEAR = ((np.arange(256) / 255.0) ** _GAMMA).astype(np.float32)
# A frame's sides in the order its corners run, and for each the direction pointing from it into the picture.
_TOP, _RIGHT, _BOTTOM, _LEFT = range(4)
_INWARD = np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
_LUT_SIZE = 512


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One rendered photo: `image` (H, W, 3) uint8 RGB; `corners` (4, 2) float64, the picture's own corners
    (inside any frame or mount) in image pixels as [x, y], clockwise from the painting's top-left; `settings`, what
    was drawn (JSON-ready str, float, int and bool values)."""

    image: np.ndarray
    corners: np.ndarray
    settings: dict


# --------------------------------------------------------------------------------------------------- small helpers


def _lin(srgb) -> np.ndarray:
    """A colour picked by eye (sRGB, 0..1) in linear light, where light adds and multiplies like light."""
    return np.asarray(srgb, np.float32) ** _GAMMA


def _pick(rng: np.random.Generator, options, odds=None):
    """One of `options` (any objects), drawn by index so that strings stay plain Python strings."""
    return options[int(rng.choice(len(options), p=odds))]


def _jitter(rng: np.random.Generator, srgb, amount: float = 0.08) -> np.ndarray:
    """A palette colour nudged per seed, in linear light, so that no two damask walls are quite the same."""
    return _lin(np.clip(np.asarray(srgb) * (1 + rng.uniform(-amount, amount, 3)), 0, 1))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Unit-ish noise varying over about `cells` blobs: a small random grid, upsampled smoothly (cheap, and blotchy
    the way plaster, patina and denoised chroma are)."""
    grid = rng.standard_normal((max(2, cells[0]), max(2, cells[1]))).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _rgb(grey: np.ndarray) -> np.ndarray:
    """A one-channel map as three equal channels: OpenCV does this many times faster than numpy broadcasting."""
    return cv2.cvtColor(np.ascontiguousarray(grey, np.float32), cv2.COLOR_GRAY2RGB)


def _tint(grey: np.ndarray, colour, offset=None) -> np.ndarray:
    """offset + grey x colour per channel, as an (H, W, 3) float32 image: one cheap OpenCV pass for the same reason."""
    m = np.asarray(colour, np.float32).reshape(3, 1)
    if offset is not None:
        m = np.c_[m, np.broadcast_to(np.asarray(offset, np.float32), (3,))]
    return cv2.transform(np.ascontiguousarray(grey, np.float32), m)


def _ramp(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, smooth in between: soft edges that do not alias."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _rot(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    if axis == 1:  # the y rotation's sines sit the other way round
        r[i, j], r[j, i] = s, -s
    return r


# ---------------------------------------------------------------------------------------------------------- camera


@dataclasses.dataclass(frozen=True)
class _Camera:
    """A pinhole camera looking at the wall plane, with optional barrel distortion.

    Barrel distortion is written as the map from a photo pixel back to the ideal pinhole image, scaled so the photo's
    corners stay put: p_ideal = c + (p - c) (1 + k r^2) / (1 + k), r the distance from the centre over the half
    diagonal. Rendering needs exactly that direction; the corners need its inverse, found by Newton's method."""

    homography: np.ndarray  # wall plane (u, v, 1) -> ideal pinhole image
    k: float
    width: int
    height: int
    position: np.ndarray  # the camera centre in plane units: (u, v, distance from the wall)

    @property
    def _centre(self) -> np.ndarray:
        return np.array([(self.width - 1) / 2, (self.height - 1) / 2])

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Wall-plane points (N, 2) to photo pixels (N, 2), distortion included."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        p = np.c_[uv, np.ones(len(uv))] @ self.homography.T
        p = p[:, :2] / p[:, 2:]
        if not self.k:
            return p
        c = self._centre
        d = p - c
        ru = np.hypot(d[:, 0], d[:, 1]) / np.hypot(*c)
        rd = ru.copy()
        for _ in range(30):  # rd (1 + k rd^2) = (1 + k) ru is monotonic for k > 0: Newton converges to rounding
            rd -= (rd * (1 + self.k * rd * rd) - (1 + self.k) * ru) / (1 + 3 * self.k * rd * rd)
        scale = np.divide(rd, ru, out=np.full_like(ru, 1 / (1 + self.k)), where=ru > 0)
        return c + d * scale[:, None]

    def _ideal(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.k:
            return xs, ys
        cx, cy = (self.width - 1) / 2, (self.height - 1) / 2  # Python floats keep float32 maps in float32
        dx, dy = xs - cx, ys - cy
        s = (1 + (dx * dx + dy * dy) * (self.k / (cx * cx + cy * cy))) * (1 / (1 + self.k))
        return cx + dx * s, cy + dy * s

    def to_plane(self, xy: np.ndarray) -> np.ndarray:
        """Photo pixels (N, 2) to the wall-plane points they show."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        xs, ys = self._ideal(xy[:, 0], xy[:, 1])
        p = np.c_[xs, ys, np.ones(len(xs))] @ np.linalg.inv(self.homography).T
        return p[:, :2] / p[:, 2:]

    def plane_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The wall-plane (u, v) every photo pixel sees, as two (H, W) float32 maps: the whole scene is then drawn by
        evaluating patterns at, or sampling textures from, these coordinates, so distortion comes for free."""
        # float32 throughout: plane coordinates of a few thousand units keep ~1e-3 of a unit, far below a pixel.
        xs = np.arange(self.width, dtype=np.float32)[None, :]
        ys = np.arange(self.height, dtype=np.float32)[:, None]
        xs, ys = self._ideal(xs, ys)
        inverse = np.linalg.inv(self.homography)
        centre = inverse[2] @ [(self.width - 1) / 2, (self.height - 1) / 2, 1]
        hi = (inverse / abs(centre)).astype(np.float32)  # scaled so the denominator is about 1 at the centre
        centre = np.float32(np.sign(centre))
        den = hi[2, 0] * xs + hi[2, 1] * ys + hi[2, 2]
        # Never reached by the poses drawn (the wall fills the view), but it keeps the far wall finite if it were.
        den = np.copysign(np.maximum(np.abs(den) * (den * centre > 0), np.float32(0.02)), centre)
        u = (hi[0, 0] * xs + hi[0, 1] * ys + hi[0, 2]) / den
        v = (hi[1, 0] * xs + hi[1, 1] * ys + hi[1, 2]) / den
        shape = (self.height, self.width)
        return np.ascontiguousarray(np.broadcast_to(u, shape)), np.ascontiguousarray(np.broadcast_to(v, shape))

    def box(self, rect: tuple[float, float, float, float], pad: int = 2) -> tuple[int, int, int, int] | None:
        """The photo's pixel box (x0, y0, x1, y1) holding a plane rectangle, or None when it is out of view."""
        u0, v0, u1, v1 = rect
        s = np.linspace(0, 1, 9)
        edges = np.concatenate(
            [
                np.c_[u0 + (u1 - u0) * s, np.full(9, v0)],
                np.c_[u0 + (u1 - u0) * s, np.full(9, v1)],
                np.c_[np.full(9, u0), v0 + (v1 - v0) * s],
                np.c_[np.full(9, u1), v0 + (v1 - v0) * s],
            ]
        )
        p = self.to_image(edges)
        x0, y0 = np.floor(p.min(axis=0)).astype(int) - pad
        x1, y1 = np.ceil(p.max(axis=0)).astype(int) + pad + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _build_camera(size, focal, yaw, pitch, roll, pan, tilt, distance, centre, k) -> _Camera:
    """The camera orbits the point `centre` of the wall by yaw and pitch at `distance`, then turns its aim by pan and
    tilt (which puts the painting off-centre, the way people actually frame) and rolls about its own axis."""
    width, height = size
    view = _rot(0, pitch) @ _rot(1, yaw)
    aim = _rot(2, roll) @ _rot(1, pan) @ _rot(0, tilt)
    rotation = aim @ view
    t = aim @ np.array([0.0, 0.0, distance])
    intrinsics = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
    to_centre = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]])
    homography = intrinsics @ np.column_stack([rotation[:, 0], rotation[:, 1], t]) @ to_centre
    world = -rotation.T @ t  # the camera centre, on the viewer's side (z < 0) of the wall
    position = np.array([world[0] + centre[0], world[1] + centre[1], -world[2]])
    return _Camera(homography / homography[2, 2], k, width, height, position)


def _outline(rect, n: int = 12) -> np.ndarray:
    """Points along a plane rectangle's edges, enough to follow the bow that distortion puts into them."""
    u0, v0, u1, v1 = rect
    s = np.linspace(0, 1, n, endpoint=False)
    return np.concatenate(
        [
            np.c_[u0 + (u1 - u0) * s, np.full(n, v0)],
            np.c_[np.full(n, u1), v0 + (v1 - v0) * s],
            np.c_[u1 - (u1 - u0) * s, np.full(n, v1)],
            np.c_[np.full(n, u0), v1 - (v1 - v0) * s],
        ]
    )


def _fill(cam: _Camera, outline: np.ndarray) -> float:
    """How much of the photo the framed painting spans: the larger of its width and height shares."""
    p = cam.to_image(outline)
    extent = p.max(axis=0) - p.min(axis=0)
    return float(max(extent[0] / cam.width, extent[1] / cam.height))


def _place_camera(rng, size, long_side, framed_rect, centre) -> tuple[_Camera, dict]:
    """Draw a phone's pose, then solve the distance so the framed painting fills the drawn share of the photo."""
    focal = rng.uniform(0.7, 1.1) * long_side
    yaw = float(_pick(rng, (-1, 1)) * 35 * rng.beta(1.3, 2.2))  # most people stand roughly in front, some do not
    pitch = float(np.clip(rng.normal(3.0, 6.0), -15, 15))  # slightly more often from below: paintings hang high
    roll = float(np.clip(rng.normal(0.0, 2.2), -6, 6))
    k = float(rng.uniform(0.015, 0.07)) if rng.random() < 0.35 else 0.0
    target = float(rng.uniform(FILL_RANGE[0] + 0.005, FILL_RANGE[1] - 0.005))
    offset = np.clip(rng.normal(0.0, 0.45, 2), -1, 1)  # share of the free room left around the painting
    outline = _outline(framed_rect)
    width, height = size
    extent = max((framed_rect[2] - framed_rect[0]) / width, (framed_rect[3] - framed_rect[1]) / height)

    def solve(pan: float, tilt: float, target: float) -> tuple[_Camera, float]:
        distance = focal * extent / target  # right for a frontal view; perspective needs a few corrections
        for _ in range(40):
            cam = _build_camera(size, focal, yaw, pitch, roll, pan, tilt, distance, centre, k)
            fill = _fill(cam, outline)
            if abs(fill / target - 1) < 1e-7:
                break
            distance *= fill / target
        return cam, fill

    cam, fill = solve(0.0, 0.0, target)
    p = cam.to_image(outline)
    room = (np.array([width - 1, height - 1]) - (p.max(axis=0) - p.min(axis=0))) / 2
    pan = math.degrees(math.atan(offset[0] * 0.9 * room[0] / focal))
    tilt = -math.degrees(math.atan(offset[1] * 0.9 * room[1] / focal))
    for attempt in range(12):
        cam, fill = solve(pan, tilt, target)
        p = cam.to_image(outline)
        if p.min() >= 0.5 and (p[:, 0].max() <= width - 1.5) and (p[:, 1].max() <= height - 1.5):
            break
        pan, tilt = pan * 0.6, tilt * 0.6  # aimed too far off: come back towards the middle
        if attempt >= 5:
            target = max(FILL_RANGE[0] + 0.001, target * 0.95)
    geometry = {
        "focal_px": focal,
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "pan": pan,
        "tilt": tilt,
        "distortion": k,
        "fill": fill,
    }
    return cam, geometry


# ---------------------------------------------------------------------------------------------------------- walls


@dataclasses.dataclass(frozen=True)
class _Plane:
    """What a wall or light pattern needs: the plane coordinates every pixel sees and the scene's scale."""

    u: np.ndarray
    v: np.ndarray
    cm: float  # plane units per centimetre
    cam: _Camera
    picture: tuple[float, float]  # (w, h) in plane units
    border: float

    def view_cos(self) -> np.ndarray:
        """Cosine between each viewing ray and the wall's normal: 1 head-on, towards 0 at grazing angles."""
        px, py, pz = self.cam.position
        du, dv = self.u - np.float32(px), self.v - np.float32(py)
        return np.minimum(np.float32(pz) / np.sqrt(du * du + dv * dv + np.float32(pz * pz)), 1)  # 1 + rounding

    @functools.cached_property
    def footprint(self) -> np.ndarray:
        """Plane units one pixel spans, per pixel (the larger of its two directions). It varies smoothly, so it is
        measured on a coarse grid and interpolated."""
        step = 8
        u, v = self.u[::step, ::step], self.v[::step, ::step]
        across = np.hypot(np.diff(u, axis=1), np.diff(v, axis=1))[:-1, :]
        down = np.hypot(np.diff(u, axis=0), np.diff(v, axis=0))[:, :-1]
        coarse = np.maximum(across, down) / step
        return cv2.resize(coarse.astype(np.float32), (self.u.shape[1], self.u.shape[0]), interpolation=cv2.INTER_LINEAR)

    def fade(self, feature: float) -> np.ndarray:
        """1 where a pattern detail `feature` plane units wide spans 3 or more pixels, 0 where it shrinks to one:
        patterns fade to their average before they would alias into moiré the way no lens would let them."""
        return np.clip((np.float32(feature) / self.footprint - 1) * 0.5, 0, 1)


_PAINT = [
    (0.55, 0.13, 0.14),  # museum red
    (0.16, 0.23, 0.36),  # Prussian blue
    (0.55, 0.60, 0.50),  # sage
    (0.74, 0.60, 0.36),  # ochre
    (0.17, 0.31, 0.24),  # deep green
    (0.50, 0.50, 0.52),  # grey
    (0.36, 0.21, 0.31),  # plum
    (0.86, 0.83, 0.76),  # warm off-white
]
_VELVET = [(0.38, 0.05, 0.09), (0.05, 0.22, 0.12), (0.06, 0.08, 0.27), (0.26, 0.07, 0.26), (0.04, 0.20, 0.22)]
_WOOD = [(0.45, 0.28, 0.14), (0.33, 0.17, 0.08), (0.58, 0.42, 0.25), (0.26, 0.14, 0.09)]


def _wall_paint(rng, plane: _Plane) -> np.ndarray:
    """Flat emulsion: one colour with roller mottling; the spot's pool and the lens's vignette do the rest."""
    colour = _jitter(rng, _pick(rng, _PAINT))
    mottle = 1 + rng.uniform(0.01, 0.035) * _smooth_noise(rng, plane.u.shape, tuple(rng.integers(4, 10, 2)))
    return _tint(mottle, colour)


def _wall_white_cube(rng, plane: _Plane) -> np.ndarray:
    """The modern white gallery: near-white, even, a hint of warm or cool."""
    colour = _lin(np.clip(rng.uniform(0.86, 0.95) + rng.uniform(-0.015, 0.015, 3), 0, 1))
    mottle = 1 + 0.008 * _smooth_noise(rng, plane.u.shape, (5, 5))
    return _tint(mottle, colour)


def _wall_stripes(rng, plane: _Plane) -> np.ndarray:
    """Regency-stripe wallpaper: vertical bands a few centimetres wide, tone on tone, sometimes a pinstripe."""
    ground = _jitter(rng, _pick(rng, _PAINT))
    band = ground * np.float32(1 + _pick(rng, (-1, 1)) * rng.uniform(0.07, 0.2))
    period = rng.uniform(4, 16) * plane.cm
    wave = np.cos((plane.u + np.float32(rng.uniform(0, period))) * np.float32(2 * math.pi / period))
    duty = rng.uniform(0.3, 0.6)
    t = np.clip(0.5 + rng.uniform(3, 10) * (wave - math.cos(math.pi * duty)), 0, 1)
    t = duty + (t - duty) * plane.fade(period / 4)
    rgb = _tint(t, band - ground, ground)
    if rng.random() < 0.5:  # a thin line half-way between bands, where the wave bottoms out
        pin = np.clip((-wave - 0.985) * 60, 0, 1) * np.float32(rng.uniform(0.3, 0.6)) * plane.fade(period * 0.05)
        rgb *= _rgb(1 - pin)
        rgb += _tint(pin, _jitter(rng, (0.75, 0.68, 0.45)))
    return rgb


def _wall_damask(rng, plane: _Plane) -> np.ndarray:
    """Damask: a mirrored rosette and serpentine ogee repeated on a half-drop grid, satin on matte, so the motif
    shows a little more at grazing angles."""
    ground = _jitter(rng, _pick(rng, _PAINT + _VELVET[:3]))
    contrast = rng.uniform(0.07, 0.2)
    cell_w = rng.uniform(14, 32) * plane.cm
    cell_h = cell_w * rng.uniform(1.2, 1.7)
    a, b = plane.u * np.float32(1 / cell_w), plane.v * np.float32(1 / cell_h)
    row = np.floor(b)
    a = a + 0.5 * row
    x = a - np.floor(a) - 0.5
    y = b - row - 0.5
    ax = np.abs(x)
    yr = y * np.float32(cell_h / cell_w)
    r2 = x * x + yr * yr
    c2 = x * x / (r2 + 1e-6)  # cos^2 of the angle: petals from cos 4θ = 8c^4 - 8c^2 + 1 without an arctangent
    petals = 8 * c2 * c2 - 8 * c2 + 1
    rosette = np.clip((0.2 + 0.05 * petals - np.sqrt(r2)) * 35, 0, 1)
    ogee = np.clip(1 - np.abs(ax - 0.38 - 0.08 * np.cos(y * np.float32(2 * math.pi))) * 18, 0, 1)
    motif = 0.25 + (np.maximum(rosette, ogee) - 0.25) * plane.fade(cell_w * 0.06)
    gain = np.float32(contrast) * (1 + np.float32(rng.uniform(0.2, 0.8)) * (1 - plane.view_cos()))
    return _tint(1 + gain * motif, ground)


def _wall_wood(rng, plane: _Plane) -> np.ndarray:
    """Panelling: vertical planks, each its own tone and grain, with dark joints between them."""
    base = _jitter(rng, _pick(rng, _WOOD))
    plank = rng.uniform(9, 20) * plane.cm
    a = plane.u * np.float32(1 / plank) + np.float32(rng.uniform(0, 1))
    k = np.floor(a)
    f = a - k
    index = np.mod(k, 64).astype(np.int32)
    tone = (1 + rng.normal(0, 0.09, 64)).astype(np.float32)[index]
    rings = rng.uniform(2, 6, 64).astype(np.float32)[index]
    phase = rng.uniform(0, 2 * math.pi, 64).astype(np.float32)[index]
    strength = rng.uniform(0.08, 0.25, 64).astype(np.float32)[index]
    # Grain lines run down the plank and drift sideways at two scales (the tree's growth, then its knots).
    vv = plane.v * np.float32(1 / (rng.uniform(20, 60) * plane.cm))
    wander = 0.35 * np.sin(vv + phase) + 0.12 * np.sin(vv * np.float32(3.7) + 2 * phase)
    grain = np.sin((f * rings + wander) * np.float32(2 * math.pi))
    lines = np.clip((grain - 0.7) * 4, 0, 1) * strength * plane.fade(plank / 40)
    figure = 1 + 0.05 * _smooth_noise(rng, plane.u.shape, (12, 6))
    joint = np.clip(np.minimum(f, 1 - f) * np.float32(plank / (0.3 * plane.cm)), 0, 1)
    joint = 1 - (1 - joint) * plane.fade(0.3 * plane.cm)
    return _tint(tone * figure * (1 - lines) * (0.3 + 0.7 * joint), base)


def _wall_velvet(rng, plane: _Plane) -> np.ndarray:
    """Fabric: a dark saturated colour, fine pile noise, faint ribs, and velvet's sheen at grazing angles."""
    colour = _jitter(rng, _pick(rng, _VELVET), 0.15)
    pile = cv2.GaussianBlur(_noise(rng, plane.u.shape), (0, 0), 0.8)
    rib = rng.uniform(0.6, 1.4) * plane.cm
    ribs = np.sin(plane.u * np.float32(2 * math.pi / rib)) * plane.fade(rib / 2)
    sheen = 1 + np.float32(rng.uniform(0.4, 1.2)) * (1 - plane.view_cos()) ** 1.5
    return _tint((1 + np.float32(rng.uniform(0.08, 0.16)) * pile + 0.03 * ribs) * sheen, colour)


_WALLS: dict[str, Callable[[np.random.Generator, _Plane], np.ndarray]] = {
    "paint": _wall_paint,
    "stripes": _wall_stripes,
    "damask": _wall_damask,
    "wood": _wall_wood,
    "velvet": _wall_velvet,
    "white_cube": _wall_white_cube,
}
_WALL_ODDS = (0.28, 0.15, 0.15, 0.14, 0.15, 0.13)


def _spotlight(rng, plane: _Plane, wall: str) -> tuple[np.ndarray, float]:
    """Gallery light on the wall plane: ambient plus a ceiling spot's pool aimed at the painting's upper half, with a
    crisper or softer rim; 1.0 at the picture's centre. Strong on painted walls, faint in a white cube."""
    pw, ph = plane.picture
    strength = {"paint": rng.uniform(0.8, 2.5), "white_cube": rng.uniform(0.05, 0.3)}.get(wall, rng.uniform(0.2, 1.2))
    cu, cv = pw * (0.5 + rng.normal(0, 0.08)), ph * rng.uniform(0.15, 0.55)
    su = (pw + 2 * plane.border) * rng.uniform(0.5, 0.95)
    sv = su * rng.uniform(1.0, 1.7)
    rim = rng.uniform(1.0, 2.2)
    rim = rim if rim > 1.05 else 1.0  # a plain Gaussian pool skips the power, the costliest step here
    du, dv = (plane.u - np.float32(cu)) * np.float32(1 / su), (plane.v - np.float32(cv)) * np.float32(1 / sv)
    r2 = du * du + dv * dv
    pool = np.exp(-(r2**rim if rim > 1 else r2))
    centre = math.exp(-((((pw / 2 - cu) / su) ** 2 + ((ph / 2 - cv) / sv) ** 2) ** rim))
    light = (1 + np.float32(strength) * pool) * np.float32(1 / (1 + strength * centre))
    return light, float(strength)


# --------------------------------------------------------------------------------------------------------- frames


@dataclasses.dataclass(frozen=True)
class _FrameSpec:
    kind: str  # gilt | strip | mount | none
    finish: str
    moulding: float  # moulding width, plane units
    mount: float  # passe-partout width, plane units (0 without one)
    depth: float  # how far the front stands off the wall, plane units
    rebate: float  # the step from the frame's sight edge down to the picture, plane units
    bevel: float  # width of a mount's 45° cut, plane units

    @property
    def border(self) -> float:
        return self.moulding + self.mount


_FINISHES = {  # albedo (sRGB by eye), gloss, shininess, metal (gloss tinted by the albedo)
    "gold": ((0.95, 0.78, 0.45), 0.8, 9, True),
    "antique_gold": ((0.75, 0.6, 0.35), 0.6, 6, True),
    "silver": ((0.85, 0.85, 0.82), 0.7, 12, True),
    "black": ((0.17, 0.17, 0.17), 0.15, 25, False),
    "oak": ((0.68, 0.52, 0.33), 0.05, 12, False),
    "walnut": ((0.38, 0.27, 0.2), 0.08, 14, False),
    "white": ((0.9, 0.9, 0.87), 0.05, 10, False),
    "aluminium": ((0.62, 0.63, 0.65), 0.5, 20, True),
}
_MOUNTS = {"white": (0.93, 0.92, 0.88), "cream": (0.9, 0.86, 0.76), "linen": (0.74, 0.7, 0.62), "grey": (0.6, 0.6, 0.6)}


def _draw_frame(rng, pw: float, ph: float, cm: float) -> tuple[_FrameSpec, str]:
    """What surrounds the picture, sized against it (2-18 % of the picture's mean size) and in centimetres."""
    size = math.sqrt(pw * ph)
    kind = _pick(rng, ("gilt", "strip", "mount", "none"), (0.35, 0.2, 0.27, 0.18))
    mount_finish = ""
    if kind == "gilt":
        finish = _pick(rng, ("gold", "antique_gold", "silver"), (0.55, 0.35, 0.1))
        moulding, mount = rng.uniform(0.06, BORDER_RANGE[1]) * size, 0.0
        depth, rebate = rng.uniform(3, 8) * cm, rng.uniform(0.8, 2.5) * cm
        depth = min(depth, max(moulding * 0.8, 1.5 * cm))  # a narrow moulding is not deep either
    elif kind == "strip":
        finish = _pick(rng, ("black", "oak", "walnut", "white", "aluminium"), (0.4, 0.25, 0.15, 0.1, 0.1))
        moulding, mount = rng.uniform(BORDER_RANGE[0], 0.05) * size, 0.0
        depth, rebate = rng.uniform(2, 4) * cm, rng.uniform(0.2, 0.8) * cm
    elif kind == "mount":
        finish = _pick(rng, ("black", "oak", "walnut", "white", "aluminium", "gold"))
        mount_finish = _pick(rng, tuple(_MOUNTS))
        moulding = rng.uniform(BORDER_RANGE[0], 0.05) * size
        mount = min(rng.uniform(0.04, 0.12) * size, BORDER_RANGE[1] * size - moulding)
        depth, rebate = rng.uniform(2, 4) * cm, 0.15 * cm
    else:  # a stretched canvas hung bare: its thin side shows, and its shadow on the wall
        finish = _pick(rng, ("raw_canvas", "black", "white", "wrapped"))
        moulding = mount = 0.0
        depth, rebate = rng.uniform(1.5, 4) * cm, 0.0
    return _FrameSpec(kind, finish, moulding, mount, depth, rebate, 0.35 * cm), mount_finish


def _profile(rng, spec: _FrameSpec, mount_finish: str, t: np.ndarray):
    """A moulding's cross-section from its outer edge (t = 0) to the picture (t = 1): height in units of the border
    width, and albedo, gloss and shininess along it."""
    n = len(t)
    albedo_srgb, gloss, shine, metal = _FINISHES[spec.finish if spec.finish in _FINISHES else "black"]
    albedo = np.tile(_jitter(rng, albedo_srgb, 0.06), (n, 1))
    glossy = np.full(n, gloss, np.float64)
    if spec.kind == "gilt":
        a1 = rng.uniform(0.08, 0.16)  # rounded outer lip
        a2 = a1 + rng.uniform(0.04, 0.12)  # flat
        a3 = a2 + rng.uniform(0.2, 0.33)  # cove
        a4 = a3 + rng.uniform(0.06, 0.1)  # bead
        a5 = rng.uniform(max(a4 + 0.05, 0.88), 0.97)  # slip, then the sight lip
        h1 = rng.uniform(0.25, 0.45)
        h2 = h1 * rng.uniform(0.3, 0.6)
        h3 = h2 * rng.uniform(0.4, 0.9)
        s = lambda lo, hi: np.clip((t - lo) / (hi - lo), 0, 1)  # noqa: E731 - position within one segment
        h = np.where(t < a1, h1 * np.sqrt(1 - (1 - s(0, a1)) ** 2), h1)
        h = np.where(t >= a2, h2 + (h1 - h2) * (1 - s(a2, a3)) ** 2, h)
        h = np.where(t >= a3, h2 + rng.uniform(0.04, 0.09) * np.sqrt(1 - (2 * s(a3, a4) - 1) ** 2), h)
        h = np.where(t >= a4, h3, h)
        h = np.where(t >= a5, h3 * np.sqrt(1 - s(a5, 1) ** 2) + 0.02, h)
        if rng.random() < 0.4:  # a linen slip between the gilding and the picture
            slip = (t >= a4 + 0.01) & (t < a5)
            albedo[slip] = _jitter(rng, _MOUNTS["linen"])
            glossy[slip] = 0.0
    elif spec.kind == "mount":
        tm = spec.moulding / spec.border
        bevel = min(spec.bevel / spec.border, 0.04)
        rounded = np.sqrt(np.clip(np.minimum(t, tm - t) / (0.25 * tm), 0, 1))
        h = np.where(t < tm, 0.03 + 0.25 * tm * rounded, 0.03)
        h = np.where(t > 1 - bevel, 0.03 - (t - (1 - bevel)), h)  # the mount's 45° cut towards the picture
        board = t >= tm
        albedo[board] = _jitter(rng, _MOUNTS[mount_finish], 0.03)
        glossy[board] = 0.0
        albedo[t > 1 - bevel] = _lin((0.95, 0.94, 0.9))  # the white core the bevel cut exposes
    else:  # strip: a flat face with rounded edges
        r = rng.uniform(0.12, 0.3)
        h = rng.uniform(0.2, 0.5) * np.sqrt(np.clip(np.minimum(t, 1 - t) / r, 0, 1))
    return h, albedo, glossy, shine, metal


def _cast_shadow(h: np.ndarray, t: np.ndarray, light: np.ndarray, inward: np.ndarray) -> np.ndarray:
    """How shadowed each point of a profile is by the profile itself (a cove below a lip), by a horizon test along
    the cross-section: a running maximum, so it costs nothing."""
    along = float(light[:2] @ inward)  # > 0: the light comes from the picture's side of this moulding
    rise = light[2] / max(abs(along), 1e-3)  # how fast a ray towards the light climbs per unit across
    if along < 0:
        q = h + t * rise
        blocker = np.concatenate([[-np.inf], np.maximum.accumulate(q)[:-1]])
    else:
        q = h - t * rise
        blocker = np.concatenate([np.maximum.accumulate(q[::-1])[::-1][1:], [-np.inf]])
    return np.clip((blocker - q) / 0.01, 0, 1)


def _frame_luts(rng, spec, mount_finish, light, view, texels_per_border) -> tuple[np.ndarray, np.ndarray]:
    """Shaded colour across the moulding for each side (4, N, 3), and the height profile (N,). Each side tilts the
    same profile a different way, so the top catches the light the bottom misses and the mitres show."""
    t = np.linspace(0, 1, _LUT_SIZE)
    h, albedo, gloss, shine, metal = _profile(rng, spec, mount_finish, t)
    slope = np.clip(np.gradient(h, t), -8, 8)
    half = (light + view) / np.linalg.norm(light + view)
    colours = np.empty((4, _LUT_SIZE, 3))
    curvature = np.gradient(slope, t)
    occlusion = 1 - 0.4 * np.clip(curvature / 60, 0, 1)  # concave parts (the cove) see less of the room
    tint = albedo if metal else np.ones(3)
    for side in range(4):
        g = slope[:, None] * _INWARD[side]
        normal = np.c_[-g, np.ones(_LUT_SIZE)]
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        lit = 1 - _cast_shadow(h, t, light, _INWARD[side])
        diffuse = np.clip(normal @ light, 0, None) * lit
        specular = np.clip(normal @ half, 0, None) ** shine * lit
        diffuse_albedo = albedo * (0.35 if metal else 1.0)
        colours[side] = diffuse_albedo * (0.3 * occlusion + 0.8 * diffuse)[:, None]
        colours[side] += (gloss * specular)[:, None] * tint
    # One texel covers several LUT entries when the frame is small in the photo: average them, as a lens would.
    footprint = int(round(_LUT_SIZE / max(texels_per_border, 1e-3)))
    if footprint > 1:
        colours = cv2.blur(colours.astype(np.float32), (footprint, 1), borderType=cv2.BORDER_REPLICATE)
    return colours.astype(np.float32), h.astype(np.float32)


def _side_faces(spec: _FrameSpec, cam: _Camera, pw: float, ph: float) -> tuple[float, float, float, float]:
    """Widths on the wall of the frame's (or canvas's) side faces the camera can see: (left, top, right, bottom).
    A side shows when the camera stands beyond that edge, by depth x how far beyond / how far from the wall."""
    b = spec.border
    cu, cv, cz = cam.position
    return (
        spec.depth * max(-b - cu, 0) / cz,
        spec.depth * max(-b - cv, 0) / cz,
        spec.depth * max(cu - (pw + b), 0) / cz,
        spec.depth * max(cv - (ph + b), 0) / cz,
    )


@dataclasses.dataclass(frozen=True)
class _Sprite:
    """A texture (th, tw, 4) linear RGB + coverage, padded with one transparent texel all round (so bilinear
    sampling fades its edge exactly at the rectangle's border), and the plane rectangle its unpadded texels span."""

    rgba: np.ndarray
    rect: tuple[float, float, float, float]

    @staticmethod
    def of(rgb: np.ndarray, alpha: np.ndarray | float, rect) -> _Sprite:
        rgba = np.empty(rgb.shape[:2] + (4,), np.float32)
        rgba[..., :3] = rgb
        rgba[..., 3] = alpha
        rgba = cv2.copyMakeBorder(rgba, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        rgba[[0, -1], :, 3] = 0
        rgba[:, [0, -1], 3] = 0
        return _Sprite(rgba, tuple(float(x) for x in rect))

    def shifted(self, du: float, dv: float) -> _Sprite:
        u0, v0, u1, v1 = self.rect
        return _Sprite(self.rgba, (u0 + du, v0 + dv, u1 + du, v1 + dv))


def _frame_sprite(rng, spec, mount_finish, pw, ph, faces, density, light, view, picture_edge) -> _Sprite | None:
    """The frame (or a bare canvas's sides) as a texture: each texel takes its distance from the outer edge and the
    side it is nearest, and reads the shaded profile; the mitres fall out of "nearest side" on their own."""
    b = spec.border
    fl, ft, fr, fb = faces
    rect = (-b - fl, -b - ft, pw + b + fr, ph + b + fb)
    if b == 0 and not any(faces):
        return None
    tw = max(2, math.ceil((rect[2] - rect[0]) * density))
    th = max(2, math.ceil((rect[3] - rect[1]) * density))
    uu = (rect[0] + (np.arange(tw) + 0.5) * (rect[2] - rect[0]) / tw).astype(np.float32)
    vv = (rect[1] + (np.arange(th) + 0.5) * (rect[3] - rect[1]) / th).astype(np.float32)
    dl, dr, dt, db = uu + b, pw + b - uu, vv + b, ph + b - vv
    across = np.minimum(dl, dr)[None, :] < np.minimum(dt, db)[:, None]  # nearer a left/right side than top/bottom
    d = np.where(across, np.minimum(dl, dr)[None, :], np.minimum(dt, db)[:, None])
    side = np.where(across, np.where(dl < dr, _LEFT, _RIGHT)[None, :], np.where(dt < db, _TOP, _BOTTOM)[:, None])
    along = np.where(across, vv[:, None], uu[None, :])
    outside = d < 0
    corner = (np.minimum(dl, dr)[None, :] < 0) & (np.minimum(dt, db)[:, None] < 0)

    # The side faces stand square to the wall: lit by how much they face the light, darker than the front.
    if spec.kind == "none":
        side_srgb = {"raw_canvas": (0.72, 0.66, 0.56), "black": (0.1, 0.1, 0.1), "white": (0.9, 0.9, 0.88)}
        side_albedo = _lin(side_srgb[spec.finish]) if spec.finish in side_srgb else picture_edge
    else:
        side_albedo = _lin(_FINISHES[spec.finish][0]) * 0.7
    face_light = 0.25 + 0.8 * np.clip(-_INWARD @ light[:2], 0, None)  # the outward normal is minus inward
    face_rgb = (face_light[:, None] * side_albedo).astype(np.float32)

    if b > 0:
        luts, heights = _frame_luts(rng, spec, mount_finish, light, view, b * density)
        index = np.clip(d * np.float32((_LUT_SIZE - 1) / b) + 0.5, 0, _LUT_SIZE - 1).astype(np.int32)
        rgb = luts[side, index]
        if spec.kind == "gilt":
            rgb = _gilt_wear(rng, rgb, index, heights, along, d / np.float32(b), (th, tw), spec)
        else:
            rgb *= _rgb(_frame_material(rng, spec, index, along, (th, tw)))
        alpha = np.ones((th, tw), np.float32)
    else:  # a bare canvas: only the side faces, the picture lies over the rest
        rgb = np.zeros((th, tw, 3), np.float32)
        alpha = np.zeros((th, tw), np.float32)
    if outside.any():
        rgb[outside] = face_rgb[side[outside]]
        alpha[outside] = 1.0
    alpha[corner] = 0.0  # where two side faces would meet the wall: leave the wall
    return _Sprite.of(rgb, alpha, rect)


def _frame_material(rng, spec, index, along, shape) -> np.ndarray:
    """Brightness variation of a painted or wooden moulding: wood grain running along it (not across a mount), or
    faint paint noise."""
    noise = 1 + 0.03 * _smooth_noise(rng, shape, (max(2, shape[0] // 24), max(2, shape[1] // 24)))
    if spec.finish in ("oak", "walnut"):
        across = index.astype(np.float32) * np.float32(spec.border / _LUT_SIZE)
        period = spec.moulding / rng.uniform(2, 6)
        wobble = 0.4 * np.sin(along * np.float32(1 / (rng.uniform(4, 12) * spec.moulding)) + rng.uniform(0, 6))
        grain = np.sin((across * np.float32(1 / period) + wobble) * np.float32(2 * math.pi))
        noise *= 1 - 0.15 * np.clip(grain * 2 - 1, 0, 1) * (across < spec.moulding)
    return noise


def _gilt_wear(rng, rgb, index, heights, along, t, shape, spec) -> np.ndarray:
    """Old gilding: blotchy patina, red bole showing where the raised parts were rubbed, and a repeated ornament
    (leaf and dart) pressed into one band of the moulding."""
    patina = _smooth_noise(rng, shape, (max(2, shape[0] // 18), max(2, shape[1] // 18)))
    rgb *= _rgb(1 + 0.12 * patina)
    raised = np.clip((heights[index] / heights.max() - 0.6) * 3, 0, 1)
    rubbed = np.clip((patina - rng.uniform(0.3, 1.2)) * 2, 0, 1) * raised
    bole = _lin((0.5, 0.22, 0.14)) / np.maximum(_lin(_FINISHES[spec.finish][0]), 1e-3)
    rgb *= _tint(rubbed, (bole - 1) * 0.8, 1.0)
    if rng.random() < 0.7:
        lo = rng.uniform(0.05, 0.45)
        band = _ramp((t - lo) * 30) * _ramp((lo + rng.uniform(0.1, 0.25) - t) * 30)
        period = spec.moulding * rng.uniform(0.25, 0.6)
        wave = 0.5 + 0.5 * np.cos(along * np.float32(2 * math.pi / period))
        rgb *= _rgb(1 + band * (wave**3 - 0.3) * np.float32(rng.uniform(0.3, 0.7)))
    return rgb


# --------------------------------------------------------------------------------------------------- the painting


def _picture_sprite(picture: np.ndarray, pw: int, ph: int, density: float, spec: _FrameSpec, light) -> _Sprite:
    """The painting as a texture no finer than the photo needs (shrunk first, so small reproductions of big images
    do not alias), darkened along the edges where the frame's rebate casts its shadow."""
    scale = min(1.0, 1.3 * density)
    tw, th = max(2, round(pw * scale)), max(2, round(ph * scale))
    if (tw, th) != (pw, ph):
        picture = cv2.resize(picture, (tw, th), interpolation=cv2.INTER_AREA)
    rgb = _TO_LINEAR[picture]
    if spec.rebate > 0:
        reach = [spec.rebate * max(-float(light[:2] @ _INWARD[s]), 0) / light[2] for s in range(4)]
        vv = (np.arange(th) + 0.5) * (ph / th)
        uu = (np.arange(tw) + 0.5) * (pw / tw)

        def shade(x, extent, near, far):
            dark = 0.0
            if near > 0:
                dark = dark + _ramp(1 - x / near)
            if far > 0:
                dark = dark + _ramp(1 - (extent - x) / far)
            return (1 - 0.55 * np.clip(dark, 0, 1)).astype(np.float32)

        rgb *= shade(vv, ph, reach[_TOP], reach[_BOTTOM])[:, None, None]
        rgb *= shade(uu, pw, reach[_LEFT], reach[_RIGHT])[None, :, None]
    return _Sprite.of(rgb, 1.0, (0, 0, pw, ph))


_OLD_MASTER = [
    (0.35, 0.22, 0.12),  # umber
    (0.6, 0.45, 0.25),  # ochre
    (0.15, 0.12, 0.09),  # near-black ground
    (0.25, 0.3, 0.2),  # olive
    (0.8, 0.65, 0.5),  # flesh
    (0.45, 0.55, 0.65),  # muted sky
    (0.55, 0.12, 0.1),  # vermilion drapery
]


def _neighbour_sprite(rng, height: float, width: float, density: float) -> np.ndarray:
    """Some other painting: a few dark varnished colour masses and figures; only its edge will be in the photo."""
    tw, th = max(4, math.ceil(width * density)), max(4, math.ceil(height * density))
    palette = np.array(_OLD_MASTER, np.float32)
    cells = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    grid = palette[rng.integers(0, len(palette), cells)] * rng.uniform(0.7, 1.2, cells + (1,)).astype(np.float32)
    rgb = cv2.resize(grid, (tw, th), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(1, 5))):  # a figure or two
        centre = (int(rng.uniform(0, tw)), int(rng.uniform(0, th)))
        axes = (max(1, int(rng.uniform(0.05, 0.25) * tw)), max(1, int(rng.uniform(0.1, 0.35) * th)))
        colour = (palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.2)).tolist()
        cv2.ellipse(rgb, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1)
    varnish = np.array([0.95, 0.85, 0.65], np.float32)  # old varnish yellows everything
    return np.clip(rgb, 0, 1) ** _GAMMA * varnish


def _label_sprite(rng, width: float, height: float, density: float) -> np.ndarray:
    """A wall label: a white card with a bolder first line (the artist) and shorter lines of small "words"."""
    tw, th = max(4, math.ceil(width * density)), max(3, math.ceil(height * density))
    big = 4  # draw large and shrink, so lines thinner than a pixel come out grey, not missing
    card = np.full((th * big, tw * big), 235, np.uint8)
    lines = int(rng.integers(3, 7))
    pitch = th * big * 0.75 / lines
    margin = 0.1 * tw * big
    for i in range(lines):
        y = int(th * big * 0.15 + i * pitch)
        thick = max(1, int(pitch * (0.45 if i == 0 else 0.3)))
        x, end = margin, margin + (tw * big - 2 * margin) * rng.uniform(0.4, 1.0 if i else 0.8)
        while x < end:
            word = rng.uniform(0.04, 0.14) * tw * big
            cv2.rectangle(card, (int(x), y), (int(min(x + word, end)), y + thick), 40 if i == 0 else 70, -1)
            x += word + 0.025 * tw * big
    card = cv2.resize(card, (tw, th), interpolation=cv2.INTER_AREA)
    paper = _lin(_jitter(rng, (0.96, 0.95, 0.91), 0.02) ** (1 / _GAMMA))
    return _TO_LINEAR[card][..., None] * paper


def _paste(canvas: np.ndarray, sprite: _Sprite, plane: _Plane):
    """Sample a plane texture at the plane point each pixel sees and lay it over the canvas, only inside the box it
    projects to. Returns the box and the coverage there, or None when the sprite is out of view."""
    box = plane.cam.box(sprite.rect)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    u0, v0, u1, v1 = sprite.rect
    th, tw = sprite.rgba.shape[:2]
    sx, sy = np.float32((tw - 2) / (u1 - u0)), np.float32((th - 2) / (v1 - v0))
    # Texel i (padded i + 1) is centred at u0 + (i + 0.5) / sx, so the padded coordinate is (u - u0) sx + 0.5.
    mx = (plane.u[y0:y1, x0:x1] - np.float32(u0)) * sx + np.float32(0.5)
    my = (plane.v[y0:y1, x0:x1] - np.float32(v0)) * sy + np.float32(0.5)
    sample = cv2.remap(sprite.rgba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = np.ascontiguousarray(sample[..., 3])
    cover = _rgb(alpha)
    region = canvas[y0:y1, x0:x1]
    region *= 1 - cover
    region += cover * sample[..., :3]
    return box, alpha


def _drop_shadow(canvas, plane: _Plane, rect, depth: float, light, opacity: float) -> None:
    """A frame stands off the wall: its shadow falls away from the light, offset and blurred by its depth."""
    du, dv = -light[0] / light[2] * depth, -light[1] / light[2] * depth
    soft = 0.5 * depth + 0.3 * plane.cm
    r = (rect[0] + du, rect[1] + dv, rect[2] + du, rect[3] + dv)
    box = plane.cam.box((r[0] - 2 * soft, r[1] - 2 * soft, r[2] + 2 * soft, r[3] + 2 * soft))
    if box is None:
        return
    x0, y0, x1, y1 = box
    u, v = plane.u[y0:y1, x0:x1], plane.v[y0:y1, x0:x1]
    k = np.float32(1 / (2 * soft))
    inside = _ramp(0.5 + (u - r[0]) * k) * _ramp(0.5 + (r[2] - u) * k) * _ramp(0.5 + (v - r[1]) * k)
    inside *= _ramp(0.5 + (r[3] - v) * k)
    canvas[y0:y1, x0:x1] *= _rgb(1 - np.float32(opacity) * inside)


def _glare(rng, canvas, plane: _Plane, box, coverage, light_colour) -> str:
    """Varnish reflecting a window or a spot: a soft ellipse or a long streak, added light that washes out colour,
    and only on the picture's surface."""
    kind = _pick(rng, ("none", "spot", "streak"), (0.5, 0.25, 0.25))
    if kind == "none" or box is None:
        return "none"
    pw, ph = plane.picture
    size = math.sqrt(pw * ph)
    x0, y0, x1, y1 = box
    gu, gv = plane.u[y0:y1, x0:x1] - np.float32(pw * rng.uniform(0.1, 0.9)), plane.v[y0:y1, x0:x1]
    gv = gv - np.float32(ph * rng.uniform(0.1, 0.9))
    angle = rng.uniform(0, math.pi) if kind == "spot" else rng.normal(math.pi / 2, 0.5)
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    a, b = gu * c + gv * s, gv * c - gu * s  # along, across
    if kind == "spot":
        ra = size * rng.uniform(0.06, 0.25)
        rb = ra * rng.uniform(0.4, 1.0)
    else:
        ra, rb = size * rng.uniform(0.3, 1.2), size * rng.uniform(0.01, 0.06)
    glow = np.exp(-((a * np.float32(1 / ra)) ** 2) - (b * np.float32(1 / rb)) ** 2)
    strength = np.float32(rng.uniform(0.15, 1.2))
    canvas[y0:y1, x0:x1] += _tint(glow * coverage * strength, light_colour)
    return kind


# ------------------------------------------------------------------------------------------- foreground occluders


def _occluders(rng, canvas, corners: np.ndarray) -> tuple[dict, float]:
    """Things between the lens and the wall: a rope barrier or a bench along the bottom, a visitor's head and shoulder
    from one side. Drawn small and scaled up (so out of focus, as near things are), each moved away from the
    painting until the picture stays at least ~90 % visible, or dropped."""
    height, width = canvas.shape[:2]
    q = 4
    small = (math.ceil(height / q), math.ceil(width / q))
    picture = np.zeros(small, np.uint8)
    cv2.fillPoly(picture, [np.round(corners / q * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    picture = picture.astype(np.float32) / 255
    area = max(float(picture.sum()), 1.0)
    hidden = np.zeros(small, np.float32)
    layers: list[tuple[np.ndarray, np.ndarray]] = []

    def place(draw: Callable[[int], list], steps: int, budget: float = MAX_OCCLUSION) -> bool:
        """Try draw(shift) for growing shifts; keep the first whose masks leave the picture visible enough."""
        nonlocal hidden
        for i in range(steps):
            parts = [(cv2.GaussianBlur(m.astype(np.float32) / 255, (0, 0), blur), c) for m, c in draw(i)]
            union = hidden.copy()
            for m, _ in parts:
                union = np.maximum(union, m)
            if float((union * picture).sum()) / area <= budget:
                hidden = union
                layers.extend(parts)
                return True
        return False

    def shape(fn) -> np.ndarray:
        m = np.zeros(small, np.uint8)
        fn(m)
        return m

    blur = rng.uniform(0.6, 2.5)
    dim = np.float32(rng.uniform(0.2, 0.5))  # near things are lit by the room, not by the painting's spot
    pt = lambda x, y: (round(x / q * 16), round(y / q * 16))  # noqa: E731 - photo px -> small px, 4 fraction bits
    barrier = _pick(rng, ("none", "rope", "bench"), (0.66, 0.2, 0.14))
    if barrier == "rope":
        rope = _lin(_pick(rng, ((0.45, 0.05, 0.08), (0.08, 0.08, 0.08), (0.1, 0.12, 0.3))))
        post = _lin(_pick(rng, ((0.75, 0.58, 0.25), (0.7, 0.7, 0.72), (0.1, 0.1, 0.1))))
        xa = rng.uniform(-0.15, 0.35) * width
        xb = xa + rng.uniform(0.5, 1.1) * width
        y0, sag = rng.uniform(0.74, 0.9) * height, rng.uniform(0.03, 0.1) * height
        thick = max(1, int(rng.uniform(0.008, 0.02) * height / q))
        post_w = rng.uniform(0.012, 0.025) * width

        def draw_rope(step: int) -> list:
            dy = step * 0.04 * height
            xs = np.linspace(xa - (xb - xa), xb + (xb - xa), 60)
            span = (xs - xa) / (xb - xa)  # catenary-ish: a parabola between each pair of posts
            ys = y0 + dy + sag * (1 - (2 * (span - np.floor(span)) - 1) ** 2)
            line = [np.array([pt(x, y) for x, y in zip(xs, ys, strict=True)], np.int32)]
            rope_m = shape(lambda m: cv2.polylines(m, line, False, 255, thick, cv2.LINE_AA, shift=4))
            posts = []
            for x in (xa, xb):
                top = y0 + dy - 0.03 * height
                box = np.array([pt(x - post_w / 2, top), pt(x + post_w / 2, top), pt(x + post_w / 2, height * 1.1)])
                box = np.vstack([box, [pt(x - post_w / 2, height * 1.1)]])
                posts.append(box.astype(np.int32))
            post_m = shape(lambda m: cv2.fillPoly(m, posts, 255, cv2.LINE_AA, shift=4))
            return [(post_m, post), (rope_m, rope)]

        barrier = barrier if place(draw_rope, 8, budget=0.003) else "none"  # it hangs below paintings
    elif barrier == "bench":
        colour = _lin(_pick(rng, ((0.08, 0.07, 0.07), (0.3, 0.2, 0.12), (0.16, 0.16, 0.18))))
        xa, span = rng.uniform(-0.3, 0.3) * width, rng.uniform(0.6, 1.3) * width
        top, slab = rng.uniform(0.8, 0.93) * height, rng.uniform(0.04, 0.08) * height

        def draw_bench(step: int) -> list:
            y = top + step * 0.03 * height
            seat = np.array([pt(xa, y), pt(xa + span, y), pt(xa + span, y + slab), pt(xa, y + slab)], np.int32)
            legs = [
                np.array([pt(x, y), pt(x + 0.03 * width, y), pt(x + 0.03 * width, height * 1.1), pt(x, height * 1.1)])
                for x in (xa + 0.05 * span, xa + 0.9 * span)
            ]
            return [(shape(lambda m: cv2.fillPoly(m, [seat, *legs], 255, cv2.LINE_AA, shift=4)), colour)]

        barrier = barrier if place(draw_bench, 8, budget=0.003) else "none"

    visitor = rng.random() < 0.3
    if visitor:
        side = _pick(rng, (-1, 1))
        r = rng.uniform(0.06, 0.12) * (width + height) / 2
        x_head = rng.uniform(-0.02, 0.3) * width
        y_head = rng.uniform(0.5, 0.85) * height
        hair = _lin(_pick(rng, ((0.08, 0.06, 0.05), (0.25, 0.17, 0.1), (0.55, 0.45, 0.3), (0.5, 0.5, 0.5))))
        coat = _lin(_pick(rng, ((0.06, 0.06, 0.07), (0.12, 0.1, 0.2), (0.25, 0.08, 0.08), (0.3, 0.28, 0.22))))
        tilt = rng.uniform(-12, 12)

        def draw_visitor(step: int) -> list:
            x = x_head - step * 0.06 * width
            x = x if side < 0 else width - x  # mirrored for a visitor coming in from the right
            body = shape(
                lambda m: cv2.ellipse(
                    m, pt(x - side * 0.5 * r, y_head + 2.6 * r), pt(2.6 * r, 1.8 * r), 0, 0, 360, 255, -1,
                    cv2.LINE_AA, 4,
                )
            )  # fmt: skip
            neck = np.array([pt(x - 0.35 * r, y_head), pt(x + 0.35 * r, y_head), pt(x + 0.4 * r, y_head + 1.5 * r)])
            neck = np.vstack([neck, [pt(x - 0.4 * r, y_head + 1.5 * r)]]).astype(np.int32)
            cv2.fillPoly(body, [neck], 255, cv2.LINE_AA, shift=4)
            head = shape(lambda m: cv2.ellipse(m, pt(x, y_head), pt(0.8 * r, r), tilt, 0, 360, 255, -1, cv2.LINE_AA, 4))
            return [(body, coat), (head, hair)]

        visitor = place(draw_visitor, 12)

    for mask, colour in layers:  # composite at full size, inside each layer's box only
        ys, xs = np.nonzero(mask > 1e-3)
        if len(ys) == 0:
            continue
        y0, y1 = ys.min() * q, min(height, (ys.max() + 1) * q)
        x0, x1 = xs.min() * q, min(width, (xs.max() + 1) * q)
        full = cv2.resize(mask, (small[1] * q, small[0] * q), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
        shade = np.linspace(1.15, 0.8, y1 - y0, dtype=np.float32)[:, None] * dim  # lit a little from above
        region = canvas[y0:y1, x0:x1]
        region *= _rgb(1 - full)
        region += _tint(full * shade, colour)
    occlusion = float((hidden * picture).sum()) / area
    return {"barrier": barrier, "visitor": bool(visitor)}, occlusion


# --------------------------------------------------------------------------------------------------------- camera


_LIGHTS = {  # white-balance error left after the phone's auto white balance, as channel gains
    "tungsten": lambda rng: (1 + rng.uniform(0.08, 0.25), 1.0, 1 - rng.uniform(0.12, 0.3)),
    "led": lambda rng: (1 - rng.uniform(0.04, 0.14), 1.0, 1 + rng.uniform(0.05, 0.2)),
    "fluorescent": lambda rng: (1 - rng.uniform(0.0, 0.08), 1 + rng.uniform(0.05, 0.14), 1 - rng.uniform(0.0, 0.1)),
    "daylight": lambda rng: tuple(1 + rng.uniform(-0.03, 0.03, 3)),
}


def _blur(rng, image: np.ndarray, scale: float) -> tuple[str, float]:
    """Hand shake (a short line kernel at any angle) or missed focus (a disc), in place; often neither."""
    kind = _pick(rng, ("none", "motion", "defocus"), (0.4, 0.25, 0.35))
    if kind == "motion":
        length = rng.uniform(1.5, 8) * scale
        n = int(math.ceil(length)) // 2 * 2 + 3
        big = np.zeros((n * 4, n * 4), np.uint8)  # drawn 4x and shrunk: a sub-pixel-accurate line
        angle = rng.uniform(0, math.pi)
        c, d = (n * 4 - 1) / 2, length * 2 * np.array([math.cos(angle), math.sin(angle)])
        a, b = np.round((c - d) * 16).astype(int), np.round((c + d) * 16).astype(int)
        cv2.line(big, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, 4, cv2.LINE_AA, 4)
        kernel = cv2.resize(big.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
        image[...] = cv2.filter2D(image, -1, kernel / kernel.sum())
        return kind, float(length)
    if kind == "defocus":
        radius = rng.uniform(0.6, 2.5) * scale
        if radius < 1.2:
            image[...] = cv2.GaussianBlur(image, (0, 0), radius * 0.7)
        else:
            size = int(math.ceil(radius)) * 2 + 1
            yy, xx = np.mgrid[:size, :size] - size // 2
            disc = np.clip(radius + 0.5 - np.hypot(xx, yy), 0, 1).astype(np.float32)
            image[...] = cv2.filter2D(image, -1, disc / disc.sum())
        return kind, float(radius)
    return kind, 0.0


def _auto_exposure(image: np.ndarray) -> float:
    """A phone's exposure: centre-weighted metering brings the scene's (geometric) mean to mid-grey, but its HDR
    pulls back when that would burn the brightest part, a spot-lit painting on a dark wall, far past white."""
    small = cv2.resize(image, (32, 24), interpolation=cv2.INTER_AREA)
    luma = np.maximum(small @ np.array([0.2126, 0.7152, 0.0722], np.float32), 1e-4)
    yy, xx = np.mgrid[:24, :32]
    weight = np.exp(-(((xx - 15.5) / 14) ** 2) - ((yy - 11.5) / 11) ** 2)
    mean = float(np.exp((weight * np.log(luma)).sum() / weight.sum()))
    return min(0.18 / mean, 1.6 / float(np.percentile(luma, 97)))


def _tone_lut(rng) -> tuple[np.ndarray, dict]:
    """A phone's tone curve from linear light to display: a highlight shoulder, gamma, an S for contrast and a
    shadow lift (the "HDR" look), as a lookup table over [0, 4)."""
    x = np.linspace(0, 4, 4096)
    white = rng.uniform(1.2, 3.0)  # the scene level that just reaches white; the shoulder rolls off towards it
    y = np.clip(x * (1 + x / white**2) / (1 + x), 0, 1) ** (1 / _GAMMA)
    contrast, lift = rng.uniform(-0.1, 0.45), rng.uniform(0, 0.25)
    y = y - contrast * np.sin(2 * math.pi * y) / (2 * math.pi)
    y = np.clip(y + lift * 4 * y * (1 - y) ** 3, 0, 1)
    return y.astype(np.float32), {"contrast": contrast, "shadow_lift": lift, "white_point": white}


def _noise(rng, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance noise: the sum of two uniforms (a triangle), several times cheaper than a Gaussian
    and indistinguishable once a denoiser and a JPEG have been over it."""
    return (rng.random(shape, dtype=np.float32) + rng.random(shape, dtype=np.float32) - 1) * np.float32(math.sqrt(6))


def _develop(rng, scene: np.ndarray, scale: float, light: str) -> tuple[np.ndarray, dict]:
    """From scene light to a phone JPEG: lens (vignette, blur), metering and exposure error, sensor noise in linear
    light, white-balance error, tone curve, saturation, sharpening, JPEG. Works in place on `scene`."""
    height, width = scene.shape[:2]
    xs = np.linspace(-1, 1, width, dtype=np.float32) ** 2 * np.float32(width / math.hypot(width, height)) ** 2
    ys = np.linspace(-1, 1, height, dtype=np.float32) ** 2 * np.float32(height / math.hypot(width, height)) ** 2
    vignette = rng.uniform(0.08, 0.45)
    scene *= _rgb(1 - np.float32(vignette) * (xs[None, :] + ys[:, None]))
    blur, blur_px = _blur(rng, scene, scale)

    ev = float(np.clip(rng.normal(0, 0.45), -1.3, 1.0))
    gain = _auto_exposure(scene) * 2**ev
    scene *= np.float32(gain)
    # Sensor noise: shot noise grows with the signal, read noise does not, so dark areas are the noisiest once the
    # tone curve lifts them. The gain the metering needed is the ISO; a phone's denoiser leaves chroma blotchy.
    iso = float(np.clip(gain * rng.uniform(0.4, 2.5), 0.3, 8))
    sigma = cv2.sqrt(np.maximum(scene, 0) * np.float32(4e-4 * iso) + np.float32(1e-6 * iso * iso))  # per channel
    noise = cv2.resize(_noise(rng, (math.ceil(height / 2), math.ceil(width / 2), 3)), (width, height))
    noise *= np.float32(0.5)
    noise += _rgb(_noise(rng, (height, width)) * np.float32(0.7))
    noise *= sigma
    scene += noise

    gains = np.asarray(_LIGHTS[light](rng), np.float32)  # the light the spot gave, as auto white balance left it
    scene[...] = cv2.transform(scene, np.diag(gains * np.float32(4095 / 4)))
    lut, tone = _tone_lut(rng)
    image = np.take(lut, np.clip(scene, 0, 4095, out=scene).astype(np.int32))
    saturation = float(rng.uniform(0.95, 1.25))  # phones like colour
    image = cv2.addWeighted(image, saturation, _rgb(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)), 1 - saturation, 0)
    sharpen = rng.uniform(0.0, 0.9)
    if sharpen > 0.05:  # phones oversharpen: halos along every edge
        soft = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 1.6) * scale)
        image = cv2.addWeighted(image, 1 + sharpen, soft, -sharpen, 0)
    pixels = cv2.convertScaleAbs(np.clip(image, 0, 1, out=image), alpha=255)
    quality = int(rng.integers(55, 93))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the JPEG")
    pixels = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    settings = {
        "vignette": vignette,
        "blur": blur,
        "blur_px": blur_px,
        "exposure_ev": ev,
        "iso": iso,
        **tone,
        "saturation": saturation,
        "sharpen": sharpen,
        "jpeg_quality": quality,
    }
    return pixels, settings


_LIGHT_COLOURS = {
    "tungsten": (1.0, 0.85, 0.65),
    "led": (0.95, 0.97, 1.0),
    "fluorescent": (0.92, 1.0, 0.92),
    "daylight": (1.0, 1.0, 1.0),
}
_LIGHT_ODDS = (0.35, 0.3, 0.15, 0.2)


# ------------------------------------------------------------------------------------------------------ the scene


def _check_painting(painting: np.ndarray) -> np.ndarray:
    painting = np.asarray(painting)
    if painting.ndim != 3 or painting.shape[2] != 3 or painting.dtype != np.uint8:
        raise ValueError(f"painting must be an (h, w, 3) uint8 RGB array, got {painting.dtype} {painting.shape}")
    if min(painting.shape[:2]) < 2:
        raise ValueError(f"painting is too small: {painting.shape}")
    return np.ascontiguousarray(painting)


def _photo_size(rng, long_side: int) -> tuple[int, int, str]:
    a, b = _pick(rng, _ASPECTS, _ASPECT_ODDS)
    if a >= b:
        return long_side, round(long_side * b / a), f"{a}:{b}"
    return round(long_side * a / b), long_side, f"{a}:{b}"


def _density(cam: _Camera, rect) -> float:
    """Photo pixels per plane unit where a rectangle is shown largest (its nearest edge)."""
    u0, v0, u1, v1 = rect
    p = cam.to_image(np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]))
    lengths = np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1)
    return float(max(lengths[0] / (u1 - u0), lengths[2] / (u1 - u0), lengths[1] / (v1 - v0), lengths[3] / (v1 - v0)))


def _neighbour(rng, canvas, plane: _Plane, framed_rect, light, side: int) -> bool:
    """Part of another framed painting, hung beside this one on the same line and cut off by the photo's edge."""
    cam = plane.cam
    pw, ph = plane.picture
    edge_x = 0.0 if side < 0 else cam.width - 1.0
    centre_y = float(cam.to_image(np.array([[pw / 2, ph / 2]]))[0, 1])
    edge_u = float(cam.to_plane(np.array([[edge_x, centre_y]]))[0, 0])
    gap = rng.uniform(25, 80) * plane.cm
    room = (edge_u - framed_rect[2]) if side > 0 else (framed_rect[0] - edge_u)
    if room < gap + 2 * plane.cm:
        return False  # the frame all but touches the photo's edge: nothing hangs in between
    nh = ph * rng.uniform(0.6, 1.3)
    nw = max(nh * rng.uniform(0.6, 1.5), (room - gap) * 1.3)  # wide enough to run out of the photo
    spec, mount_finish = _draw_frame(rng, nw, nh, plane.cm)
    top = ph / 2 - nh / 2 + rng.normal(0, 0.05) * ph
    left = framed_rect[2] + gap + spec.border if side > 0 else framed_rect[0] - gap - spec.border - nw
    density = _density(cam, (left, top, left + nw, top + nh))
    b = spec.border
    _drop_shadow(canvas, plane, (left - b, top - b, left + nw + b, top + nh + b), spec.depth, light, 0.4)
    view = np.array([0.0, 0.0, 1.0])
    frame = _frame_sprite(rng, spec, mount_finish, nw, nh, (0, 0, 0, 0), density, light, view, _lin((0.3,) * 3))
    if frame is not None:
        _paste(canvas, frame.shifted(left, top), plane)
    rgb = _neighbour_sprite(rng, nh, nw, min(density, 1.0) * 1.2)
    _paste(canvas, _Sprite.of(rgb, 1.0, (left, top, left + nw, top + nh)), plane)
    return True


def _label(rng, canvas, plane: _Plane, framed_rect, side: int) -> bool:
    """A small white wall label beside the frame, level with the picture's lower part."""
    width, height = rng.uniform(8, 15) * plane.cm, rng.uniform(5, 9) * plane.cm
    gap = rng.uniform(6, 25) * plane.cm
    pw, ph = plane.picture
    left = framed_rect[2] + gap if side > 0 else framed_rect[0] - gap - width
    top = ph - height - rng.uniform(0.0, 0.4) * ph
    rect = (left, top, left + width, top + height)
    density = _density(plane.cam, rect) * 1.2
    sprite = _Sprite.of(_label_sprite(rng, width, height, density), 1.0, rect)
    return _paste(canvas, sprite, plane) is not None


def render_snapshot(painting: np.ndarray, seed: int, long_side: int = 1280) -> Snapshot:
    """A phone photo of `painting` (an (h, w, 3) uint8 RGB array) hung in a gallery, drawn from `seed`: the same
    painting, seed and long side always give the identical photo, corners and settings."""
    picture = _check_painting(painting)
    if long_side < 64:
        raise ValueError(f"long_side must be at least 64, got {long_side}")
    rng = np.random.default_rng(seed)
    ph, pw = picture.shape[:2]
    width, height, aspect = _photo_size(rng, long_side)
    size_cm = math.exp(rng.uniform(math.log(30), math.log(200)))  # the painting's long side, as it hangs
    cm = max(pw, ph) / size_cm
    wall = _pick(rng, tuple(_WALLS), _WALL_ODDS)
    spec, mount_finish = _draw_frame(rng, pw, ph, cm)
    b = spec.border
    framed = (-b, -b, pw + b, ph + b)
    cam, geometry = _place_camera(rng, (width, height), long_side, framed, (pw / 2, ph / 2))
    # Light towards the ceiling spot: above (v < 0), out from the wall (z > 0), a little to one side.
    light = np.array([rng.uniform(-0.5, 0.5), -rng.uniform(0.4, 1.0), rng.uniform(0.5, 1.0)])
    light /= np.linalg.norm(light)

    u, v = cam.plane_maps()
    plane = _Plane(u, v, cm, cam, (float(pw), float(ph)), b)
    canvas = _WALLS[wall](rng, plane).astype(np.float32, copy=False)

    neighbour_side, label_side = (-1, 1) if rng.random() < 0.5 else (1, -1)
    neighbour = rng.random() < 0.3 and _neighbour(rng, canvas, plane, framed, light, neighbour_side)
    label = rng.random() < 0.4 and _label(rng, canvas, plane, framed, label_side)

    faces = _side_faces(spec, cam, pw, ph)
    outer = (framed[0] - faces[0], framed[1] - faces[1], framed[2] + faces[2], framed[3] + faces[3])
    _drop_shadow(canvas, plane, outer, spec.depth, light, rng.uniform(0.25, 0.6))
    view = cam.position - np.array([pw / 2, ph / 2, 0.0])
    view /= np.linalg.norm(view)
    edge = np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]])
    frame_density = _density(cam, framed) * 1.1
    frame = _frame_sprite(rng, spec, mount_finish, pw, ph, faces, frame_density, light, view, _TO_LINEAR[edge].mean(0))
    if frame is not None:
        _paste(canvas, frame, plane)
    placed = _paste(canvas, _picture_sprite(picture, pw, ph, _density(cam, (0, 0, pw, ph)), spec, light), plane)

    light_kind = _pick(rng, tuple(_LIGHT_COLOURS), _LIGHT_ODDS)
    spot, spot_strength = _spotlight(rng, plane, wall)
    canvas *= _rgb(spot)
    box, coverage = placed if placed is not None else (None, None)
    glare = _glare(rng, canvas, plane, box, coverage, np.asarray(_LIGHT_COLOURS[light_kind], np.float32))

    corners = cam.to_image(np.array([[0.0, 0.0], [pw, 0.0], [pw, ph], [0.0, ph]], np.float64))
    clutter, occlusion = _occluders(rng, canvas, corners)
    image, camera = _develop(rng, canvas, long_side / 1280, light_kind)

    settings = {
        "aspect": aspect,
        "width": width,
        "height": height,
        "size_cm": size_cm,
        "wall": wall,
        "spot_strength": spot_strength,
        "light": light_kind,
        "frame": spec.kind,
        "frame_finish": spec.finish,
        "mount_finish": mount_finish,
        "frame_frac": b / math.sqrt(pw * ph),
        "mount_frac": spec.mount / math.sqrt(pw * ph),
        "depth_cm": spec.depth / cm,
        **geometry,
        "distance_cm": cam.position[2] / cm,
        "glare": glare,
        "label": bool(label),
        "neighbour": bool(neighbour),
        **clutter,
        "occlusion": occlusion,
        **camera,
    }
    settings = {k: (float(x) if isinstance(x, (float, np.floating)) else x) for k, x in settings.items()}
    return Snapshot(image=image, corners=corners, settings=settings)
