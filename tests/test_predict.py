"""artnet.serving.predictor: odd and broken images give a prediction or a clear ImageError, one forward pass per
request,
the same answer whatever the input type, and batch prediction that never aborts and keeps input order."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from image_corpus import CORPUS, noise, write_corpus
from PIL import Image

from artnet import labels
from artnet.data.images import ImageError, bound_size, load_rgb
from artnet.models.artnet import EMBEDDING, ArtNet
from artnet.serving.batch_predict import csv_columns, expand_inputs, predict_paths, run_batch_prediction
from artnet.serving.predictor import Predictor

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def model() -> ArtNet:
    keras.utils.set_random_seed(0)
    return ArtNet("tiny", image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    return Predictor(model, top_k=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def assert_valid_prediction(prediction: dict, top_k: int) -> None:
    assert list(prediction) == [*labels.HEADS, EMBEDDING, "outline", "found", "confidence"]
    for head in labels.HEADS:
        ranked = prediction[head]
        assert len(ranked) == min(top_k, len(labels.VOCABULARIES[head]))
        assert all(label in labels.VOCABULARIES[head] for label, _ in ranked)
        probabilities = [p for _, p in ranked]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        if top_k >= len(labels.VOCABULARIES[head]):
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert prediction[EMBEDDING].shape == (32,) and np.isfinite(prediction[EMBEDDING]).all()


@pytest.mark.parametrize("name", list(CORPUS))
def test_odd_and_bad_files_predict_or_raise_a_clear_image_error(predictor, corpus, name):
    expected = CORPUS[name][1]
    path = corpus / name
    for given in (path, str(path), path.read_bytes()):
        if expected == "ok":
            assert_valid_prediction(predictor.predict(given, top_k=100), top_k=100)
            assert_valid_prediction(predictor.predict(given), top_k=3)
        else:
            with pytest.raises(ImageError, match=expected):
                predictor.predict(given)


def test_path_errors_name_the_file(predictor, corpus):
    with pytest.raises(ImageError, match=r"zero_bytes\.jpg: empty file"):
        predictor.predict(corpus / "zero_bytes.jpg")


def test_decoding_details_of_the_odd_files(corpus):
    gif = load_rgb(corpus / "animated.gif")
    assert gif.shape == (10, 20, 3) and (gif == [255, 0, 0]).all()  # the first frame
    assert load_rgb(corpus / "exif_rotated.jpg").shape == (80, 40, 3)  # upright: EXIF applied
    rgba = load_rgb(corpus / "rgba.png")
    assert (rgba[:, :20] == 255).all() and (rgba[:, 20:] == [200, 0, 0]).all()  # transparency on white
    sixteen = load_rgb(corpus / "sixteen_bit.png")
    assert sixteen.dtype == np.uint8 and sixteen.min() == 0 and sixteen.max() >= 250  # scaled, not clipped
    assert load_rgb(corpus / "cmyk.jpg").shape == (30, 40, 3)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("/no/such/painting.jpg", "no such file"),
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "shape"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "empty image"),
        (12345, "cannot read an image from a int"),
    ],
)
def test_bad_inputs_of_other_kinds_raise_image_error(predictor, given, message):
    with pytest.raises(ImageError, match=message):
        predictor.predict(given)


def test_a_folder_is_not_an_image(predictor, tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        predictor.predict(tmp_path)


def test_file_size_limit_is_checked_before_reading(predictor, corpus, monkeypatch):
    # open_image refuses oversized bytes too, after they are read; the promise here is that a file over the limit
    # is refused from its fstat size alone, so its stream must never be read.
    import artnet.data.images as images

    reads = []

    class Unreadable(io.FileIO):
        def read(self, *args):
            reads.append(args)
            raise AssertionError("the file was read before its size was checked")

        readinto = readall = read

    def unbuffered_fdopen(descriptor, mode="rb", *args, **kwargs):
        return Unreadable(descriptor, "rb", closefd=True)

    monkeypatch.setattr(images.os, "fdopen", unbuffered_fdopen)
    monkeypatch.setattr(images, "MAX_BYTES", 100)
    with pytest.raises(ImageError, match="file too large"):
        predictor.predict(corpus / "cmyk.jpg")
    assert reads == []


def test_numpy_greyscale_and_single_channel_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (load_rgb(grey) == grey[..., None]).all() and load_rgb(grey).shape == (3, 4, 3)
    assert (load_rgb(grey[..., None]) == load_rgb(grey)).all()


# --- one forward pass, same answer for every input type --------------------------------------------------


def test_images_too_small_or_too_elongated_to_judge_are_refused_not_answered(predictor):
    from artnet.data.images import ImageShapeError

    for image, message in ((noise(1, 1), "under 32 px"), (noise(31, 400), "under 32 px"), (noise(40, 900), "aspect")):
        with pytest.raises(ImageShapeError, match=message):
            predictor.predict(image)
        with pytest.raises(ImageShapeError, match=message):
            predictor.predict_batch([noise(40, 40), image])
    assert_valid_prediction(predictor.predict(noise(32, 32)), top_k=3)  # the limit itself answers


def test_one_forward_pass_per_request(predictor):
    images = [noise(40, 36, seed=1), np.zeros((32, 32, 3), np.uint8), noise(36, 90, seed=2)]
    before = predictor.forward_passes
    predictor.predict(images[0])
    assert predictor.forward_passes == before + 1
    results = predictor.predict_batch(images)
    assert predictor.forward_passes == before + 2
    assert len(results) == 3
    for result in results:
        assert_valid_prediction(result, top_k=3)
    assert predictor.predict_batch([]) == [] and predictor.forward_passes == before + 2


def test_predict_and_predict_batch_agree(predictor):
    images = [noise(40, 36, seed=3), noise(33, 64, seed=4)]
    batch = predictor.predict_batch(images)
    for image, from_batch in zip(images, batch, strict=True):
        single = predictor.predict(image)
        for head in labels.HEADS:
            assert [label for label, _ in single[head]] == [label for label, _ in from_batch[head]]
            np.testing.assert_allclose([p for _, p in single[head]], [p for _, p in from_batch[head]], atol=1e-6)
        np.testing.assert_allclose(single[EMBEDDING], from_batch[EMBEDDING], atol=1e-5)


def test_path_bytes_pil_and_array_give_identical_predictions(predictor, tmp_path):
    path = tmp_path / "painting.png"
    noise(48, 40, seed=5).save(path)
    inputs = [path, str(path), path.read_bytes(), Image.open(path), np.asarray(Image.open(path))]
    predictions = [predictor.predict(given, top_k=100) for given in inputs]
    for prediction in predictions[1:]:
        for head in labels.HEADS:
            assert prediction[head] == predictions[0][head]
        np.testing.assert_array_equal(prediction[EMBEDDING], predictions[0][EMBEDDING])


def test_embedding_is_the_pooled_feature_vector(predictor, model):
    prediction = predictor.predict(noise(32, 32, seed=6))
    assert prediction[EMBEDDING].shape == (32,) and prediction[EMBEDDING].dtype == np.float32
    expected = model.embedding_model()([np.asarray(noise(32, 32, seed=6), np.float32)[None]], training=False)
    np.testing.assert_allclose(prediction[EMBEDDING], np.asarray(expected)[0], rtol=1e-5, atol=1e-5)


def test_predictor_loads_a_keras_file_that_predicts_what_the_original_did(model, predictor, tmp_path):
    # The .keras round trip only; the SavedModel served by TensorFlow alone is tests/test_savedmodel_standalone.py.
    model.save(tmp_path / "model.keras")
    image = noise(50, 50, seed=7)
    every_label = max(len(labels.VOCABULARIES[head]) for head in labels.HEADS)
    loaded = Predictor(tmp_path, top_k=every_label).predict(image)
    original = predictor.predict(image, top_k=every_label)
    for head in labels.HEADS:
        assert len(loaded[head]) == len(original[head]) == len(labels.VOCABULARIES[head])
        loaded_probabilities, original_probabilities = dict(loaded[head]), dict(original[head])
        assert loaded_probabilities.keys() == original_probabilities.keys()
        np.testing.assert_allclose(
            [loaded_probabilities[label] for label in labels.VOCABULARIES[head]],
            [original_probabilities[label] for label in labels.VOCABULARIES[head]],
            rtol=1e-5,
            atol=1e-7,
            err_msg=head,
        )
    np.testing.assert_allclose(loaded[EMBEDDING], original[EMBEDDING], rtol=1e-5, atol=1e-6)


def test_bound_size_leaves_ordinary_images_alone_and_bounds_the_extremes():
    ordinary = np.zeros((90, 120, 3), np.uint8)
    assert bound_size(ordinary, 32) is ordinary
    assert bound_size(np.zeros((4000, 1, 3), np.uint8), 32).shape == (4, 1, 3)
    assert bound_size(np.zeros((10, 100, 3), np.uint8), 32).shape == (10, 40, 3)
    assert bound_size(np.zeros((1000, 1200, 3), np.uint8), 32).shape == (67, 80, 3)  # box-reduced by 15


# --- batch prediction over files -------------------------------------------------------------------------


def test_expand_inputs_recurses_folders_and_keeps_explicit_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.JPG", "a.png", "b/notes.txt", "c.tiff"):
        (tmp_path / name).write_bytes(b"x")
    explicit = tmp_path / "b" / "notes.txt"
    found = expand_inputs([str(tmp_path), str(explicit), str(tmp_path / "missing.jpg")])
    in_folder = [tmp_path / "a.png", tmp_path / "b" / "z.JPG", tmp_path / "c.tiff"]
    assert found == [*in_folder, explicit, tmp_path / "missing.jpg"]


def test_predict_paths_keeps_order_and_survives_bad_files(predictor, corpus):
    paths = sorted(corpus.iterdir())
    records = list(predict_paths(predictor, paths, batch_size=3))
    assert [record["path"] for record in records] == [str(path) for path in paths]
    for record in records:
        expected = CORPUS[Path(record["path"]).name][1]
        assert record["ok"] is (expected == "ok")
        if record["ok"]:
            assert set(record) == {"path", "ok", "outline", "found", "named", *labels.HEADS}
            assert all(len(record[head]) == 3 and isinstance(record[head][0][1], float) for head in labels.HEADS)
        else:
            assert expected in record["error"]
    json.dumps(records)  # JSON-friendly


def test_run_batch_prediction_writes_one_json_line_per_file(predictor, corpus, tmp_path, capsys):
    out = tmp_path / "out" / "predictions.jsonl"
    status = run_batch_prediction(predictor, [str(corpus)], str(out), batch_size=4)
    assert status == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["path"] for line in lines] == [str(path) for path in sorted(corpus.iterdir())]
    failed = {Path(line["path"]).name for line in lines if not line["ok"]}
    assert failed == {name for name, (_, expected) in CORPUS.items() if expected != "ok"}
    assert all(line["error"] for line in lines if not line["ok"])
    assert f"{len(lines) - len(failed)} ok, {len(failed)} failed" in capsys.readouterr().err


def test_run_batch_prediction_to_stdout(predictor, corpus, capsys):
    assert (
        run_batch_prediction(predictor, [str(corpus / "exif_rotated.jpg"), str(corpus / "zero_bytes.jpg")], None) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["ok"] for line in lines] == [True, False]


def test_run_batch_prediction_writes_csv(model, corpus, tmp_path):
    out = tmp_path / "predictions.csv"
    assert run_batch_prediction(model, [str(corpus)], str(out), top_k=2, batch_size=16) == 0
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == csv_columns(labels.HEADS, 2)
    assert rows[0][:6] == ["path", "ok", "error", "outline", "found", "named_index"]
    assert len(rows) == 1 + len(CORPUS)
    by_name = {Path(row[0]).name: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_name["zero_bytes.jpg"]["ok"] == "False" and "empty" in by_name["zero_bytes.jpg"]["error"]
    assert by_name["sixteen_bit.png"]["ok"] == "True" and by_name["sixteen_bit.png"]["type_2"] in labels.TYPES
    assert 0.0 <= float(by_name["sixteen_bit.png"]["type_2_p"]) <= 1.0
    assert by_name["one_pixel.png"]["ok"] == "False" and "under 32 px" in by_name["one_pixel.png"]["error"]


def test_run_batch_prediction_with_nothing_to_predict(predictor, tmp_path):
    assert run_batch_prediction(predictor, [str(tmp_path)], None) == 1


def test_an_unexpected_decoder_failure_is_one_failed_record(predictor, corpus, monkeypatch):
    import artnet.serving.batch_predict

    real_load = artnet.serving.batch_predict.read_path

    def flaky_load(path):
        if path.name == "cmyk.jpg":
            raise RuntimeError("decoder crashed")
        return real_load(path)

    monkeypatch.setattr(artnet.serving.batch_predict, "read_path", flaky_load)
    paths = [corpus / "exif_rotated.jpg", corpus / "cmyk.jpg", corpus / "sixteen_bit.png"]
    records = list(predict_paths(predictor, paths))
    assert [record["ok"] for record in records] == [True, False, True]
    assert records[1]["error"] == "RuntimeError: decoder crashed"


def test_resize_and_crop_is_the_identity_at_the_model_size():
    """`Predictor.prepare` skips resizing images already at the model size: only right if this holds."""
    from artnet.data.preprocessing import resize_and_crop

    pixels = np.asarray(noise(IMAGE_SIZE, IMAGE_SIZE, seed=8))
    np.testing.assert_array_equal(resize_and_crop(pixels, IMAGE_SIZE).numpy(), pixels)


def test_artnet_predict_command_over_a_mixed_folder(model, corpus, tmp_path):
    from artnet import cli

    model.save(tmp_path / "model.keras")
    out = tmp_path / "predictions.jsonl"
    assert cli.main(["predict", "--model", str(tmp_path / "model.keras"), str(corpus), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(expand_inputs([str(corpus)]))
    assert any(record["ok"] for record in records) and any(not record["ok"] for record in records)
