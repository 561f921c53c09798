"""The photo step (locate + rectify) and the gallery-photo renderer it is measured with.

Paintings here are made up (`made_up_painting`: a colour field with strokes), never the shared images, so these
run everywhere.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from artnet.data.photo import WHOLE_IMAGE, locate, order_corners, painting_of_photo, rectify
from artnet.evaluation.localisation import corner_error, polygon_iou, share_inside
from artnet.testing.gallery_photo import made_up_painting, render_gallery_photo


def test_the_renderer_is_a_pure_function_of_painting_and_seed():
    painting = made_up_painting(0)
    first, again, other = (render_gallery_photo(painting, seed) for seed in (3, 3, 4))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.corners, again.corners)
    assert not np.array_equal(first.image, other.image)
    height, width = first.image.shape[:2]
    inside = (first.corners >= 0).all() and (first.corners[:, 0] < width).all() and (first.corners[:, 1] < height).all()
    assert inside, "the picture is in view"
    assert share_inside(first.corners, first.frame_corners) > 0.99, "the picture lies inside its frame"


def test_corners_are_ordered_clockwise_from_the_top_left():
    square = np.float32([[10, 10], [90, 12], [88, 95], [8, 90]])
    for shift in range(4):
        assert np.array_equal(order_corners(np.roll(square, shift, axis=0)), square)
    assert np.array_equal(order_corners(square[::-1]), square)


def test_rectify_undoes_a_perspective_and_keeps_the_paintings_aspect_ratio():
    painting = made_up_painting(1, height=200, width=300)
    source = np.float32([[0, 0], [300, 0], [300, 200], [0, 200]])
    # A pinhole camera (principal point at the photo's centre) turned 35° about the vertical axis.
    turn = cv2.Rodrigues(np.float64([0, np.radians(35), 0]))[0]
    plane = np.float64([[-150, -100, 0], [150, -100, 0], [150, 100, 0], [-150, 100, 0]]) @ turn.T + [0, 0, 500]
    seen = np.float32(600 * plane[:, :2] / plane[:, 2:] + [280, 220])
    photo = cv2.warpPerspective(painting, cv2.getPerspectiveTransform(source, seen), (560, 440))
    upright = rectify(photo, seen)
    height, width = upright.shape[:2]
    assert abs(width / height - 1.5) < 0.2
    back = cv2.resize(upright, (300, 200), interpolation=cv2.INTER_AREA)
    assert np.abs(back.astype(int) - painting.astype(int)).mean() < 20


def test_a_painting_in_a_rendered_photo_is_found_at_its_corners():
    errors = []
    for seed in range(12):
        photo = render_gallery_photo(made_up_painting(seed), seed=seed, difficulty="easy")
        location = locate(photo.image)
        errors.append(1.0 if location.corners is None else corner_error(location.corners, photo.corners))
    errors = np.asarray(errors)
    # The picture, not the frame around it, within 5 % of its diagonal for most; never something elsewhere.
    assert np.mean(errors <= 0.05) >= 0.6, errors.round(3)
    assert np.mean(errors <= 0.25) >= 0.8, errors.round(3)


def test_a_clean_scan_passes_through_unchanged():
    for seed in range(5):
        painting = made_up_painting(seed)
        pixels, location = painting_of_photo(painting)
        assert pixels is painting and location.corners is None and location.reason == WHOLE_IMAGE
        assert location.outline() is None


def test_a_photo_with_no_painting_uses_the_whole_image_and_says_so():
    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal(200, 4, (480, 640, 3)), 0, 255).astype(np.uint8)
    pixels, location = painting_of_photo(wall)
    assert pixels is wall and location.corners is None and "whole image" in location.reason


def _hang(picture: np.ndarray, border: int, colour, at: tuple[int, int], wall_level: int = 175) -> tuple:
    """`picture` in a flat frame `border` px wide on a plain 1200 x 900 wall, its top-left at `at`; (photo, the
    picture's corners)."""
    photo = np.full((900, 1200, 3), wall_level, np.uint8)
    height, width = picture.shape[:2]
    x, y = at
    photo[y - border : y + height + border, x - border : x + width + border] = colour
    photo[y : y + height, x : x + width] = picture
    return photo, np.float64([[x, y], [x + width, y], [x + width, y + height], [x, y + height]])


def test_a_small_framed_painting_is_cut_at_its_picture_not_its_frame():
    """The frame sets the size rule: a picture under MIN_AREA of the photo inside a frame over it is the picture."""
    from artnet.data.photo import MIN_AREA

    photo, truth = _hang(made_up_painting(5, 170, 140), border=40, colour=(150, 110, 50), at=(520, 360))
    assert 170 * 140 / photo[..., 0].size < MIN_AREA < 250 * 220 / photo[..., 0].size  # picture under, frame over
    location = locate(photo)
    assert location.corners is not None and corner_error(location.corners, truth) < 0.02


def test_a_skewed_shape_inside_a_mounted_picture_is_not_taken_for_the_picture():
    """Nested outlines share the frame's perspective: a bright skewed quadrilateral drawn across the picture (as
    glare or a painted shape makes) is not its outline, however well its edges show."""
    picture = made_up_painting(6, 400, 320)
    kite = np.int32([[60, 90], [250, 40], [290, 330], [90, 250]])
    cv2.fillConvexPoly(picture, kite, (250, 250, 250))
    photo, truth = _hang(picture, border=45, colour=(238, 236, 230), at=(440, 250), wall_level=120)
    location = locate(photo)
    assert location.corners is not None and corner_error(location.corners, truth) < 0.02


def test_inside_a_frame_outline_the_picture_s_edge_is_found_and_a_bare_painting_is_left_whole():
    """`_picture_inside`: given a frame's outline, the picture's own edge (a line along each side, where the
    moulding's ornament breaks any contour); given a painting's own outline, nothing to narrow."""
    from artnet.data.photo import _picture_inside

    rng = np.random.default_rng(0)
    photo = np.full((600, 800), 160, np.uint8)
    photo[100:500, 150:650] = np.clip(rng.normal(150, 45, (400, 500)), 0, 255)  # an ornate moulding: busy texture
    photo[100:500, 150:650][::7] = 230  # its ribs, across the whole frame
    photo[160:440, 210:590] = cv2.cvtColor(made_up_painting(8, 280, 380), cv2.COLOR_RGB2GRAY)
    frame = np.float64([[150, 100], [649, 100], [649, 499], [150, 499]])
    picture = np.float64([[210, 160], [590, 160], [590, 440], [210, 440]])
    assert corner_error(_picture_inside(photo, frame), picture) < 0.01
    bare = np.float64([[210, 160], [589, 160], [589, 439], [210, 439]])
    assert np.array_equal(_picture_inside(photo, bare), bare)


def test_a_strip_on_the_wall_is_no_painting_and_a_strip_cut_out_is_never_served(monkeypatch):
    """A bench, a rope or a shelf is a long rectangle on the wall: never taken for the painting. And where the
    perspective makes a found outline a strip serving would refuse (over 5:1), the whole photo is read instead:
    the visitor is never refused for the photo step's cut."""
    from artnet.data import photo
    from artnet.data.images import check_shape

    wall = np.full((900, 1200, 3), 170, np.uint8)
    wall[600:660, 100:1100] = (40, 30, 25)  # a 1000 x 60 dark bench
    assert locate(wall).corners is None
    strip = photo.Location(np.float64([[100, 600], [1100, 600], [1100, 660], [100, 660]]), 0.9, photo.FOUND)
    monkeypatch.setattr(photo, "locate", lambda rgb: strip)
    pixels, location = painting_of_photo(wall)
    assert pixels is wall and location.corners is None
    assert location.reason.startswith(WHOLE_IMAGE) and "too elongated to read" in location.reason
    check_shape(width=pixels.shape[1], height=pixels.shape[0])  # what serving reads is readable


def test_the_outline_is_json_ready_in_the_photos_own_pixels():
    photo = render_gallery_photo(made_up_painting(2), seed=2, difficulty="easy")
    location = locate(photo.image)
    assert location.corners is not None
    outline = location.outline()
    assert len(outline) == 4 and all(isinstance(v, float) for corner in outline for v in corner)
    assert polygon_iou(outline, photo.corners) > 0.8


@pytest.mark.parametrize("shape", [(40, 40, 3), (2000, 60, 3)])
def test_odd_shapes_do_not_crash(shape):
    image = np.full(shape, 128, np.uint8)
    pixels, location = painting_of_photo(image)
    assert pixels.shape == shape and location.corners is None


# --- the photo step in serving: the predictor and `artnet predict` ----------------------------------------


@pytest.fixture(scope="module")
def predictor():
    from artnet.models.artnet import ArtNet
    from artnet.serving.predictor import Predictor

    return Predictor(ArtNet(backbone="tiny", backbone_weights=None, image_size=32))


def _jpeg(image: np.ndarray, path):
    from PIL import Image

    Image.fromarray(image).save(path, quality=92)
    return path


def test_a_large_photo_is_answered_from_its_painting_with_the_outline_in_its_own_pixels(predictor, tmp_path):
    """A 2400 px JPEG is decoded at a reduced size (JPEG draft): the outline must still be in the photo's pixels."""
    from artnet.serving.predictor import Predictor

    photo = render_gallery_photo(made_up_painting(2), seed=2, difficulty="easy", long_side=2400)
    path = _jpeg(photo.image, tmp_path / "photo.jpg")
    prediction = predictor.predict(path)
    assert prediction["outline"] is not None and "found" in prediction["found"]
    assert corner_error(prediction["outline"], photo.corners) < 0.05
    # The model reads (nearly) the same pixels from the photo as from the painting itself: the photo step's point.
    scan = predictor.predict(made_up_painting(2))
    assert scan["outline"] is None
    from_photo = predictor.prepare(path).astype(float)
    from_scan = predictor.prepare(made_up_painting(2)).astype(float)
    from_whole_photo = Predictor(predictor.model, locate_painting=False).prepare(path).astype(float)
    assert np.abs(from_photo - from_scan).mean() < 0.5 * np.abs(from_whole_photo - from_scan).mean()


def test_whole_image_takes_a_photo_as_it_is(predictor, tmp_path):
    from artnet.models.artnet import ArtNet
    from artnet.serving.predictor import Predictor

    photo = render_gallery_photo(made_up_painting(2), seed=2, difficulty="easy")
    whole = Predictor(predictor.model, locate_painting=False).predict(photo.image)
    assert whole["outline"] is None and "whole image" in whole["found"]
    assert isinstance(predictor.model, ArtNet)


def test_artnet_predict_writes_outlines_and_neutralises_formula_cells(predictor, tmp_path, monkeypatch):
    import csv
    import json

    from artnet import cli

    photos = tmp_path / "photos"
    photos.mkdir()
    photo = render_gallery_photo(made_up_painting(3), seed=3, difficulty="easy")
    _jpeg(photo.image, photos / "=HYPERLINK(1).jpg")
    _jpeg(made_up_painting(4), photos / "scan.jpg")
    predictor.model.save(tmp_path / "model.keras")
    out = tmp_path / "answers.csv"
    monkeypatch.chdir(photos)  # relative names: the path cell then starts with the file name's own "="
    files = ["=HYPERLINK(1).jpg", "scan.jpg"]
    assert cli.main(["predict", "--model", str(tmp_path / "model.keras"), *files, "--out", str(out)]) == 0
    rows = {Path(row["path"]).name: row for row in csv.DictReader(out.open())}
    formula = next(row for name, row in rows.items() if "HYPERLINK" in name)
    assert formula["path"].startswith("'="), "a spreadsheet would run the file name as a formula"
    assert corner_error(json.loads(formula["outline"]), photo.corners) < 0.05
    assert rows["scan.jpg"]["outline"] == ""
    jsonl = tmp_path / "answers.jsonl"
    argv = ["predict", "--model", str(tmp_path / "model.keras"), str(photos), "--out", str(jsonl), "--whole-image"]
    assert cli.main(argv) == 0
    assert all(json.loads(line)["outline"] is None for line in jsonl.read_text().splitlines())


def test_a_nan_year_is_written_as_unknown_never_as_invalid_json(tmp_path, monkeypatch):
    import json

    from artnet import labels
    from artnet.serving.batch_predict import run_batch_prediction

    class NanYearPredictor:
        """What a year head that went wrong answers: every class head fine, the year NaN."""

        heads, year_head = labels.HEADS, True

        def painting(self, data):
            return np.zeros((32, 32, 3), np.uint8), {"outline": None, "found": "whole image"}

        def fit_pixels(self, painting):
            return painting

        def predict_pixels(self, pixels, wheres, top_k=None):
            ranked = {head: [(labels.VOCABULARIES[head][0], 1.0)] for head in labels.HEADS}
            return [{**ranked, labels.YEAR: (float("nan"), float("nan")), **where} for where in wheres]

    from artnet.serving import batch_predict

    _jpeg(made_up_painting(1), tmp_path / "a.jpg")
    out = tmp_path / "answers.jsonl"
    monkeypatch.setattr(batch_predict, "Predictor", NanYearPredictor)  # a Predictor is used as it is given
    assert run_batch_prediction(NanYearPredictor(), [str(tmp_path / "a.jpg")], str(out)) == 0
    record = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert record[labels.YEAR] is None and record["year_sigma"] is None


def test_a_pale_picture_in_a_pale_gilt_frame_is_told_apart_by_its_hue():
    """A pale sky against a pale gold frame: nearly the same grey, far apart in colour. The edges are colour edges,
    so the picture is found inside its frame, not the frame taken for it."""
    sky = (np.float32([205, 220, 250]) * 0.85 + made_up_painting(9, 300, 240) * 0.15).astype(np.uint8)
    gold = (238, 212, 150)
    grey = cv2.cvtColor(np.uint8([[sky.mean(axis=(0, 1)), gold]]), cv2.COLOR_RGB2GRAY)[0]
    assert abs(int(grey[0]) - int(grey[1])) < 12  # the grey image hardly sees the picture's edge
    photo, truth = _hang(sky, border=45, colour=gold, at=(430, 280), wall_level=90)
    location = locate(photo)
    assert location.corners is not None and corner_error(location.corners, truth) < 0.02


def test_a_rectangle_painted_off_centre_in_a_bare_canvas_is_not_taken_for_its_picture():
    """A window or a door painted in the picture is a well-outlined quadrilateral parallel to the canvas, but it
    does not go round the picture as a frame or a mount does (as wide on each side as on the opposite one): the
    canvas itself is the painting."""
    picture = made_up_painting(4, 400, 320)
    cv2.rectangle(picture, (20, 20), (250, 260), (245, 240, 230), -1)  # a pale window, off to the top-left
    cv2.rectangle(picture, (20, 20), (250, 260), (20, 20, 20), 6)
    photo, truth = _hang(picture, border=0, colour=(0, 0, 0), at=(420, 260), wall_level=150)
    location = locate(photo)
    assert location.corners is not None and corner_error(location.corners, truth) < 0.02
