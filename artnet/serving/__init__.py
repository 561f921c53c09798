"""Serving: a trained model answering people.

- `export`: a run -> a self-contained export folder (`.keras`, SavedModel, label files, similarity index).
- `predictor`: bytes, a path or a PIL image -> three ranked label lists (and the year, where the model has one).
- `batch_predict`: a folder of images -> a CSV of answers.
- `explain`: Grad-CAM; `similar`: the "similar paintings" index.
- `demo`: the Gradio page over the predictor and index.

Serving never imports training: an export runs without the code that made it.
"""
