"""The Web Gallery of Art source: catalogue parsing, splits, downloading, the build plan.

The TFDS builder in `datasets/wga/` is a thin layer over these modules, which stay importable and
testable without TFDS. Image checks and the size policy are `artnet.data.images`.
"""
