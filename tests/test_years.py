"""Years through sources and evaluation: a folder's optional `year` column, the timeframe head's errors in years."""

import json

import numpy as np
import pytest

from artnet.sources import folder_source


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
    from artnet.evaluate import evaluate
    from artnet.models.artnet import ArtNet
    from artnet.synthetic import synthetic_source

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
