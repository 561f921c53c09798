"""Years through sources and evaluation: a folder's optional `year` column, the timeframe head's errors in years."""

import json

import numpy as np
import pytest

from artnet.data.sources import folder_source


def test_a_folder_source_reads_an_optional_year_column(tmp_path):
    from PIL import Image

    rows = ["file,timeframe,year", "a.png,1501-1550,1520", "b.png,1501-1550,", "c.png,1601-1650,c. 1640"]
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    source = folder_source(tmp_path)
    assert [row["year"] for row in source.meta] == [1520, None, 1640]
    assert source.years.tolist() == [1520, -1, 1640]
    (tmp_path / "labels.csv").write_text("file,timeframe\na.png,1501-1550\n")
    assert folder_source(tmp_path).years.tolist() == [-1]


def test_evaluate_reports_the_timeframe_head_in_years(tmp_path):
    import keras
    import tensorflow as tf

    from artnet import labels
    from artnet.data.synthetic import synthetic_source
    from artnet.evaluation.evaluate import evaluate
    from artnet.models.artnet import ArtNet

    source = synthetic_source(40, seed=3)
    centres = [1425, 1475, 1525, 1575, 1625, 1675, 1725, 1775, 1825, 1875]
    source.meta = [
        {"year": centres[block] + 7 * (i % 5) - 14 if block >= 0 and i % 3 else None}
        for i, block in enumerate(source.labels["timeframe"])
    ]
    keras.utils.set_random_seed(4)
    model = ArtNet("tiny", image_size=32, dropout=0.0)
    # An untrained backbone's features barely differ between images: a timeframe head that amplifies the
    # differences (around their mean) answers different blocks for different images, so a prediction scored
    # against another image's label would show.
    pixels = np.stack([tf.io.decode_png(encoded).numpy() for encoded in source.images]).astype(np.float32)
    features = model.embedding_model().predict(pixels, verbose=0)
    kernel = np.random.default_rng(4).normal(0, 1, (features.shape[1], 10)) / (features.std(axis=0)[:, None] + 1e-6)
    bias = -features.mean(axis=0) @ kernel
    model.get_layer("timeframe").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    report = evaluate(model, source, tmp_path)
    timeframe = report["heads"]["timeframe"]
    assert {"top1", "chance", "confusion_matrix"} <= set(timeframe)  # the existing keys stay
    assert "within_one_block" not in report["heads"]["school"]
    assert (tmp_path / "distance_timeframe.png").is_file()
    assert "## Time in years" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["heads"]["timeframe"] == timeframe

    # Recomputed here from what evaluate saved, by the definitions of the report's keys.
    saved = np.load(tmp_path / "predictions.npz")
    truth, years, predicted = saved["timeframe_true"], saved["year_true"], saved["timeframe"].argmax(axis=1)
    assert truth.tolist() == source.labels["timeframe"].tolist() and years.tolist() == source.years.tolist()
    known = truth >= 0
    assert len(set(predicted[known])) > 1, "a constant answer would make the distances trivial"
    distance = np.abs(predicted[known] - truth[known])
    assert timeframe["top1"] == pytest.approx(np.mean(distance == 0))
    assert timeframe["within_one_block"] == pytest.approx(np.mean(distance <= 1))
    assert timeframe["block_distance_fractions"] == pytest.approx(np.bincount(distance, minlength=10) / known.sum())
    every_block = np.abs(np.arange(10)[None, :] - truth[known][:, None])
    assert timeframe["within_one_block_chance"] == pytest.approx(np.mean(every_block <= 1))
    middle = np.array([(int(name[:4]) + int(name[5:])) / 2 for name in labels.TIMEFRAMES])  # 1401-1450 -> 1425.5
    dated = known & (years >= 0)
    error = np.abs(middle[predicted[dated]] - years[dated])
    assert timeframe["year_n"] == int(dated.sum()) > 0
    assert timeframe["year_mae"] == pytest.approx(error.mean())
    assert timeframe["year_median_ae"] == pytest.approx(np.median(error))
    assert timeframe["year_mae_chance"] == pytest.approx(np.abs(middle[None, :] - years[dated][:, None]).mean())


def test_a_wikiart_file_name_gives_the_year_when_the_column_is_blank(tmp_path):
    from PIL import Image

    from artnet.data.sources import year_from_file_name

    assert year_from_file_name("images/wikiart_Baroque_47a35fdb_adriaen-brouwer_interior-with-smokers-1632.jpg") == 1632
    assert year_from_file_name("jan-van-eyck_altarpiece-1432-1435.jpg") == 1432  # a range: its first year
    assert year_from_file_name("rembrandt_the-night-watch.jpg") == -1
    assert year_from_file_name("psalm-1612-b.jpg") == -1  # not at the very end: a title, not a date
    assert year_from_file_name("numbered-2040.jpg") == -1  # outside 1300-1999
    rows = ["file,timeframe,year", "a-1520.png,1501-1550,", "b-1520.png,1501-1550,1530"]
    for name in ("a-1520.png", "b-1520.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert folder_source(tmp_path).years.tolist() == [1520, 1530]  # the column wins where it has a year
