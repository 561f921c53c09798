"""Data, from untrusted files to tf.data batches: everything before a model exists.

- `images`: the ONE opener of untrusted image files (size, pixel and format limits).
- `preprocessing`: decode, resize, frame and augment, as TensorFlow ops shared by training and serving.
- `sources`: a split of labelled paintings in memory (a built `wga` dataset or a labelled folder).
- `pipeline`: a source -> tf.data batches with per-head sample weights (unknown labels masked).
- `years`: the year target's encoding, and the fifty-year blocks read as years.
- `photo`: the painting in a visitor's photo: locate its quadrilateral, rectify it (OpenCV).
- `atomic_files`: writes that are whole or absent (temp + fsync + rename + folder fsync), and the sweep of a
  killed writer's leftovers.
- `synthetic`: synthetic labelled images for tests and dry runs.
- `wga/`: the Web Gallery of Art (catalogue, URL -> path, splits, downloader, build plan), plain Python, no TFDS.
"""
