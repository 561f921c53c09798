"""The `wga` builder through TFDS itself: manual mirrors, the real sample mirror, the download path."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from artnet import cli, labels
from artnet.data.sources import wga_source
from artnet.data.wga.build import MANUAL_DIR_ENV, WORK_DIR_ENV
from artnet.data.wga.catalog_pin import CATALOG_SHA256_ENV, CatalogMismatchError
from datasets.wga import wga_dataset_builder


def build(config, data_dir, manual_dir=None, monkeypatch=None):
    builder = wga_dataset_builder.Builder(config=config, data_dir=str(data_dir))
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config)
    return builder


def rows_of(data_dir, config):
    """{split: [(catalog_index, school, timeframe, type, author), ...]} read back with tfds.load."""
    out = {}
    for split in ("train", "validation", "test"):
        dataset = tfds.load(
            f"wga/{config}", split=split, data_dir=str(data_dir), decoders={"image": tfds.decode.SkipDecoding()}
        )
        out[split] = sorted(
            (int(ex["catalog_index"]), int(ex["school"]), int(ex["timeframe"]), int(ex["type"]), ex["author"])
            for ex in dataset.as_numpy_iterator()
        )
    return out


def test_real_sample_mirror_builds_to_the_expected_counts(wga_sample, tmp_path):
    for config in ("artist", "random"):
        builder = build(config, tmp_path / "tfds", manual_dir=wga_sample)
        rows = rows_of(tmp_path / "tfds", config)
        everything = [r for split in rows.values() for r in split]
        assert len(everything) == 444
        assert sum(all(v != labels.UNKNOWN for v in r[1:4]) for r in everything) == 342
        known = [sum(r[1 + i] != labels.UNKNOWN for r in everything) for i in range(3)]
        assert known == [405, 393, 427]  # school, timeframe, type
        summary = builder.info.metadata["summary"]
        assert summary["examples"] == {split: len(r) for split, r in rows.items()}
        assert sum(s["missing"] for s in summary["images"].values()) == 30_305 - 444
        if config == "artist":
            authors = {split: {r[4] for r in split_rows} for split, split_rows in rows.items()}
            assert not (authors["train"] & authors["validation"] or authors["train"] & authors["test"])
            assert not authors["validation"] & authors["test"]
    # Rebuilding from scratch gives the same splits.
    build("artist", tmp_path / "again", manual_dir=wga_sample)
    assert rows_of(tmp_path / "again", "artist") == rows_of(tmp_path / "tfds", "artist")


def test_images_follow_the_size_policy_and_are_rgb(dummy_data, accept_any_catalog, tmp_path, monkeypatch):
    """The policy (artnet.data.images): shorter side at most 400 px, longer side at most 1200 px, never upscaled,
    any colour mode to RGB. The dummy mirror's own images are all under 50 px: two large ones replace two of them."""
    import shutil

    from PIL import Image

    mirror = shutil.copytree(dummy_data, tmp_path / "mirror")
    wide = Image.new("RGB", (2000, 1000), (220, 30, 30))  # left half red, right half blue: resized, not cropped
    wide.paste((30, 30, 220), (1000, 0, 2000, 1000))
    wide.save(mirror / "art/p/painter00/work0.jpg", quality=90)
    Image.new("RGB", (3000, 500), (40, 160, 40)).save(mirror / "art/p/painter01/work0.jpg", quality=90)  # a strip
    small = Image.open(mirror / "art/p/painter02/work0.jpg").size
    assert Image.open(mirror / "art/p/painter03/work2.jpg").mode == "L"  # a greyscale original
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work"))
    build("random", tmp_path / "tfds", manual_dir=mirror)
    stored = {}
    for split in ("train", "validation", "test"):
        for example in tfds.load("wga/random", split=split, data_dir=str(tmp_path / "tfds")).as_numpy_iterator():
            stored[int(example["catalog_index"])] = example["image"]
    for image in stored.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) <= 400 and max(image.shape[:2]) <= 1200
    # Catalogue rows in order: painter NN's work W is row 3 NN + W.
    assert stored[0].shape == (400, 800, 3)  # 2000 x 1000: the shorter side to 400, proportions kept
    assert stored[0][200, 100, 0] > 180 and stored[0][200, 100, 2] < 80  # still red on the left...
    assert stored[0][200, 700, 2] > 180 and stored[0][200, 700, 0] < 80  # ...and blue on the right
    assert stored[3].shape == (200, 1200, 3)  # 3000 x 500: the longer side binds, at 1200
    assert stored[6].shape == (small[1], small[0], 3)  # a small image keeps its size (never upscaled)
    assert stored[11].shape[2] == 3  # the greyscale one, as RGB


def test_manual_dir_from_environment_variable(dummy_data, accept_any_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv(MANUAL_DIR_ENV, str(dummy_data))
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work"))
    builder = build("sample", tmp_path / "tfds")
    assert builder.info.metadata["summary"]["mode"] == "manual"


def test_the_builder_refuses_a_catalogue_checksums_tsv_does_not_pin(dummy_data, tmp_path, monkeypatch):
    """The builder hands its checksums.tsv to the build: without the accept variable the dummy catalogue stops it."""
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work"))
    with pytest.raises(CatalogMismatchError, match=f"{dummy_data / 'catalog.csv'} \\(in the manual dir\\)") as error:
        build("random", tmp_path / "tfds", manual_dir=dummy_data)
    assert f"{CATALOG_SHA256_ENV}=" in str(error.value) and "checksums.tsv" in str(error.value)
    assert not list((tmp_path / "work").glob("prepared-*")), "refused before any image was prepared"


def test_missing_manual_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist or is empty"):
        build("artist", tmp_path / "tfds", manual_dir=tmp_path / "typo")


def test_download_path_equals_manual_build(wga_server, dummy_data, accept_any_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work-manual"))
    build("artist", tmp_path / "manual", manual_dir=dummy_data)
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work-download"))
    monkeypatch.setenv("ARTNET_WGA_BASE_URL", wga_server.base_url)
    monkeypatch.setenv("ARTNET_WGA_BACKOFF", "0.01")
    monkeypatch.setenv("ARTNET_WGA_TIMEOUT", "1")
    wga_server.faults["art/p/painter03/work1.jpg"] = [500, "truncate"]
    shared_manual = tmp_path / "download" / "downloads" / "manual"  # TFDS's default, shared by all datasets
    shared_manual.mkdir(parents=True)
    (shared_manual / "another_dataset.zip").write_bytes(b"not ours")
    builder = build("artist", tmp_path / "download")
    assert builder.info.metadata["summary"]["mode"] == "download"
    assert rows_of(tmp_path / "download", "artist") == rows_of(tmp_path / "manual", "artist")
    saved = json.loads((tmp_path / "work-download" / "summary-artist.json").read_text())
    assert saved["download"]["retries"] >= 2


def test_data_stats_command_counts_a_built_config(dummy_data, accept_any_catalog, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work"))
    build("random", tmp_path / "tfds", manual_dir=dummy_data)
    assert cli.main(["data-stats", "--config", "random", "--data-dir", str(tmp_path / "tfds")]) == 0
    printed = capsys.readouterr().out
    assert "| train | 32 |" in printed and "## timeframe" in printed
    stats = json.loads(next((tmp_path / "tfds").rglob("statistics.json")).read_text())
    assert next((tmp_path / "tfds").rglob("statistics.png")).stat().st_size > 10_000
    assert stats["splits"] == {"train": 32, "validation": 12, "test": 12}
    assert sum(stats["heads"]["school"]["(unknown)"].values()) == 1  # the English guest
    for head in labels.HEADS:
        assert sum(sum(row.values()) for row in stats["heads"][head].values()) == 56
    # A split the build left out (no paintings fell in it) is named, not TFDS's bare "Unknown split".
    assert len(wga_source("random", "train+test[:50%]", tmp_path / "tfds")) == 32 + 6
    with pytest.raises(ValueError, match="has no 'holdout' split .*it has test, train, validation"):
        wga_source("random", "train+holdout", tmp_path / "tfds")


def test_data_stats_on_a_missing_dataset_says_how_to_build_it(tmp_path, capsys):
    assert cli.main(["data-stats", "--config", "artist", "--data-dir", str(tmp_path)]) == 2
    assert "tfds build datasets/wga --config artist" in capsys.readouterr().err


def test_the_builder_parses_dates(dummy_data, accept_any_catalog, tmp_path, monkeypatch):
    from artnet.data.wga.dates import DATE_PRECISIONS, parse_date

    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "work"))
    builder = build("random", tmp_path / "tfds", manual_dir=dummy_data)
    assert str(builder.info.version) == "1.1.0" and "1.1.0" in builder.RELEASE_NOTES
    seen = set()
    for split in ("train", "validation", "test"):
        dataset = tfds.load(
            "wga/random", split=split, data_dir=str(tmp_path / "tfds"), decoders={"image": tfds.decode.SkipDecoding()}
        )
        for ex in dataset.as_numpy_iterator():
            parsed = parse_date(ex["date"].decode())
            precision = DATE_PRECISIONS[int(ex["date_precision"])]
            assert (int(ex["year"]), int(ex["year_min"]), int(ex["year_max"]), precision) == (
                parsed.year,
                parsed.year_min,
                parsed.year_max,
                parsed.precision,
            )
            seen.add(precision)
    assert seen == set(DATE_PRECISIONS)  # the dummy mirror holds every form
    source = wga_source("random", "test", tmp_path / "tfds")
    assert len(source.years) == len(source) and (source.years >= 0).any()
