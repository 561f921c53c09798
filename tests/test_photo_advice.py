"""Bad photos get a clear word: what went wrong, and what the visitor can do, beside the answer (never a crash)."""

import cv2
import numpy as np
import pytest

from artnet.data.photo import FOUND, OTHERS, WHOLE_IMAGE, locate
from artnet.testing.gallery_photo import made_up_painting


def wall(level=170, height=900, width=1200):
    rng = np.random.default_rng(0)
    return np.clip(level + rng.normal(0, 3, (height, width, 3)), 0, 255).astype(np.uint8)


def framed(painting, border=14, colour=(60, 40, 20)):
    height, width = painting.shape[:2]
    out = np.full((height + 2 * border, width + 2 * border, 3), colour, np.uint8)
    out[border:-border, border:-border] = painting
    return out


def hung(photo, picture, x, y):
    """`picture` on `photo` with its top-left at (x, y), cut where it runs out of the photo."""
    height, width = picture.shape[:2]
    x1, y1 = min(photo.shape[1], x + width), min(photo.shape[0], y + height)
    photo[y:y1, x:x1] = picture[: y1 - y, : x1 - x]
    return photo


def at_steep_angle(picture, corners):
    source = np.float32([[0, 0], [picture.shape[1], 0], [picture.shape[1], picture.shape[0]], [0, picture.shape[0]]])
    matrix = cv2.getPerspectiveTransform(source, np.float32(corners))
    photo = wall()
    mask = cv2.warpPerspective(np.ones(picture.shape[:2], np.float32), matrix, photo.shape[1::-1])[..., None]
    return (photo * (1 - mask) + cv2.warpPerspective(picture, matrix, photo.shape[1::-1]) * mask).astype(np.uint8)


PAINTING = framed(made_up_painting(1, 300, 240))


@pytest.mark.parametrize(
    "photo, found, says",
    [
        (hung(wall(), framed(made_up_painting(1, 520, 420)), 350, 150), True, None),
        (hung(wall(), PAINTING, 450, 250), True, "fills only 7% of the photo"),
        (hung(wall(), PAINTING, 930, 250), True, "may be cut off"),  # its frame reaches the photo's edge
        (hung(wall(), PAINTING, 1000, 250), True, "may be cut off"),  # a third of it out of the photo, right
        (hung(wall(), PAINTING, 450, 720), True, "may be cut off"),  # and at the bottom
        (hung(wall(), framed(made_up_painting(1, 180, 150), 8), 500, 350), True, "fills only 3% of the photo"),
        (
            hung(wall(), framed(made_up_painting(1, 100, 80), 6), 500, 350),
            False,
            "under 1.5% of the photo: step closer",
        ),
        (at_steep_angle(PAINTING, [[400, 30], [560, 360], [560, 520], [400, 870]]), False, "steep angle"),
        (
            hung(wall(8), framed((made_up_painting(2, 300, 240) * 0.08).astype(np.uint8), colour=(6, 6, 6)), 450, 250),
            False,
            "too dark or too flat",
        ),
        (wall(), False, None),  # no painting in view: said, and nothing more to advise
    ],
    ids=[
        "good",
        "small",
        "at the edge",
        "runs out right",
        "runs out below",
        "far",
        "tiny",
        "steep",
        "black on black",
        "empty wall",
    ],
)
def test_a_poor_photo_says_what_went_wrong_and_what_to_do(photo, found, says):
    location = locate(photo)
    assert (location.corners is not None) == found
    assert location.reason.startswith(FOUND if found else WHOLE_IMAGE)
    if says is None:
        assert location.reason == (FOUND if found else WHOLE_IMAGE)
    else:
        assert says in location.reason, location.reason


def test_a_small_rectangle_inside_a_scan_is_not_taken_for_a_painting_seen_from_afar():
    """Under MIN_AREA, a well-outlined quadrilateral counts only on a smooth wall: the same small framed picture
    that is found on a wall ("far", above) is left alone inside a busy scan, which is read whole."""
    scan = made_up_painting(7, 900, 1200)
    inside = hung(scan.copy(), framed(made_up_painting(1, 180, 150), 8), 500, 350)
    assert locate(inside).reason == WHOLE_IMAGE


def test_a_clean_scan_gets_no_advice():
    scan = made_up_painting(7, 600, 480)
    assert locate(scan).reason == WHOLE_IMAGE


def test_a_small_scan_whose_found_painting_is_too_small_to_read_is_read_whole():
    from artnet.data.photo import painting_of_photo

    # A 160 px thumbnail with a small framed rectangle inside: cutting it out would leave under 32 px a side.
    thumb = hung(wall(170, 120, 160), framed(made_up_painting(3, 20, 24), border=3), 60, 40)
    painting, location = painting_of_photo(thumb)
    assert locate(thumb).corners is not None  # something was found...
    assert painting is thumb and location.corners is None  # ...and the whole image read instead
    assert location.reason.startswith(WHOLE_IMAGE) and "too small to read" in location.reason


def test_with_two_paintings_in_view_the_larger_central_one_is_read_and_the_answer_says_so():
    """Several paintings in view: the largest central one is outlined, and the answer says that others are there
    and how to read one of them instead. One painting alone (its frame and picture nested) says nothing of it."""
    photo = hung(wall(), framed(made_up_painting(1, 420, 340)), 380, 200)
    truth_x = 380
    photo = hung(photo, framed(made_up_painting(2, 260, 220)), 40, 300)  # a smaller neighbour, near the edge
    location = locate(photo)
    assert location.corners is not None and location.corners[:, 0].min() >= truth_x - 5
    assert OTHERS in location.reason
    alone = locate(hung(wall(), framed(made_up_painting(1, 420, 340)), 380, 200))
    assert alone.corners is not None and OTHERS not in alone.reason


def test_a_painting_wholly_in_view_is_read_before_a_larger_neighbour_the_photo_s_edge_cuts():
    """The visitor framed the painting in full view; a larger one running out of the photo is its neighbour. The one
    in view is read, and the answer says that others are there. Alone, a painting the edge cuts is still read."""
    neighbour = framed(made_up_painting(3, 560, 500))
    photo = hung(hung(wall(), framed(made_up_painting(1, 300, 260)), 200, 300), neighbour, 820, 150)  # runs out right
    location = locate(photo)
    assert location.corners is not None and location.corners[:, 0].max() < 560  # the painting at x 200-528
    assert OTHERS in location.reason
    cut_alone = locate(hung(wall(), neighbour, 820, 150))
    assert cut_alone.corners is not None and cut_alone.corners[:, 0].min() > 800
