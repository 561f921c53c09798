"""The Web Gallery of Art source: catalogue parsing, splits, downloading, the build plan (image checks: artnet.data.images).

The TFDS builder in `datasets/wga/` is a thin layer over these modules, which stay importable and
testable without TFDS.
"""
