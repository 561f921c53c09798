"""Naming a painting the collection holds: "this is *Title* by Author", only when the match is sure.

Naming is retrieval, not classification. A painting is planar, so a photo of an indexed painting and the index's
own image of it are related by a homography: local features (SIFT) matched between the two, and a homography
found by RANSAC among the matches, verify a candidate far more sharply than any global similarity can. A painting
the index does not hold finds few matches that agree on one homography, however alike its style. The index's
features are made once, at export (`IndexFeatures`, stored as the index's `features.npz`). The candidates
come from the model's own embedding (the similar-paintings index ranks them) or, without one, are every indexed
painting; the verdict is the number of RANSAC inliers, against a threshold chosen on validation photos
(`benchmarks/photo_naming.py`) so that photos of paintings outside the index are almost never named.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from artnet.data.atomic_files import write_atomically
from artnet.serving.files import ExportError, FileRefused, read_inside, shown_name

# Verified matches a painting needs to be named. On validation photos (benchmarks/photo_naming.py, 2026-12-06) no
# photo of a painting outside the index reached 8, and 96 % of indexed ones reached 12: 12 keeps a margin for
# photos and collections unlike the validation ones.
MIN_INLIERS = 12
RATIO = 0.75  # Lowe's ratio test: a match must be clearly better than the second best
FEATURE_SIDE = 480  # both sides are matched at about this size: thumbnails are ~300-400 px, photos far larger
DESCRIPTOR_WIDTH = 128  # SIFT
PHOTO_FEATURES = 800  # a photo's strongest SIFT features, matched per request
# An indexed painting keeps fewer, its strongest: features.npz holds ~140 bytes a feature (uint8 descriptors).
INDEX_FEATURES = 300
VOTE_MAX_FEATURES = 200_000  # an index up to this many descriptors (~700 paintings) also votes (see PaintingNamer)
MIN_SPREAD = 0.02  # the inliers' hull covers at least this share of the photo's feature span
MAX_SCALE = 5.0  # a photo's painting and its indexed image differ in size by at most this, per side
FEATURES_MAX_BYTES = 4 * 2**30


@dataclasses.dataclass(frozen=True)
class Naming:
    """The indexed painting a photo shows (`item`, its position in the index, `inliers` that agree on one
    homography), or nothing (`item` None) with the best count that was not enough."""

    item: int | None
    inliers: int
    candidates: int


def _gray(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = FEATURE_SIDE / max(height, width)
    if scale < 1:
        rgb = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class Features:
    """SIFT keypoints and descriptors of images, made once (the index's at export, a photo's per request)."""

    def __init__(self, count: int = PHOTO_FEATURES):
        self.count = count
        # One SIFT and one matcher per thread: the demo's requests and batch prediction's decoders name at once,
        # and OpenCV does not promise that one algorithm object may run in two threads.
        self._local = threading.local()

    @property
    def sift(self):
        if not hasattr(self._local, "sift"):
            self._local.sift = cv2.SIFT_create(nfeatures=self.count)
        return self._local.sift

    @property
    def matcher(self):
        if not hasattr(self._local, "matcher"):
            self._local.matcher = cv2.BFMatcher(cv2.NORM_L2)
        return self._local.matcher

    def of(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        keypoints, descriptors = self.sift.detectAndCompute(_gray(rgb), None)
        points = np.float32([keypoint.pt for keypoint in keypoints]).reshape(-1, 2)
        return points, descriptors

    def inliers(self, query, reference) -> int:
        """Matches between two images that one homography explains (0 when too few to try)."""
        (query_points, query_descriptors), (reference_points, reference_descriptors) = query, reference
        if query_descriptors is None or reference_descriptors is None or len(reference_descriptors) < 2:
            return 0
        pairs = self.matcher.knnMatch(query_descriptors, reference_descriptors, k=2)
        good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance]
        if len(good) < 8:
            return 0
        source = query_points[[match.queryIdx for match in good]]
        target = reference_points[[match.trainIdx for match in good]]
        homography, mask = cv2.findHomography(source, target, cv2.RANSAC, 5.0)
        if mask is None or not plausible(homography, source[mask.ravel() > 0], query_points):
            return 0
        return int(mask.sum())


def plausible(homography: np.ndarray, inliers: np.ndarray, points: np.ndarray) -> bool:
    """Whether a homography could be a painting seen again: the inliers spread over a real part of the photo (not
    a signature's few strokes or one corner of a frame) and the region they span maps to a convex quadrilateral at
    a scale between 1/MAX_SCALE and MAX_SCALE, not folded or collapsed. Chance matches between two different
    paintings that RANSAC still fits fail one of these far more often than true ones (benchmarks/photo_naming.py)."""
    if homography is None or len(inliers) < 4:
        return False
    span = np.ptp(points, axis=0).prod()
    hull = cv2.contourArea(cv2.convexHull(inliers.astype(np.float32)))
    if span <= 0 or hull < MIN_SPREAD * span:
        return False
    low, high = inliers.min(axis=0), inliers.max(axis=0)
    box = np.float32([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])
    mapped = cv2.perspectiveTransform(box[None], homography)[0]
    area, mapped_area = cv2.contourArea(box), cv2.contourArea(mapped)
    if not np.isfinite(mapped).all() or not cv2.isContourConvex(mapped.astype(np.float32)) or area <= 0:
        return False
    return 1 / MAX_SCALE**2 <= mapped_area / area <= MAX_SCALE**2


@dataclasses.dataclass(frozen=True)
class IndexFeatures:
    """The SIFT features of every indexed painting, in one table: `points` (M, 2) float32 (in the painting's own
    pixels at FEATURE_SIDE), `descriptors` (M, 128) uint8 (OpenCV's SIFT values are whole numbers 0-255: uint8
    loses nothing and takes a quarter of float32's size), `owners` (M,) the painting of each feature, `count`
    paintings."""

    points: np.ndarray
    descriptors: np.ndarray
    owners: np.ndarray
    count: int

    @classmethod
    def of_images(cls, images: Iterable[np.ndarray], features: Features | None = None) -> IndexFeatures:
        features = features or Features(INDEX_FEATURES)
        points, descriptors, owners, count = [], [], [], 0
        for item, rgb in enumerate(images):
            count += 1
            found_points, found = features.of(rgb)
            if found is None:
                continue
            points.append(found_points.astype(np.float32))
            descriptors.append(np.clip(np.rint(found), 0, 255).astype(np.uint8))
            owners.append(np.full(len(found), item, np.int32))
        return cls(
            np.concatenate(points) if points else np.zeros((0, 2), np.float32),
            np.concatenate(descriptors) if descriptors else np.zeros((0, DESCRIPTOR_WIDTH), np.uint8),
            np.concatenate(owners) if owners else np.zeros(0, np.int32),
            count,
        )

    def of_item(self, item: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(points, float32 descriptors) of one painting, as `Features.of` gives them."""
        if not hasattr(self, "_starts"):  # rows sorted by painting once, then each painting is a slice
            order = np.argsort(self.owners, kind="stable")
            object.__setattr__(self, "_order", order)
            object.__setattr__(self, "_starts", np.searchsorted(self.owners[order], np.arange(self.count + 1)))
        rows = self._order[self._starts[item] : self._starts[item + 1]]
        if not len(rows):
            return np.zeros((0, 2), np.float32), None
        return self.points[rows], self.descriptors[rows].astype(np.float32)

    def save(self, path: str | Path) -> None:
        """`path` (features.npz), written whole or not at all."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, points=self.points, descriptors=self.descriptors, owners=self.owners, count=np.int64(self.count)
        )
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, root: Path, path: Path, count: int) -> IndexFeatures:
        """`features.npz`, a regular file inside the export `root`, for an index of `count` paintings; or
        `ExportError` naming it. Read as data: no pickles, every array's type and shape checked, every owner a
        painting of the index."""
        name = shown_name(root, path)
        try:
            data = read_inside(root, path, FEATURES_MAX_BYTES)
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                points, descriptors = arrays["points"], arrays["descriptors"]
                owners, stored_count = arrays["owners"], int(arrays["count"])
        except FileRefused as error:
            raise ExportError(f"{name} in the export {root}: {error}") from None
        except (ValueError, OSError, KeyError, TypeError, EOFError) as error:
            raise ExportError(
                f"{name} in the export {root} is not a readable feature table ({type(error).__name__}: {error}): "
                "export the model again"
            ) from None
        problem = None
        if stored_count != count:
            problem = f"it describes {stored_count:,} paintings but the index holds {count:,}"
        elif points.dtype != np.float32 or points.ndim != 2 or points.shape[1:] != (2,):
            problem = f"its points are {points.dtype} {points.shape}, not float32 (M, 2)"
        elif descriptors.dtype != np.uint8 or descriptors.shape != (len(points), DESCRIPTOR_WIDTH):
            problem = f"its descriptors are {descriptors.dtype} {descriptors.shape}, not uint8 ({len(points)}, 128)"
        elif owners.shape != (len(points),) or not np.issubdtype(owners.dtype, np.integer):
            problem = f"its owners are {owners.dtype} {owners.shape}, not one integer per point"
        elif len(owners) and (owners.min() < 0 or owners.max() >= count):
            problem = f"it names paintings outside the index's 0-{count - 1}"
        elif not np.isfinite(points).all():
            problem = "its points hold NaN or infinite values"
        if problem:
            raise ExportError(f"{name} in the export {root} does not fit its index: {problem}; export the model again")
        return cls(points, descriptors, owners.astype(np.int32), count)


class PaintingNamer:
    """Names a photographed painting as one of the indexed images, or as none.

    The candidates it verifies by a homography come from two places: the caller's (the model's embedding puts
    the right painting of its index first for nearly every cut-out photo; the demo and `artnet predict` pass its
    nearest), and, for an index of at most VOTE_MAX_FEATURES descriptors, a vote: every indexed descriptor sits in
    one FLANN k-d forest, each of the photo's descriptors votes for the painting of its nearest indexed one, and
    the `shortlist` paintings with the most votes are verified too. A larger index (the main job's 5,385
    paintings hold 1.4 M descriptors: 0.7 GB of float32 in a forest, and a search that cost the demo most of its
    throughput) relies on the embedding's candidates alone."""

    def __init__(self, images: list[np.ndarray], min_inliers: int = MIN_INLIERS, shortlist: int = 5):
        """Over `images` (RGB arrays); `from_features` for an index's stored features."""
        self.features = Features()
        self._setup(IndexFeatures.of_images(images), min_inliers, shortlist)

    @classmethod
    def from_features(cls, table: IndexFeatures, min_inliers: int = MIN_INLIERS, shortlist: int = 5):
        namer = cls.__new__(cls)
        namer.features = Features()
        namer._setup(table, min_inliers, shortlist)
        return namer

    def _setup(self, table: IndexFeatures, min_inliers: int, shortlist: int) -> None:
        self.table, self.min_inliers, self.shortlist = table, min_inliers, shortlist
        self._forest = None
        self._forest_lock = threading.Lock()  # the k-d forest is searched by one thread at a time
        if 0 < len(table.descriptors) <= VOTE_MAX_FEATURES:
            self._forest = cv2.flann_Index(table.descriptors.astype(np.float32), {"algorithm": 1, "trees": 4})

    def __len__(self) -> int:
        return self.table.count

    def _voted(self, descriptors: np.ndarray | None) -> list[int]:
        if descriptors is None or self._forest is None or len(self.table.owners) < 2:
            return []
        with self._forest_lock:
            neighbours, distances = self._forest.knnSearch(descriptors.astype(np.float32), 2, params={"checks": 64})
        good = distances[:, 0] < (RATIO**2) * distances[:, 1]  # FLANN gives squared L2 distances
        votes = np.bincount(self.table.owners[neighbours[good, 0]], minlength=len(self))
        return [int(item) for item in np.argsort(-votes, kind="stable")[: self.shortlist] if votes[item] > 0]

    def name(self, painting: np.ndarray, candidates=None) -> Naming:
        """The indexed painting that `painting` (the rectified photo, or the whole image) shows. `candidates`
        (index positions, e.g. the embedding's nearest) are verified beside the shortlist of the votes."""
        query = self.features.of(painting)
        candidates = [int(item) for item in candidates or () if 0 <= int(item) < len(self)]
        shortlist = list(dict.fromkeys([*self._voted(query[1]), *candidates]))
        counts = [(self.features.inliers(query, self.table.of_item(item)), item) for item in shortlist]
        best, item = max(counts, default=(0, None))
        return Naming(item if best >= self.min_inliers else None, best, len(counts))
