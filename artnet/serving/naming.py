"""Naming a painting the collection holds: "this is *Title* by Author", only when the match is sure.

Naming is retrieval, not classification. A painting is planar, so a photo of an indexed painting and the index's
own image of it are related by a homography: local features (SIFT) matched between the two, and a homography
found by RANSAC among the matches, verify a candidate far more sharply than any global similarity can. A painting
the index does not hold finds few matches that agree on one homography, however alike its style. The candidates
come from the model's own embedding (the similar-paintings index ranks them) or, without one, are every indexed
painting; the verdict is the number of RANSAC inliers, against a threshold chosen on validation photos
(`benchmarks/photo_naming.py`) so that photos of paintings outside the index are almost never named.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# The lowest count that named at most 1 % of validation photos of outside paintings (benchmarks/photo_naming.py).
MIN_INLIERS = 12
RATIO = 0.75  # Lowe's ratio test: a match must be clearly better than the second best
FEATURE_SIDE = 480  # both sides are matched at about this size: thumbnails are ~300-400 px, photos far larger


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
    """SIFT keypoints and descriptors of images, made once (the index's at load, a photo's per request)."""

    def __init__(self):
        self.sift = cv2.SIFT_create(nfeatures=800)
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

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
        _, mask = cv2.findHomography(source, target, cv2.RANSAC, 5.0)
        return 0 if mask is None else int(mask.sum())


class PaintingNamer:
    """Names a photographed painting as one of the indexed images, or as none.

    Every indexed descriptor sits in one FLANN k-d forest, so a photo costs one search however large the index:
    each of its descriptors votes for the painting of its nearest indexed descriptor, and only the `shortlist`
    paintings with the most votes are verified by a homography."""

    def __init__(self, images: list[np.ndarray], min_inliers: int = MIN_INLIERS, shortlist: int = 5):
        self.features = Features()
        self.index = [self.features.of(image) for image in images]
        self.min_inliers, self.shortlist = min_inliers, shortlist
        owners = [np.full(len(d), i) for i, (_, d) in enumerate(self.index) if d is not None]
        stacked = [d for _, d in self.index if d is not None]
        self._owners = np.concatenate(owners) if owners else np.zeros(0, int)
        self._forest = None
        if stacked:
            self._forest = cv2.flann_Index(np.vstack(stacked).astype(np.float32), {"algorithm": 1, "trees": 4})

    def __len__(self) -> int:
        return len(self.index)

    def _voted(self, descriptors: np.ndarray | None) -> list[int]:
        if descriptors is None or self._forest is None or len(self._owners) < 2:
            return []
        neighbours, distances = self._forest.knnSearch(descriptors.astype(np.float32), 2, params={"checks": 64})
        good = distances[:, 0] < (RATIO**2) * distances[:, 1]  # FLANN gives squared L2 distances
        votes = np.bincount(self._owners[neighbours[good, 0]], minlength=len(self.index))
        return [int(item) for item in np.argsort(-votes, kind="stable")[: self.shortlist] if votes[item] > 0]

    def name(self, painting: np.ndarray, candidates=None) -> Naming:
        """The indexed painting that `painting` (the rectified photo, or the whole image) shows. `candidates`
        (index positions, e.g. the embedding's nearest) are verified beside the shortlist of the votes."""
        query = self.features.of(painting)
        shortlist = list(dict.fromkeys([*self._voted(query[1]), *(candidates or [])]))
        counts = [(self.features.inliers(query, self.index[item]), item) for item in shortlist]
        best, item = max(counts, default=(0, None))
        return Naming(item if best >= self.min_inliers else None, best, len(counts))
