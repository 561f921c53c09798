"""Serving: a trained model answering people.

- `export`: a run -> a self-contained export folder (`.keras`, SavedModel, label files, similarity index).
- `predictor`: bytes, a path or a PIL image -> three ranked label lists (and the year, where the model has one).
- `batch_predict`: a folder of images -> a CSV of answers.
- `explain`: Grad-CAM; `similar`: the "similar paintings" index; `naming`: "this is *Title* by Author", verified by
  a homography, only when sure.
- `files`: the export read as data, never a door (regular files inside it only).
- The Gradio demo, room by room: `demo` (the page and its events), `backend` (what the page calls: `DemoBackend`),
  `cards` (the words and HTML it shows, and their escaping), `batcher` (requests sharing forward passes),
  `threads` (one thread per pass, one pass per core) and `launch` (auth, server defaults, SIGTERM).

Serving never imports training: an export runs without the code that made it.
"""
