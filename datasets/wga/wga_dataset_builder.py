"""wga: Web Gallery of Art paintings, 1401-1900, labelled by timeframe, school and type.

Build with the TFDS CLI from the repository root:

    tfds build datasets/wga --data_dir data/tfds                          # artist protocol, download
    tfds build datasets/wga --config random --data_dir data/tfds
    tfds build datasets/wga --config sample --manual_dir ../shared/wga-sample --data_dir data/tfds

then read with `tfds.load("wga/artist", data_dir="data/tfds")` (no import of this file needed).
The work (parsing, splits, downloading, image checks) lives in `artnet.data.wga`; see README.md here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from artnet import labels
from artnet.data import images
from artnet.data.wga.build import MANUAL_DIR_ENV, has_catalog, manual_dir_from_env, plan_build, work_dir_for
from artnet.data.wga.dates import DATE_PRECISIONS
from artnet.data.wga.splits import SAMPLE_PER_CELL
from artnet.data.wga.summary import format_summary

_TEXT_FIELDS = ("author", "born_died", "title", "date", "technique", "location", "url", "form")
# The catalogue export this builder was checked against: a build from another one stops unless it is accepted on
# purpose with $ARTNET_WGA_CATALOG_SHA256 (see artnet.data.wga.catalog_pin.verify_catalog).
_CHECKSUMS = Path(__file__).with_name("checksums.tsv")


class WgaConfig(tfds.core.BuilderConfig):
    """A split protocol, optionally restricted to the small stratified sample."""

    def __init__(self, *, protocol: str, sample_per_cell: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.protocol = protocol
        self.sample_per_cell = sample_per_cell


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the Web Gallery of Art paintings."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release: artist / random / sample configs, 70/15/15 hash splits.",
        "1.1.0": (
            "DATE parsed fully: `year` is now the best estimate (the middle of a range, decade or century; it was "
            "the first four-digit year, so '1505-10' gave 1505 and now gives 1507, '1620s' 1620 and now 1624), and "
            "new features `year_min`, `year_max` and `date_precision` (exact / circa / range / decade / century / "
            "unknown). Images, labels and splits are unchanged."
        ),
    }
    BUILDER_CONFIGS = [
        WgaConfig(
            name="artist",
            protocol="artist",
            description="Author-disjoint 70/15/15 splits: no painter in two splits (the honest protocol).",
        ),
        WgaConfig(
            name="random",
            protocol="random",
            description="Image-level 70/15/15 splits, comparable with the 2020 report and SemArt.",
        ),
        WgaConfig(
            name="sample",
            protocol="artist",
            sample_per_cell=SAMPLE_PER_CELL,
            description=(
                f"Up to {SAMPLE_PER_CELL} paintings per school x timeframe cell (~1.4k paintings, "
                "author-disjoint splits): a newcomer's download in minutes."
            ),
        ),
    ]
    DEFAULT_CONFIG_NAME = "artist"
    _asked_manual_dir = None  # DownloadConfig.manual_dir as given to download_and_prepare; see _manual_dir
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Optional. Without --manual_dir the builder downloads the catalogue and images from wga.hu.
    For an offline build, pass --manual_dir DIR (or set {MANUAL_DIR_ENV}=DIR) where DIR holds
    `data_txt.zip` (or `catalog.csv`) from https://www.wga.hu/database/download/data_txt.zip and an
    `art/` tree of images at their wga.hu paths (e.g. `art/a/aachen/allegory.jpg`). Rows whose image
    is absent are skipped and counted in the build summary.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            **{head: tfds.features.ClassLabel(names=list(labels.VOCABULARIES[head])) for head in labels.HEADS},
            **{f"{head}_raw": tfds.features.Text() for head in labels.HEADS},
            **{name: tfds.features.Text() for name in _TEXT_FIELDS},
            "year": tfds.features.Scalar(
                dtype=np.int32, doc="Best-estimate year of DATE (middle of its range), -1 when unknown."
            ),
            "year_min": tfds.features.Scalar(dtype=np.int32, doc="Earliest year DATE allows, -1 when unknown."),
            "year_max": tfds.features.Scalar(dtype=np.int32, doc="Latest year DATE allows, -1 when unknown."),
            "date_precision": tfds.features.ClassLabel(names=list(DATE_PRECISIONS)),
            "catalog_index": tfds.features.Scalar(
                dtype=np.int64, doc="0-based row of catalog.csv (header excluded) = SemArt's image number."
            ),
        }
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,  # three labels per image: see the heads in artnet.labels
            homepage="https://www.wga.hu/",
            metadata=tfds.core.MetadataDict(),
        )

    def download_and_prepare(self, *, download_config: tfds.download.DownloadConfig | None = None, **kwargs):
        """TFDS's own (same arguments), remembering whether a manual dir was asked for.

        The download manager's public `manual_dir` cannot tell: without --manual_dir TFDS fills in
        <download_dir>/manual, and it raises the same AssertionError for a missing --manual_dir as for that
        default when it is absent. `tfds build --manual_dir`, `tfds.load` and the TFDS test harness all come
        through here with a public `DownloadConfig`.
        """
        self._asked_manual_dir = download_config.manual_dir if download_config is not None else None
        return super().download_and_prepare(download_config=download_config, **kwargs)

    def _manual_dir(self, dl_manager: tfds.download.DownloadManager) -> Path | None:
        """The mirror to read instead of downloading: --manual_dir, else $ARTNET_WGA_MANUAL_DIR, else None."""
        # TFDS fills in <data_dir>/downloads/manual when --manual_dir is not given: a folder all datasets share,
        # so files there are a WGA mirror only if they hold a catalogue.
        default = Path(str(dl_manager.download_dir)) / "manual"
        asked = self._asked_manual_dir
        explicit = asked is not None and Path(os.fspath(asked)).expanduser() != default
        try:
            manual_dir = Path(str(dl_manager.manual_dir))
        except (AssertionError, ValueError):
            # TFDS refuses a missing or empty folder.
            if explicit:
                raise FileNotFoundError(
                    f"--manual_dir {asked} does not exist or is empty; give a folder holding data_txt.zip "
                    "and art/, or leave --manual_dir out to download from wga.hu"
                ) from None
            manual_dir = None
        if manual_dir is not None and has_catalog(manual_dir):
            return manual_dir
        from_env = manual_dir_from_env()
        if from_env:
            return from_env  # plan_build says what is wrong with it, if anything
        return manual_dir if explicit else None  # an explicit folder without a catalogue: plan_build says so

    def _work_dir(self, dl_manager: tfds.download.DownloadManager) -> Path:
        """Mirror and prepared-image cache: reused by rebuilds, so interrupted builds resume."""
        return work_dir_for(Path(str(dl_manager.download_dir)))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        plan = plan_build(
            protocol=self.builder_config.protocol,
            sample_per_cell=self.builder_config.sample_per_cell,
            manual_dir=self._manual_dir(dl_manager),
            work_dir=self._work_dir(dl_manager),
            config_name=self.builder_config.name,
            checksums_file=_CHECKSUMS,
        )
        print(format_summary(plan.summary), flush=True)
        self.info.metadata.update(
            summary={key: value for key, value in plan.summary.items() if key != "errors"},
            image_policy={
                "max_short_side": images.MAX_SHORT_SIDE,
                "max_long_side": images.MAX_LONG_SIDE,
                "jpeg_quality": images.JPEG_QUALITY,
            },
        )
        return {name: self._generate_examples(rows, plan.image_files) for name, rows in plan.splits.items() if rows}

    def _generate_examples(self, rows, image_files):
        for row in rows:
            date = row.parsed_date
            example = {
                "image": image_files[row.catalog_index],
                **{head: index for head, index in row.label_indices.items()},
                **{f"{head}_raw": getattr(row, head) for head in labels.HEADS},
                **{name: getattr(row, name) for name in _TEXT_FIELDS},
                "year": date.year,
                "year_min": date.year_min,
                "year_max": date.year_max,
                "date_precision": date.precision,
                "catalog_index": row.catalog_index,
            }
            yield row.catalog_index, example
