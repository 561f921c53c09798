"""The painting in a photo: find its quadrilateral, then warp it to an upright rectangle (locate + rectify).

A visitor's photo shows a painting in a frame on a wall, at an angle. The model was trained on scans, where the
image IS the painting, so the serving path first finds the picture and cuts it out at its own aspect ratio. A scan
that already is the painting passes through unchanged, and so does any image where nothing is found with
confidence: the answer then says that the whole image was used.

Classical geometry with OpenCV (the well-kept library for it): colour edges at two scales -> contours, and the edge
components that the photo's edge cuts (a painting running out of the photo) -> convex quadrilaterals -> scored by
how much of their outline lies on an edge, how plausible their angles are for a rectangle seen at up to ~40°, their
size and how central they are. A painting is at least `MIN_AREA` of the photo, or `MIN_AREA_ON_WALL` where it
stands alone on a smooth wall; of several, one wholly in view is read before one that the photo's edge cuts. A
frame (and a mount) gives nested quadrilaterals around one picture: the innermost large one is the picture; where
the moulding leaves no such outline, the lines running along the frame's sides give it (`_picture_inside`).
Everything runs on a copy whose long side is `WORK_SIDE` pixels, so a 12-megapixel photo costs what a thumbnail
costs; the corners are scaled back.

Corners are always [x, y] in the input image's own pixels, clockwise from the top-left.

A photo of a screen (a painting shown on a monitor or a phone) gets a sentence more: its pixel grid and moiré can
mislead the answers (`artnet.data.screen`, read on the photo's own pixels; it never moves the corners).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from artnet.data.images import MAX_SERVING_ASPECT, MIN_SIDE
from artnet.data.screen import looks_like_a_screen

WORK_SIDE = 640  # long side of the copy the search runs on
MIN_AREA = 0.04  # a painting under 4 % of the photo is too easy to invent (a window in a scan, a label's box)...
MIN_AREA_ON_WALL = 0.015  # ...unless it stands alone on a smooth wall (seen from across the room): down to this
SCAN_AREA = 0.88  # a quadrilateral this close to the whole image: the image already is the painting
MIN_CONFIDENCE = 0.5  # below this, the whole image is used
IN_VIEW_SHARE = 0.2  # a painting wholly in view is read before a larger one the edge cuts, down to this share of it
MIN_INNER_SHARE = 0.3  # a picture inside a frame covers at least this share of the frame's area
MAX_NESTED_TURN = 8.0  # degrees a nested outline's side may turn from its frame's (the same perspective)
# The picture inside a frame whose outline no contour closes (`_picture_inside`): its edge lies within PICTURE_BAND
# of each side of the frame, at least MIN_INSET in, and its gradient peak stands EDGE_PEAK times the median.
PICTURE_BAND, MIN_INSET, EDGE_PEAK = 0.3, 0.015, 4.0
RIVAL = 0.5  # and at least this share of the strongest line near its side
MAX_CORNER_ANGLE = 40.0  # degrees a corner may differ from 90° (perspective up to ~30°, plus slack)
MAX_OUTPUT_SIDE = 1024  # the rectified picture's long side (the model resizes it anyway)
# A phone's main camera (~26 mm, 35 mm-equivalent): focal length / the photo's long side.
PHONE_FOCAL = 0.8
FOUND = "painting found in the photo and cut out"
WHOLE_IMAGE = (
    "no painting found apart from the whole image (a scan, or a photo it could not read): the whole image was used"
)
# What a visitor can do about a poor photo, added to the reason (the answer still comes, from what was read).
SMALL_AREA = 0.10  # a painting under this share of the photo gives the model few of its own pixels
EDGE_MARGIN = 0.02  # a corner this close to the photo's edge (share of its long side): the painting may be cut off
DARK_LEVEL, DARK_CONTRAST = 60.0, 12.0  # mean and standard deviation in grey levels: a dark, flat photo
TOO_SMALL = ": it fills only {share:.0%} of the photo, so the answers see few of its pixels: step closer"
CUT_OFF = ": it touches the photo's edge and may be cut off: step back so that all four corners are in view"
OTHERS = (
    " Other paintings are in view too: the one outlined was read (the largest near the centre, one wholly in view"
    " before one the photo's edge cuts); to read another, crop the photo to it or tap its four corners."
)
STEEP = " A painting may be there, seen at a steep angle: photograph it from the front."
SMALLER = " A painting may be there, but under {share:.1%} of the photo: step closer."
SMOOTH_WALL = 0.5  # a band around a quadrilateral at most this textured (against its inside) is a wall
TOO_DARK = " The photo is too dark or too flat to see a frame's edge (a dark frame on a dark wall?): add light."
SCREEN = (
    " This looks like a photo of a screen (its pixel grid or coloured moiré stripes show): they can mislead the"
    " answers; if you have the image file itself, upload it instead."
)


@dataclasses.dataclass(frozen=True)
class Location:
    """Where the painting is: `corners` (4 × [x, y], clockwise from the top-left, input pixels) or None when the
    whole image is used; `confidence` in [0, 1]; `reason` in words, for the answer."""

    corners: np.ndarray | None
    confidence: float
    reason: str

    def outline(self) -> list[list[float]] | None:
        """JSON-ready corners (or None): what `artnet predict` writes as `outline`."""
        return None if self.corners is None else [[round(float(x), 1), round(float(y), 1)] for x, y in self.corners]


def order_corners(points) -> np.ndarray:
    """Four points -> clockwise from the top-left (image coordinates: y grows downwards)."""
    points = np.asarray(points, dtype=np.float64).reshape(4, 2)
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    ordered = points[np.argsort(angles)]  # clockwise on screen, starting anywhere
    start = int(np.argmin(ordered.sum(axis=1)))  # the top-left has the smallest x + y
    return np.roll(ordered, -start, axis=0)


def _corner_angles(quad: np.ndarray) -> np.ndarray:
    angles = []
    for i in range(4):
        a, b, c = quad[i - 1], quad[i], quad[(i + 1) % 4]
        u, v = a - b, c - b
        cosine = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9)
        angles.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
    return np.asarray(angles)


def _edge_support(quad: np.ndarray, edges: np.ndarray, samples: int = 50) -> float:
    """The share of points along the quadrilateral's four sides that lie on (dilated) edges; the weakest side
    counts twice, so three strong sides and an imagined fourth do not pass."""
    height, width = edges.shape
    shares = []
    for i in range(4):
        t = np.linspace(0.05, 0.95, samples)[:, None]
        points = quad[i] * (1 - t) + quad[(i + 1) % 4] * t
        x = np.clip(points[:, 0].round().astype(int), 0, width - 1)
        y = np.clip(points[:, 1].round().astype(int), 0, height - 1)
        shares.append(float(np.mean(edges[y, x] > 0)))
    return (sum(shares) + min(shares)) / 5


def _texture(gray: np.ndarray) -> np.ndarray:
    """The photo's local contrast (grey-level morphological gradient, float32): what tells a smooth wall from a
    painting, read once per photo by `_textured_blobs` and `_surround_texture`."""
    return cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)


def _candidates(rgb: np.ndarray, gray: np.ndarray, texture: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Convex quadrilaterals of the contours of the edge maps at two scales, and the edge map they are scored on.
    The edges are colour edges (Canny on the three channels takes the strongest): a pale sky against a pale gilt
    frame differs in hue far more than in brightness."""
    quads, support = [], np.zeros_like(gray)
    for blur in (5, 9):
        smooth = cv2.GaussianBlur(rgb, (blur, blur), 0)
        # Thresholds from this photo's own gradients: a dim photo's frame edge is as much an edge as a bright one's.
        # (Every other pixel is plenty for a percentile, and a quarter of the cost.)
        dx, dy = (cv2.Sobel(smooth, cv2.CV_32F, *order)[::2, ::2] for order in ((1, 0), (0, 1)))
        magnitude = cv2.magnitude(dx, dy)
        magnitude = np.maximum(np.maximum(magnitude[..., 0], magnitude[..., 1]), magnitude[..., 2])
        high = max(30.0, float(np.percentile(magnitude, 90)))
        edges = cv2.dilate(cv2.Canny(smooth, 0.4 * high, high, L2gradient=True), np.ones((3, 3), np.uint8))
        support = np.maximum(support, edges)
        quads += _cut_by_the_edge(edges)
        # The photo's own edge closes the outline of a painting that runs out of the picture.
        closed = edges.copy()
        closed[[0, -1], :] = closed[:, [0, -1]] = 255
        contours, _ = cv2.findContours(closed, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            if cv2.contourArea(contour) < MIN_AREA_ON_WALL * gray.size * 0.5:
                continue
            hull = cv2.convexHull(contour)
            # A wide lens bends a frame's straight sides: allow a coarser polygon before giving up on it.
            for tolerance in (0.02, 0.04, 0.06):
                approx = cv2.approxPolyDP(hull, tolerance * cv2.arcLength(hull, True), True)
                if len(approx) == 4:
                    quads.append(order_corners(approx.reshape(4, 2)))
                    break
    support[[0, -1], :] = support[:, [0, -1]] = 255  # a side along the photo's edge is a cut, not a guess
    return quads + _textured_blobs(texture), support


def _cut_by_the_edge(edges: np.ndarray) -> list[np.ndarray]:
    """Quadrilaterals of the edge components that the photo's edge cuts: a frame running out of the photo is a
    "[" of edges whose hull is the part of the painting in view. Closing the edge map with the photo's border
    (as `_candidates` also does) merges such a frame with the border into one ring, whose contours lose it."""
    height, width = edges.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(edges)
    quads = []
    for label in range(1, count):
        x, y, box_width, box_height, _ = stats[label]
        touches = x <= 1 or y <= 1 or x + box_width >= width - 1 or y + box_height >= height - 1
        box = box_width * box_height
        if touches and MIN_AREA * 0.5 * edges.size <= box <= SCAN_AREA * edges.size:
            quad = _quad_of(cv2.findNonZero((labels == label).astype(np.uint8)))
            if quad is not None:
                quads.append(quad)
    return quads


def _quad_of(contour) -> np.ndarray | None:
    hull = cv2.convexHull(contour)
    for tolerance in (0.02, 0.04, 0.06, 0.08):
        approx = cv2.approxPolyDP(hull, tolerance * cv2.arcLength(hull, True), True)
        if len(approx) == 4:
            return order_corners(approx.reshape(4, 2))
    return None


def _textured_blobs(texture: np.ndarray) -> list[np.ndarray]:
    """Quadrilaterals of the large textured regions (`texture`: the photo's `_texture`): a wall is smooth, a
    painting and its frame are not. This finds paintings whose outline the edge maps cannot close (an ornate
    frame's broken edges, a bent lens)."""
    smooth = cv2.GaussianBlur(texture, (0, 0), 4)
    _, mask = cv2.threshold(smooth.astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    quads = []
    for contour in contours:
        if cv2.contourArea(contour) >= MIN_AREA * texture.size:
            quad = _quad_of(contour)
            if quad is not None:
                quads.append(quad)
    return quads


def _score(quad: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """(confidence in [0, 1], area share) of one candidate. Size is not judged here: MIN_AREA is the rule for the
    outermost outline (`_find`), and the picture inside a frame may be smaller."""
    height, width = edges.shape
    area = cv2.contourArea(quad.astype(np.float32)) / (height * width)
    deviation = np.abs(_corner_angles(quad) - 90).max()
    sides = [np.linalg.norm(quad[(i + 1) % 4] - quad[i]) for i in range(4)]
    across, down = (sides[0] + sides[2]) / 2, (sides[1] + sides[3]) / 2
    if deviation > MAX_CORNER_ANGLE or max(across, down) > MAX_SERVING_ASPECT * min(across, down):
        return 0.0, area  # too skewed, or a strip (a bench, a rope, a shelf) that is no painting to read
    support = _edge_support(quad, edges)
    centre = quad.mean(axis=0) / [width, height] - 0.5
    centrality = 1 - min(1.0, 1.6 * float(np.hypot(*centre)))
    shape = 1 - deviation / MAX_CORNER_ANGLE
    return float(support * (0.75 + 0.15 * centrality + 0.10 * shape)), area


def _surround_texture(quad: np.ndarray, texture: np.ndarray) -> float:
    """Mean `_texture` in a band just outside the quadrilateral over the mean inside it (photo pixels only).

    Low for a painting on a wall (the wall is smooth), near 1 for a rectangle inside a painting (a window, a
    doorway, a painted frame): the check that keeps a scan from being cut into."""
    inside = np.zeros(texture.shape, np.uint8)
    cv2.fillConvexPoly(inside, quad.round().astype(np.int32), 1)
    band = max(3, int(0.04 * max(texture.shape)))
    around = cv2.dilate(inside, np.ones((2 * band + 1, 2 * band + 1), np.uint8)) - inside
    if around.sum() < 0.02 * texture.size or inside.sum() == 0:
        return 0.0  # nothing of the surroundings is in the photo: the painting fills it
    return float(texture[around > 0].mean() / (texture[inside > 0].mean() + 1e-6))


def _inside(inner: np.ndarray, outer: np.ndarray) -> bool:
    contour = outer.astype(np.float32).reshape(-1, 1, 2)
    return all(cv2.pointPolygonTest(contour, (float(x), float(y)), True) >= -2 for x, y in inner)


def _parallel(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether each side of `inner` runs within MAX_NESTED_TURN degrees of the same side of `outer` (both clockwise
    from the top-left): a picture, its mount and its frame are seen under one perspective, so their outlines are
    nearly parallel, where a shape drawn inside the picture (or made by glare across it) need not be."""
    for i in range(4):
        a, b = inner[(i + 1) % 4] - inner[i], outer[(i + 1) % 4] - outer[i]
        cosine = abs(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)
        if np.degrees(np.arccos(min(1.0, cosine))) > MAX_NESTED_TURN:
            return False
    return True


def _frame_like(inner: np.ndarray, outer: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether the band between `outer` and `inner` is as wide on each side as on the opposite one (`_as_wide`, as
    `_picture_inside` asks of a frame's insets): a frame or a mount goes round its picture, where a
    rectangle painted in the picture (a window, a door, a block of colour) sits anywhere in it. A side of `outer`
    along the photo's edge (a frame running out of the photo) is a cut, so its pair is not compared."""
    height, width = shape
    insets, cut = [], []
    for i in range(4):
        a, b = outer[i], outer[(i + 1) % 4]
        normal = np.array([a[1] - b[1], b[0] - a[0]]) / (np.linalg.norm(b - a) + 1e-9)
        insets.append(float(np.mean([abs(np.dot(point - a, normal)) for point in (inner[i], inner[(i + 1) % 4])])))
        along_x = max(a[0], b[0]) <= 2 or min(a[0], b[0]) >= width - 3
        along_y = max(a[1], b[1]) <= 2 or min(a[1], b[1]) >= height - 3
        cut.append(along_x or along_y)
    slack = 0.01 * max(np.ptp(outer, axis=0))
    return all(cut[near] or cut[far] or _as_wide(insets[near], insets[far], slack) for near, far in ((0, 2), (1, 3)))


def _as_wide(near: float, far: float, slack: float) -> bool:
    """Whether two opposite sides of a frame (or mount) are about as wide: within a factor of 2, plus `slack` for a
    side a few pixels wide. The one rule `_frame_like` and `_picture_inside` both ask of a frame."""
    return max(near, far) <= 2 * min(near, far) + slack


def locate(rgb: np.ndarray) -> Location:
    """The painting's quadrilateral in an RGB photo (H, W, 3 uint8), or the whole image with the reason; a photo
    of a screen says so at the end of the reason."""
    location = _find(rgb)
    if looks_like_a_screen(rgb, location.corners):  # on the photo's own pixels, inside the picture if found
        return dataclasses.replace(location, reason=location.reason + SCREEN)
    return location


def _find(rgb: np.ndarray) -> Location:
    """The search itself, on the `WORK_SIDE` copy (see the module's docstring)."""
    height, width = rgb.shape[:2]
    scale = WORK_SIDE / max(height, width)
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    texture = _texture(gray)
    quads, edges = _candidates(small, gray, texture)
    scored = [(quad, *_score(quad, edges)) for quad in quads]
    # The outermost outline is at least MIN_AREA of the photo; one near the whole image is the image's own border
    # (or a scan's): nothing to cut out.
    outers = [item for item in scored if item[1] >= MIN_CONFIDENCE and MIN_AREA <= item[2] < SCAN_AREA]
    if not outers:  # a small painting seen from afar: well outlined, on a wall smooth around it (not in a scan)
        outers = [item for item in scored if _small_on_a_wall(item, texture)]
    if not outers:
        best = max((item[1] for item in scored if MIN_AREA <= item[2] < SCAN_AREA), default=0.0)
        return Location(None, best, WHOLE_IMAGE + _why_not_found(quads, edges, gray, texture))
    (outer, confidence, area), others = _the_one_photographed(outers, scored, texture)
    # A frame and a mount are quadrilaterals around the picture, nearly parallel to it and as wide on opposite
    # sides: take the innermost well-supported one (of any size: the picture of a small framed painting may be
    # under MIN_AREA of the photo while its frame is not).
    nested = [
        (quad, score, quad_area)
        for quad, score, quad_area in scored
        if quad_area >= MIN_INNER_SHARE * area
        and quad_area < 0.97 * area
        and score >= MIN_CONFIDENCE
        and _inside(quad, outer)
        and _parallel(quad, outer)
        and _frame_like(quad, outer, gray.shape)
    ]
    if nested:
        outer, confidence, area = min(nested, key=lambda item: item[2])
    # An ornate moulding breaks the picture's own outline into pieces no contour closes: look for it inside.
    outer = _picture_inside(gray, outer)
    area = cv2.contourArea(outer.astype(np.float32)) / gray.size
    return Location(outer / scale, confidence, FOUND + _advice(outer, area, gray.shape) + others)


def _the_one_photographed(outers: list, scored: list, texture: np.ndarray) -> tuple[tuple, str]:
    """Of the confident outlines (`outers`; `scored`: every candidate), the painting the visitor photographed, and
    OTHERS where other paintings are in view (else ""): the best-ranked (`_rank`), unless the photo's edge cuts it
    and another lies wholly in view (a small one alone on the wall too) with at least IN_VIEW_SHARE of its area. The
    visitor framed the one in view, and the cut one is its neighbour; a smaller thing beside it is a label."""
    chosen = max(outers, key=_rank)
    if _touches_edge(chosen[0], texture.shape):
        pool = outers + [item for item in scored if _small_on_a_wall(item, texture)]
        in_view = [item for item in pool if not _touches_edge(item[0], texture.shape) and _apart(item[0], chosen[0])]
        best = max(in_view, key=_rank, default=None)
        if best is not None and best[2] >= IN_VIEW_SHARE * chosen[2]:
            chosen, outers = best, pool  # and the cut one counts among the others in view
    return chosen, OTHERS if any(_apart(quad, chosen[0]) for quad, *_ in outers) else ""


def _small_on_a_wall(item: tuple[np.ndarray, float, float], texture: np.ndarray) -> bool:
    """Whether a (quadrilateral, confidence, area share) candidate is a small painting seen from afar: under
    MIN_AREA but at least MIN_AREA_ON_WALL, well outlined, on a wall smooth around it (so not a shape in a scan)."""
    quad, confidence, area = item
    return (
        confidence >= MIN_CONFIDENCE
        and MIN_AREA_ON_WALL <= area < MIN_AREA
        and _surround_texture(quad, texture) < SMOOTH_WALL
    )


def _rank(item: tuple[np.ndarray, float, float]) -> float:
    """How a (quadrilateral, confidence, area share) candidate ranks as the painting read: confident, then large."""
    return item[1] * (1 + 0.5 * item[2])


def _touches_edge(quad: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether a corner of `quad` lies on the photo's edge (within 2 pixels): the painting runs out of the photo."""
    height, width = shape
    return bool((quad.min(axis=0) <= 1).any() or (quad[:, 0] >= width - 2).any() or (quad[:, 1] >= height - 2).any())


def _apart(quad: np.ndarray, chosen: np.ndarray) -> bool:
    """Whether `quad` is another painting than `chosen`: it shares under a tenth of the smaller one's area (a frame,
    a mount or the picture of the chosen painting lie inside or around it)."""
    shared, _ = cv2.intersectConvexConvex(quad.astype(np.float32), chosen.astype(np.float32))
    smaller = min(cv2.contourArea(quad.astype(np.float32)), cv2.contourArea(chosen.astype(np.float32)))
    return shared < 0.1 * smaller


def _profile_peaks(profile: np.ndarray, start: int, stop: int, floor: float) -> list[int]:
    """Positions in [start, stop) where `profile` has a local maximum above `floor`."""
    return [
        i
        for i in range(max(1, start), min(len(profile) - 1, stop))
        if profile[i] > floor and profile[i] >= profile[i - 1] and profile[i] >= profile[i + 1]
    ]


def _picture_inside(gray: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """`quad` narrowed to the picture inside it where it is a frame: in the outline warped upright, a picture's
    edge is a line across most of each side, so the median gradient across the middle of the sides peaks there,
    as it does at the moulding's steps (ornament and the painting's own lines do not run the whole way). The
    innermost strong peak within PICTURE_BAND of each side is the picture's edge, if the four insets are a frame's:
    each at least MIN_INSET, and opposite sides within a factor of 2. Else `quad` unchanged."""
    tl, tr, br, bl = quad.astype(np.float32)
    width = int(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = int(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    if min(width, height) < 40:
        return quad
    upright = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), upright)
    flat = cv2.warpPerspective(gray, matrix, (width, height), flags=cv2.INTER_AREA).astype(np.float32)
    across = np.median(np.abs(cv2.Sobel(flat, cv2.CV_32F, 0, 1))[:, int(0.2 * width) : int(0.8 * width)], axis=1)
    down = np.median(np.abs(cv2.Sobel(flat, cv2.CV_32F, 1, 0))[int(0.2 * height) : int(0.8 * height)], axis=0)
    edges = []
    for profile, size in ((across, height), (down, width)):
        band = int(PICTURE_BAND * size)
        # A line is the picture's edge only if it stands out from the whole profile and rivals the strongest line
        # near that side (the moulding's steps): the painting's own lines are weaker than its edge against a frame.
        standing_out = EDGE_PEAK * (float(np.median(profile)) + 1e-3)
        near_floor = max(standing_out, RIVAL * float(profile[2:band].max()))
        far_floor = max(standing_out, RIVAL * float(profile[size - band : size - 2].max()))
        near = _profile_peaks(profile, 2, band, near_floor)
        far = _profile_peaks(profile, size - band, size - 2, far_floor)
        if not near or not far:
            return quad
        first, last = max(near), min(far)  # the innermost on each side
        insets = first / size, (size - 1 - last) / size
        if min(insets) < MIN_INSET or not _as_wide(*insets, slack=0.01):
            return quad
        edges.append((first, last))
    (top, bottom), (left, right) = edges
    inner = np.float32([[left, top], [right, top], [right, bottom], [left, bottom]])
    return cv2.perspectiveTransform(inner[None], np.linalg.inv(matrix))[0].astype(np.float64)


def _advice(picture: np.ndarray, area: float, shape: tuple[int, int]) -> str:
    """What the visitor could do better about a painting that was found (its `picture` outline and `area` share of
    the photo), or nothing to add. A frame cut by the photo's edge merges with it, so the picture's own corners
    within EDGE_MARGIN of the edge are what says "cut off"."""
    height, width = shape
    margin = EDGE_MARGIN * max(height, width)
    if (
        (picture.min(axis=0) <= margin).any()
        or (picture[:, 0] >= width - 1 - margin).any()
        or (picture[:, 1] >= height - 1 - margin).any()
    ):
        return CUT_OFF
    return TOO_SMALL.format(share=area) if area < SMALL_AREA else ""


def _why_not_found(quads: list[np.ndarray], edges: np.ndarray, gray: np.ndarray, texture: np.ndarray) -> str:
    """Why no painting was found, where the photo says: too dark and flat to see edges; or a quadrilateral on a
    smooth wall (so not a shape inside a scanned painting) that is too far from square for a painting seen from
    the front, or too small to read."""
    if float(gray.mean()) < DARK_LEVEL and float(gray.std()) < DARK_CONTRAST:
        return TOO_DARK
    advice = []  # the first that applies
    for quad in quads:
        area = cv2.contourArea(quad.astype(np.float32)) / gray.size
        if area >= SCAN_AREA or _surround_texture(quad, texture) >= SMOOTH_WALL:
            continue
        if _touches_edge(quad, gray.shape):
            continue  # a shape cut by the photo's edge: a scan's own region as often as a cut-off painting
        outlined = _edge_support(quad, edges) >= MIN_CONFIDENCE
        if outlined and area >= MIN_AREA and np.abs(_corner_angles(quad) - 90).max() > MAX_CORNER_ANGLE:
            advice.append(STEEP)
        elif outlined and area < MIN_AREA_ON_WALL:
            advice.append(SMALLER.format(share=MIN_AREA_ON_WALL))
    return advice[0] if advice else ""


def aspect_ratio(corners: np.ndarray, image_size: tuple[int, int]) -> float | None:
    """Width / height of the rectangle that a pinhole camera saw as `corners` (clockwise from the top-left), its
    principal point at the centre of an image of `image_size` (width, height); None where the view is too close
    to frontal for any shape to follow. Zhang & He, "Whiteboard scanning and image enhancement" (2007):
    the side lengths of a quadrilateral seen at an angle misstate its shape; the projective geometry does not."""
    centre = np.asarray(image_size, np.float64) / 2
    tl, tr, br, bl = (np.append(point - centre, 1.0) for point in np.asarray(corners, np.float64))
    m1, m2, m3, m4 = tl, tr, bl, br  # the paper's order: m1 m2 on top, m3 m4 below
    k2 = np.dot(np.cross(m1, m4), m3) / np.dot(np.cross(m2, m4), m3)
    k3 = np.dot(np.cross(m1, m4), m2) / np.dot(np.cross(m3, m4), m2)
    n2, n3 = k2 * m2 - m1, k3 * m3 - m1
    focal_squared = -(n2[0] * n3[0] + n2[1] * n3[1]) / (n2[2] * n3[2]) if abs(n2[2] * n3[2]) > 1e-12 else 0.0
    if not 0.1 < focal_squared / max(image_size) ** 2 < 10:
        # One pair of sides parallel in the photo (a camera held level, turned sideways: the usual case), or a
        # quadrilateral no camera could see: the focal length is not in the corners, so take a phone's.
        focal_squared = (PHONE_FOCAL * max(image_size)) ** 2
    ratio_squared = (n2[0] ** 2 + n2[1] ** 2 + focal_squared * n2[2] ** 2) / (
        n3[0] ** 2 + n3[1] ** 2 + focal_squared * n3[2] ** 2
    )
    return float(np.sqrt(ratio_squared))


def output_size(corners: np.ndarray, image_size=None, max_side: int = MAX_OUTPUT_SIDE) -> tuple[int, int]:
    """(width, height) of the upright picture, long side capped at `max_side`: the size of the sides as seen,
    reshaped to the camera's aspect ratio where `image_size` (width, height) lets it be recovered."""
    top, right, bottom, left = (np.linalg.norm(corners[(i + 1) % 4] - corners[i]) for i in range(4))
    width, height = (top + bottom) / 2, (left + right) / 2
    ratio = aspect_ratio(corners, image_size) if image_size is not None else None
    if ratio is not None and 0.2 < ratio < 5:  # keep the seen area, change only the shape
        area = width * height
        width, height = np.sqrt(area * ratio), np.sqrt(area / ratio)
    shrink = min(1.0, max_side / max(width, height))
    return max(1, round(width * shrink)), max(1, round(height * shrink))


def rectify(rgb: np.ndarray, corners, max_side: int = MAX_OUTPUT_SIDE) -> np.ndarray:
    """The quadrilateral `corners` of `rgb` warped to an upright rectangle at its own aspect ratio."""
    corners = order_corners(corners).astype(np.float32)
    width, height = output_size(corners, (rgb.shape[1], rgb.shape[0]), max_side)
    target = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    matrix = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def painting_of_photo(rgb: np.ndarray) -> tuple[np.ndarray, Location]:
    """(the pixels the model should see, where they came from): the rectified picture, or the image unchanged."""
    location = locate(rgb)
    if location.corners is None:
        return rgb, location
    painting = rectify(rgb, location.corners)
    height, width = painting.shape[:2]
    # A small upload's "painting" too small to read (it is the painting), or one that the perspective made a strip
    # serving would refuse: read the whole image, which the visitor sent, rather than refuse it for our cut.
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SERVING_ASPECT * min(height, width):
        shape = "too small" if min(height, width) < MIN_SIDE else "too elongated"
        reason = f"{WHOLE_IMAGE} (what looked like a painting in it is {width}x{height} px, {shape} to read)"
        if location.reason.endswith(SCREEN):
            reason += SCREEN
        return rgb, Location(None, location.confidence, reason)
    return painting, location
