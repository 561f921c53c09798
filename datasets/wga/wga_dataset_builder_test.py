"""TFDS's own builder test over a generated mini mirror in the real format, with tricky rows.

Expected counts (see artnet/testing/dummy_mirror.py): 54 ordinary paintings + 2 tricky ones are
usable; the all-unknown row, the sculpture, the lost image, the text file named .jpg and the two
malformed rows are not.
"""

import tempfile

import tensorflow_datasets as tfds

from artnet.testing.dummy_mirror import temporary_mirror
from datasets.wga import wga_dataset_builder

DUMMY_MIRROR = str(temporary_mirror())  # generated: see dummy_data/README.md


class _WgaTestCase(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = wga_dataset_builder.Builder
    EXAMPLE_DIR = DUMMY_MIRROR
    SKIP_CHECKSUMS = True  # the builder fetches through artnet.data.wga.download, not dl_manager.download

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Keep the prepared-image cache out of the dummy mirror (which TFDS uses as download_dir).
        cls._work_dir = tempfile.TemporaryDirectory()
        # The dummy catalogue is not the wga.hu export checksums.tsv pins: accept it, as a user would a newer one.
        cls._env = {"ARTNET_WGA_WORK_DIR": cls._work_dir.name, "ARTNET_WGA_CATALOG_SHA256": "any"}

    def setUp(self):
        super().setUp()
        self.enterContext(_patched_env(self._env))


def _patched_env(values):
    from unittest import mock

    return mock.patch.dict("os.environ", values)


class WgaArtistTest(_WgaTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["artist"]
    SPLITS = {"train": 47, "validation": 6, "test": 3}


class WgaRandomTest(_WgaTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["random"]
    SPLITS = {"train": 32, "validation": 12, "test": 12}


class WgaSampleTest(_WgaTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["sample"]
    SPLITS = {"train": 46, "validation": 6, "test": 3}


del _WgaTestCase  # not a test of its own

if __name__ == "__main__":
    tfds.testing.test_main()
