"""How well a painting was found in a photo: corner error as a share of its diagonal, and area overlap (IoU).

Both take quadrilaterals as four [x, y] corners in the photo's pixels. The corner error pairs each true corner
with the found corner of the same place (both clockwise from the top-left) and reports the mean distance over the
four, divided by the true quadrilateral's longer diagonal: 5 % is a sliver of frame, 20 % is another object.
"""

from __future__ import annotations

import cv2
import numpy as np


def corner_error(found, truth) -> float:
    """Mean distance between matching corners, as a fraction of the true quadrilateral's longer diagonal."""
    found, truth = np.asarray(found, np.float64).reshape(4, 2), np.asarray(truth, np.float64).reshape(4, 2)
    diagonal = max(np.linalg.norm(truth[2] - truth[0]), np.linalg.norm(truth[3] - truth[1]))
    return float(np.linalg.norm(found - truth, axis=1).mean() / diagonal)


def _area(polygon: np.ndarray) -> float:
    return float(abs(cv2.contourArea(polygon.astype(np.float32))))


def polygon_iou(first, second) -> float:
    """Intersection over union of two convex polygons (any number of corners)."""
    first, second = (np.asarray(p, np.float32).reshape(-1, 2) for p in (first, second))
    overlap, _ = cv2.intersectConvexConvex(first, second)
    union = _area(first) + _area(second) - overlap
    return float(overlap / union) if union > 0 else 0.0


def share_inside(inner, outer) -> float:
    """The share of `inner`'s area that lies inside `outer` (1.0: wholly inside)."""
    inner, outer = (np.asarray(p, np.float32).reshape(-1, 2) for p in (inner, outer))
    area = _area(inner)
    overlap, _ = cv2.intersectConvexConvex(inner, cv2.convexHull(outer).reshape(-1, 2))
    return float(overlap / area) if area > 0 else 0.0
