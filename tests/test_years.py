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
    from artnet.data.synthetic import synthetic_source
    from artnet.evaluation.evaluate import evaluate
    from artnet.models.artnet import ArtNet

    source = synthetic_source(12, seed=3)
    centres = [1425, 1475, 1525, 1575, 1625, 1675, 1725, 1775, 1825, 1875]
    source.meta = [
        {"year": centres[block] if block >= 0 and i % 3 else None} for i, block in enumerate(source.labels["timeframe"])
    ]
    report = evaluate(ArtNet("tiny", image_size=32), source, tmp_path)
    timeframe = report["heads"]["timeframe"]
    assert {"top1", "chance", "confusion_matrix"} <= set(timeframe)  # the existing keys stay
    assert timeframe["year_n"] == int(((source.labels["timeframe"] >= 0) & (source.years >= 0)).sum()) > 0
    assert timeframe["year_median_ae"] is not None and timeframe["year_mae"] >= 0
    assert 0 < timeframe["year_mae_chance"] < 450
    assert sum(timeframe["block_distance_fractions"]) == pytest.approx(1.0)
    assert timeframe["within_one_block"] >= timeframe["top1"]
    assert "within_one_block" not in report["heads"]["school"]
    assert (tmp_path / "distance_timeframe.png").is_file()
    assert "## Time in years" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["heads"]["timeframe"]["year_n"] == timeframe["year_n"]
    assert np.isfinite(timeframe["year_mae"])


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
