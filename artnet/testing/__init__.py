"""Test fixtures shipped with the library, like `tfds.testing`: a mini WGA mirror and a fake wga.hu server.

They live here, not in `artnet.data.wga`, so that the dataset package holds only what a build runs, while the tests,
the TFDS builder test and the benchmarks share one copy of each fixture. They generate synthetic data built from
the real rules (`artnet.labels`' vocabularies, `artnet.data.wga.image_paths.image_path_of`), so a change to those rules
cannot leave the fixtures silently describing an older format.
"""
