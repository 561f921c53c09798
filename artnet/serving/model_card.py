"""The export's `README.md`: a Hugging Face Hub model card, so that the export folder uploads as a model repo as is.

`hub_readme(card)` turns `model_card.json` (the run's facts: data, counts, the test report's headline figures,
see `artnet.run.model_card`) into the Hub's format: YAML front matter (license, tags, datasets, library_name,
metrics, and a `model-index` with the figures measured on the run's test split), then the card's text (what it
does, the three heads, the training data, intended use and limits, the baselines, the files).

The card is data, written by whoever ran the export, and may hold anything (a folder path of the trainer's
machine, a title with a newline and `---`): so every text field of the front matter is reduced to one line of
at most `FIELD_MAX_CHARS` characters, paths to their last part (`artnet.serving.cards.source_words`), and the
YAML is written by `yaml.safe_dump`, which quotes what needs quoting; `front_matter` checks that no line of it
can end the block early. A figure appears only when the card holds it as a number in range: nothing is
invented, and a card without a test report has no `model-index`. The text below reuses the demo's escaped
Markdown (`artnet.serving.cards`), so the Hub page and the demo page say the same.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from artnet import labels
from artnet.data.atomic_files import write_atomically
from artnet.serving.cards import calibration_line, escape_markdown, is_sample_scale, model_card_facts, source_words

README_FILE = "README.md"
LICENSE = "apache-2.0"  # artnet's own licence (setup.cfg): the code and the weights it trains
FIELD_MAX_CHARS = 200
# What each LiteRT file of an export is (artnet.serving.litert's names; kept here as text: the card needs no TF).
LITERT_KINDS = {
    "model.tflite": "float32",
    "model_fp16.tflite": "float16 weights",
    "model_int8.tflite": "full-integer int8, calibrated on training images",
}
TAGS = ["image-classification", "art", "paintings", "art-history", "keras", "tensorflow", "tflite", "artnet"]
# The card's headline figures (artnet.run.HEADLINE_METRICS) as Hub metric types, with their names on the page.
HEAD_METRICS = {"top1": ("accuracy", "top-1 accuracy"), "top3": ("top_3_accuracy", "top-3 accuracy")}
HEAD_METRICS["balanced_accuracy"] = ("balanced_accuracy", "balanced accuracy")
FENCE_LINE = re.compile(r"^(---|\.\.\.)\s*$", re.MULTILINE)
# `write_readme` without a calibration stated: the card then says where calibration lives, not whether it is there.
UNSTATED = object()
CALIBRATION_UNSTATED = (
    "- **Calibration:** the probabilities are calibrated, and each answer names a prediction set, only where "
    "`calibration.json` sits beside the model; an export without it is uncalibrated (raw softmax, no sets)."
)


def one_line(value, limit: int = FIELD_MAX_CHARS) -> str:
    """A card value as one line of plain text: whitespace (line breaks too) collapsed, control characters
    dropped, cut to `limit` characters."""
    text = " ".join(str(value).split())
    text = "".join(character for character in text if character.isprintable())
    return text[:limit]


def _fraction(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 4) if 0 <= value <= 1 else None


def _positive(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return round(float(value), 2)


def dataset_name(card: dict) -> str:
    """The training data's name for the front matter: a WGA configuration as it is (`wga/artist`), a folder by its
    last part only; never a path of the trainer's machine."""
    words = source_words(card.get("data"))  # escaped for Markdown: undo the backslashes for YAML
    return one_line(re.sub(r"\\(.)", r"\1", words).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def front_matter_fields(card: dict, model_name: str = "artnet") -> dict:
    """The YAML front matter's fields, as plain values (see the top)."""
    dataset = dataset_name(card)
    heads = [one_line(head, 40) for head in card.get("heads", []) if isinstance(head, str)]
    fields = {
        "license": LICENSE,
        "library_name": "keras",
        "pipeline_tag": "image-classification",
        "tags": TAGS + [one_line(f"backbone-{card.get('backbone', 'unknown')}", 60)],
        "datasets": [dataset],
        "metrics": [metric for metric, _ in HEAD_METRICS.values()] + (["mae"] if "year" in heads else []),
    }
    results = []
    test = card.get("test") if isinstance(card.get("test"), dict) else {}
    for head, result in test.items():
        if not isinstance(result, dict):
            continue
        metrics = [
            {"type": kind, "name": f"{one_line(head, 40)} {name}", "value": _fraction(result.get(key))}
            for key, (kind, name) in HEAD_METRICS.items()
            if _fraction(result.get(key)) is not None
        ]
        if metrics:
            results.append(_result(one_line(head, 40), dataset, metrics))
    year = card.get("test_year") if isinstance(card.get("test_year"), dict) else {}
    if _positive(year.get("mae")) is not None:
        metrics = [{"type": "mae", "name": "year mean absolute error (years)", "value": _positive(year["mae"])}]
        results.append(_result("year", dataset, metrics))
    if results:
        fields["model-index"] = [{"name": one_line(model_name, 96), "results": results}]
    return fields


def _result(head: str, dataset: str, metrics: list[dict]) -> dict:
    task = {"type": "image-classification", "name": f"painting {head}"}
    return {"task": task, "dataset": {"name": dataset, "type": dataset, "split": "test"}, "metrics": metrics}


def front_matter(fields: dict) -> str:
    """`---`, the fields as YAML, `---`: refused (ValueError) if any line of the YAML could end the block."""
    text = yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=10_000)
    if FENCE_LINE.search(text):
        raise ValueError("a model card field would end the README's front matter early")
    return f"---\n{text}---\n"


def hub_readme(
    card: dict, label_table: dict | None = None, model_name: str = "artnet", litert_files: Sequence[str] = ()
) -> str:
    """The export's README.md: the front matter, then the card's text (see the top). `litert_files`: the LiteRT
    models the export holds (`artnet export --litert`), each listed under Files; none by default."""
    label_table = label_table or {head: list(labels.VOCABULARIES[head]) for head in labels.VOCABULARIES}
    heads = [head for head in card.get("heads", []) if isinstance(head, str)]
    backbone, image_size = escape_markdown(card.get("backbone", "?")), card.get("image_size")
    size = f"{image_size} px" if isinstance(image_size, int) and not isinstance(image_size, bool) else "its size"
    lines = [
        f"# {escape_markdown(one_line(model_name, 96))}: when, where and what is this painting?",
        "",
        "One image classifier with one backbone and three heads, answering from the pixels alone, in one forward "
        "pass, for a European painting made between 1401 and 1900: **where** (its school), **when** (its "
        "timeframe, in 50-year blocks) and **what** (its type)"
        + (", plus a year with its uncertainty" if "year" in heads else "")
        + ".",
        "",
        f"- **Backbone:** {backbone}, images at {size}",
        "",
        "## The heads",
        "",
    ]
    for head in heads:
        if head in label_table:
            classes = ", ".join(escape_markdown(name) for name in label_table[head])
            lines.append(f"- **{escape_markdown(head)}** ({len(label_table[head])} classes): {classes}")
        elif head == "year":
            lines.append("- **year**: the mean year and its standard deviation (a Gaussian head)")
    lines += ["", "## Training data and evaluation", "", model_card_facts(card)]
    stated = "calibration" in card
    lines += [calibration_line(card["calibration"], card.get("calibration_folds")) if stated else CALIBRATION_UNSTATED]
    lines += [""]
    lines += [
        "Chance and the majority class are the baselines every figure is compared with; a linear probe on the "
        "frozen backbone is the third (artnet's `artnet probe`). Test figures are on the run's own test split, "
        "split by painter where the source names painters.",
        "",
        "## Intended use and limits",
        "",
        "- For learning about and exploring European painting of 1401-1900 (museum visitors, students, a gallery "
        "app offline). Not an attribution, an authentication or an appraisal: its answers are a model's guesses.",
        "- It knows only its classes: a painting from elsewhere or another period, a photograph, a drawing or a "
        "print still gets an answer among them.",
        "- The training images come from one collection (the Web Gallery of Art); its choices and gaps are the "
        "model's.",
    ]
    if is_sample_scale(card):
        lines.append("- **A small sample-scale model**: it demonstrates the pipeline; its answers are not reliable.")
    lines += [
        "",
        "## Files",
        "",
        "- `model.keras`: the Keras 3 model (load with artnet installed: `artnet.serving.export.load_model`).",
        "- `saved_model/`: TensorFlow SavedModel; `serving_default` takes uint8 RGB images of any size and returns "
        "one probability tensor per head (calibrated where `calibration.json` is present, with the raw softmax "
        "`<head>_raw` and the conformal set `<head>_set` beside it), `labels` names the classes (no artnet needed).",
        *(
            f"- `{name}`: LiteRT ({LITERT_KINDS.get(name, 'converted')}), one uint8 RGB image of {size} square in, "
            "one probability vector per head out (the class names are in `labels.json`)."
            for name in litert_files
        ),
        "- `labels.json`, `model_card.json`: the class names per head, and the run's facts.",
        "- `calibration.json` (where present): per head, the temperature and the conformal set rule fitted on the "
        "validation split, which artnet's predictor, demo and the SavedModel apply (the LiteRT files serve the raw "
        "softmax: apply the temperature as `examples/litert_predict.py` does).",
        "",
        "## Data terms",
        "",
        "The Web Gallery of Art's images are for personal and educational use; cite the Web Gallery of Art when "
        "you publish results. The weights are released under the Apache-2.0 licence.",
        "",
    ]
    return front_matter(front_matter_fields(card, model_name)) + "\n" + "\n".join(lines)


def write_readme(
    folder: Path, card: dict, label_table: dict | None = None, calibration=UNSTATED, litert_files: Sequence[str] = ()
) -> Path:
    """`folder/README.md`: the Hub model card of `card` (see `hub_readme`). `calibration`: what the export serves
    (per head a `HeadCalibration` or its JSON; None or {} for an uncalibrated export), stated on the card's
    calibration line; left out, the line says where calibration lives instead."""
    if calibration is not UNSTATED:
        record = {head: getattr(value, "to_dict", lambda v=value: v)() for head, value in (calibration or {}).items()}
        card = {**card, "calibration": record}
    path = Path(folder) / README_FILE
    write_atomically(path, hub_readme(card, label_table, litert_files=litert_files).encode("utf-8"))
    return path
