"""What the demo page says in words: the model card, each head's title, and the similar paintings as HTML cards.

Every string here ends up in a browser, and much of it comes from the index and the model card, which are data
and may hold anything; so the escaping lives here too (`escape_markdown`, `html_text`, `safe_url`), beside the
text it guards. Every field of the card is escaped or shown only when it is a number (`_count`, `_fraction`,
`_number`), and its data source is named without the machine's paths (`source_words`). Plain functions of plain
values (and the thumbnails' guarded reads, `artnet.serving.files`): no model, no gradio.
"""

from __future__ import annotations

import base64
import functools
import html
import logging
import math
import re
from pathlib import PurePosixPath

from artnet import labels
from artnet.evaluation.conformal import cannot_tell, describe_set
from artnet.evaluation.metrics import percent
from artnet.serving.files import THUMB_MAX_BYTES, ExportError, read_inside

_percent = functools.partial(percent, suffix=" %")
LOG = logging.getLogger("artnet.serving.demo")  # the demo's one logger (as `artnet.serving.backend.LOG`)
LOW_CONFIDENCE = 0.5
YEAR_TITLE = "When: year (± one standard deviation, the model's own uncertainty)"
YEAR_UNKNOWN = "unknown (the model gave no usable year for this image)"
SMALL_MODEL_EXAMPLES = 5_000
TITLES = {"school": "Where: school", "timeframe": "When: timeframe", "type": "What: type"}
THUMBS_CACHED = 2048  # data: URIs of index thumbnails kept in memory, ~8 KB each
# The only pages a neighbour may link to: the painting's own page on wga.hu.
WGA_PAGE = re.compile(r"https://www\.wga\.hu/html/[A-Za-z0-9_\-/]+\.html?")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>=:])")
# A source the card may name as it is: a WGA configuration (`wga/sample`); any other name with a path in it is a
# folder of the trainer's machine, named by its last part only.
WGA_SOURCE = re.compile(r"wga/[A-Za-z0-9_.-]+")
SPLIT_NAME = re.compile(r"[A-Za-z_]+")
SOURCE_MAX_CHARS = 1000  # a card's source is a line; past this it is cut

# --- escaping ----------------------------------------------------------------------------------------------


def escape_markdown(text) -> str:
    """Catalogue text as literal Markdown on one line: HTML escaped and every Markdown character backslashed, so
    a title such as `Madonna](https://evil.example) [x` or `<img src=...>` shows as text, never as a link or a tag
    (`:` too, so that no autolink starts; line breaks become spaces, so no line of it can underline a heading)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(text).split()), quote=True))


def safe_url(url) -> str | None:
    """`url` when it is a wga.hu painting page, else None (the index is data: it may hold anything)."""
    url = str(url or "")
    return url if WGA_PAGE.fullmatch(url) and ".." not in url else None


def html_text(text) -> str:
    """Catalogue text for the page's HTML: every tag and quote escaped, and `$` and backticks too, because
    gr.HTML fills its value into a JavaScript template literal (a title cannot become markup or a placeholder)."""
    return html.escape(str(text), quote=True).replace("$", "&#36;").replace("`", "&#96;")


# --- the model card ----------------------------------------------------------------------------------------
# The card is data, written by whoever made the export: each field is shown escaped (`escape_markdown`) or, where
# a number is expected, only when it is one (anything else reads as unrecorded).


def _number(value) -> float | None:
    """A finite number, or None (for text, booleans, NaN, infinities, anything else)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _count(value) -> int | None:
    """A whole non-negative number, or None."""
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number == int(number) else None


def _fraction(value) -> float | None:
    """A number in [0, 1] (a rate), or None."""
    number = _number(value)
    return number if number is not None and 0 <= number <= 1 else None


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def source_words(data) -> str:
    """The card's data source as the page names it, escaped: a WGA configuration as it is, a folder by its last
    part only (`/home/ann/paintings:train` -> `folder paintings:train`): the page never shows the trainer's
    paths."""
    if not isinstance(data, str) or not data.strip():
        return "unrecorded data"
    parts = []
    for part in " ".join(data[:SOURCE_MAX_CHARS].split()).split(" + "):
        body, rest = part, ""  # "<name>[:<split>][[<subset>]]", e.g. "/home/ann/paintings:train[40% of painters]"
        if body.endswith("]") and "[" in body:
            body, rest = body[: body.rindex("[")], body[body.rindex("[") :]
        name, colon, split = body.rpartition(":")
        if colon and SPLIT_NAME.fullmatch(split):
            body, rest = name, f":{split}{rest}"
        if not WGA_SOURCE.fullmatch(body) and ("/" in body or "\\" in body or body.startswith("~")):
            body = "folder " + (PurePosixPath(body.replace("\\", "/")).name.lstrip("~") or "(unnamed)")
        parts.append(body + rest)
    return escape_markdown(" + ".join(parts))


def is_sample_scale(card: dict) -> bool:
    train_examples = _count(card.get("train_examples"))
    return train_examples is not None and train_examples < SMALL_MODEL_EXAMPLES


def model_card_facts(card: dict) -> str:
    """The key facts, shown at the top of the page: what the model saw, how it did on its test split, and what
    chance and always answering the test split's majority class would score."""
    train_examples, painters = _count(card.get("train_examples")), _count(card.get("train_painters"))
    trained = f"{train_examples if train_examples is not None else 'an unrecorded number of'} training images"
    trained += f" by {painters} painters" if painters else " (painters not recorded)"
    lines = [f"**About this model:** {trained}, from {source_words(card.get('data'))}."]
    test = {head: result for head, result in _mapping(card.get("test")).items() if isinstance(result, dict)}
    if test:
        first = next(iter(test.values()))
        tested, test_painters = _count(first.get("n")), _count(card.get("test_painters"))
        lines[0] += f" Tested on {tested if tested is not None else '?'} images" + (
            f" by {test_painters} painters." if test_painters else " (painters not recorded)."
        )
    for head, result in test.items():
        chance = 1 / len(labels.VOCABULARIES[head]) if head in labels.VOCABULARIES else None
        majority = _mapping(result.get("data_majority"))
        against = f"chance {_percent(chance)}"
        if _fraction(majority.get("top1")) is not None:
            against += f", always answering the test majority ({escape_markdown(majority.get('class'))}) " + _percent(
                _fraction(majority["top1"])
            )
        elif _fraction(result.get("majority_baseline")) is not None:
            against += f", always answering the training majority {_percent(_fraction(result['majority_baseline']))}"
        else:
            against += ", majority baseline not recorded"
        balanced = _percent(_fraction(result.get("balanced_accuracy")))
        lines.append(f"- {escape_markdown(head)}: balanced accuracy {balanced} ({against})")
    year = _mapping(card.get("test_year"))
    if _number(year.get("mae")) is not None:
        constant, dated = _number(year.get("mae_constant")), _count(year.get("n"))
        lines.append(
            f"- year: mean error {_number(year['mae']):.0f} years over {dated if dated is not None else '?'} dated "
            "test paintings"
            + (f" (always answering the training mean year: {constant:.0f} years)" if constant is not None else "")
        )
    if is_sample_scale(card):
        lines.append(
            f"- **A small sample-scale model** ({_count(card['train_examples'])} training images): its answers "
            "demonstrate the pipeline; they are not an expert's opinion."
        )
    return "\n".join(lines)


def model_card_markdown(card: dict) -> str:
    lines = ["### Model card", ""]
    image_size, parameters = _count(card.get("image_size")), _number(card.get("parameters"))
    heads = card.get("heads") if isinstance(card.get("heads"), list) else []
    lines.append(
        f"- **Backbone:** {escape_markdown(card.get('backbone', '?'))} at "
        f"{image_size if image_size is not None else '?'} px, "
        + (f"{parameters / 1e6:.1f} M parameters" if parameters is not None else "parameters not recorded")
        + f", heads: {', '.join(escape_markdown(head) for head in heads)}"
    )
    train_examples = _count(card.get("train_examples"))
    if card.get("data"):
        lines.append(
            f"- **Trained on:** {source_words(card['data'])}"
            + (f" ({train_examples} images)" if train_examples else "")
        )
    for head, result in _mapping(card.get("test")).items():
        result = _mapping(result)
        if _fraction(result.get("top1")) is not None:
            n = _count(result.get("n"))
            lines.append(
                f"- **Test {escape_markdown(head)}:** top-1 {_percent(_fraction(result['top1']))}, top-3 "
                f"{_percent(_fraction(result.get('top3')))}, balanced "
                f"{_percent(_fraction(result.get('balanced_accuracy')))} over {n if n is not None else '?'} images"
            )
    if "calibration" in card:  # put there by whoever serves the export, from what it serves
        lines.append(calibration_line(card["calibration"], card.get("calibration_folds")))
    if is_sample_scale(card):
        lines += [
            "",
            f"**This is a small sample-scale model** ({train_examples} training images): its answers are a "
            "demonstration of the pipeline, not an expert's opinion.",
        ]
    return "\n".join(lines)


def calibration_line(record, folds=None) -> str:
    """The card's calibration line: a calibrated export's temperature per head and its sets' coverage, or
    "uncalibrated". `record` has `calibration.json`'s shape (None or {} for none) and is shown as data: only
    the known heads, and only numbers in range. `folds`: the card's `calibration_folds` (cross-fitted
    calibration, `artnet.training.cross_fit`), said only when it is a whole number >= 2."""
    heads = {head: _mapping(value) for head, value in _mapping(record).items() if head in labels.VOCABULARIES}
    if not heads:
        return (
            "- **Calibration:** uncalibrated: the probabilities are the network's raw softmax, fitted to no held-out "
            "paintings, and answers name no prediction set (this export has no `calibration.json`)."
        )
    temperatures = [(head, _number(value.get("temperature"))) for head, value in heads.items()]
    shown = ", ".join(f"{head} {t:.2f}" for head, t in temperatures if t is not None and t > 0)
    coverages = {_fraction(_mapping(value.get("conformal")).get("coverage")) for value in heads.values()} - {None}
    sets = f"a {_percent(coverages.pop())} prediction set" if len(coverages) == 1 else "a prediction set"
    fitted_on = "the validation paintings (painters unseen in training)"
    count = _count(folds)
    if count is not None and count >= 2:
        fitted_on = (
            f"answers about painters the answering model never saw: the validation paintings', and the training "
            f"paintings' from {count} models each trained without their fold of painters"
        )
    return (
        f"- **Calibration:** calibrated on {fitted_on}: a temperature per head ({shown or 'not recorded'}), and "
        f"each answer names {sets}."
    )


# --- one answer: the heads and the similar paintings -------------------------------------------------------


def label_value(ranked: list[tuple[str, float]]) -> dict[str, float]:
    """gr.Label's value for one head: its top classes and their probabilities."""
    return {name: float(p) for name, p in ranked}


def set_words(head: str, chosen, coverage: float | None = None) -> str:
    """A head's prediction set as the answer says it: "Dutch or Flemish (90 % set)", or "cannot tell" when the set
    holds more than half the head's classes (`conformal.cannot_tell`: at that coverage it rules out too little)."""
    names = labels.VOCABULARIES[head]
    promise = f"{100 * coverage:.0f} % set" if coverage else "prediction set"
    if cannot_tell(len(chosen), len(names)):
        return f"cannot tell (the {promise} holds {len(chosen)} of {len(names)} classes; the ranking is its best guess)"
    return f"{describe_set([names.index(name) for name in chosen], names)} ({promise})"


def head_title(head: str, ranked: list[tuple[str, float]], chosen=None, coverage: float | None = None) -> str:
    """The head's label on the page, which says in words what it answers, or that it is unsure. With the head's
    prediction set `chosen` (a calibrated export's labels, most probable first) it names the set at its
    `coverage` ("Where: school: Dutch or Flemish (90 % set)", or "cannot tell"; the ranking still shows
    beneath); without one (an uncalibrated export), the top class, unsure under LOW_CONFIDENCE."""
    if chosen:
        return f"{TITLES[head]}: {set_words(head, chosen, coverage)}"
    top, probability = ranked[0]
    if probability >= LOW_CONFIDENCE:
        return f"{TITLES[head]}: {top} ({100 * probability:.0f} %)"
    return f"{TITLES[head]}: unsure (best guess {top}, {100 * probability:.0f} %)"


# The seed's reading of the school head's probabilities as influence ("60 % French, 40 % German"), offered only
# with calibrated probabilities, and always with what they mean.
INFLUENCE_HEAD = "school"
INFLUENCE_MEANING = (
    "These are calibrated probabilities, fitted so that on the validation paintings (by painters the model never "
    "trained on) an answer given with probability p was right about p of the time; they say how sure the model is, "
    "not how much each school shaped the painting: reading the mix as influence is an interpretation, not a "
    "measurement."
)


def confidence_note(heads, result: dict, coverage: float | None = None) -> str:
    """The answer's note on how sure it is. With prediction sets (`result["sets"]`, a calibrated export), every
    head answers with its set and `coverage` (the share of sets promised to hold the true class): "school: Dutch
    or Flemish (90 % set)", or "cannot tell" when the set holds more than half the classes; where the school set
    holds several schools, the seed's influence reading is offered with `INFLUENCE_MEANING`. Without sets (an
    uncalibrated export), a head is unsure when its top probability is under LOW_CONFIDENCE, and no probability is
    read as influence."""
    sets = result.get("sets")
    if sets:
        answers = [f"{head}: {set_words(head, sets[head], coverage)}" for head in heads if sets.get(head)]
        promise = (
            f" Each set is calibrated to hold the true class for {100 * coverage:.0f} % of paintings like the "
            "validation ones (painters the model never trained on); a set of one class is the only candidate at that "
            "coverage."
            if coverage
            else ""
        )
        note = "; ".join(answers) + "." + promise
        chosen = sets.get(INFLUENCE_HEAD) or ()
        names = labels.VOCABULARIES[INFLUENCE_HEAD]
        if INFLUENCE_HEAD in heads and len(chosen) > 1 and not cannot_tell(len(chosen), len(names)):
            shares = [(name, p) for name, p in result[INFLUENCE_HEAD] if name in chosen]
            mix = ", ".join(f"{100 * p:.0f} % {name}" for name, p in shares)
            note += f" Read as influence, as the 2020 report did: {mix}. {INFLUENCE_MEANING}"
        return note
    unsure = [
        f"{head} ({result[head][0][0]}, {100 * result[head][0][1]:.0f} %)"
        for head in heads
        if result[head][0][1] < LOW_CONFIDENCE
    ]
    if unsure:
        return "The model is unsure about " + ", ".join(unsure) + ": treat those answers as guesses."
    return (
        f"{'All answers are' if len(heads) > 1 else 'The answer is'} fairly confident "
        f"(top probability ≥ {100 * LOW_CONFIDENCE:.0f} %)."
    )


def year_words(year: tuple[float, float] | None) -> str | None:
    """The year head's answer as the page shows it: "c. 1640 ± 25", or YEAR_UNKNOWN when the model gave NaN
    or an infinity (never "c. nan"; and the API's JSON stays valid); None for a model without a year head."""
    from artnet.models.year import year_text  # imports Keras: only a model with a year head asks (cards stay light)

    if year is None:
        return None
    mean, sigma = (_number(value) for value in year)
    return year_text(mean, sigma) if mean is not None and sigma is not None else YEAR_UNKNOWN


def neighbour_record(item: dict) -> dict:
    """One similar painting as structured data (what /classify returns beside the cards)."""
    item_labels = item.get("labels") or {}
    return {
        "title": item.get("title") or None,
        "painter": item.get("author") or None,
        "date": item.get("date") if item.get("date") not in (None, "", "-") else None,
        "labels": {head: item_labels.get(head) for head in labels.HEADS},
        "similarity": round(float(item["score"]), 4) if _number(item.get("score")) is not None else None,
        "url": safe_url(item.get("url")),
    }


def neighbour_caption(record: dict) -> str:
    """Plain text (escaped where the page shows it): painter, title, date, labels, similarity."""
    known = [value for value in record["labels"].values() if value]
    return (
        f"{record['painter'] or 'unknown painter'}, {record['title'] or 'untitled'} "
        f"({record['date'] or 'date unknown'})"
        + (f"; {', '.join(map(str, known))}" if known else "")
        + "; "
        + (f"similarity {record['similarity']:.2f}" if record["similarity"] is not None else "similarity unknown")
    )


def named_record(item: dict, position: int, inliers: int) -> dict:
    """The indexed painting a photo shows, as structured data (what /classify and `artnet predict` return): the
    neighbour record's fields with the catalogue's own labels, its position in the index, and the `inliers` (local
    features that one homography explains) that verified it, in place of a similarity."""
    record = neighbour_record({**item, "score": None})
    record.pop("similarity")
    return {**record, "index": int(position), "inliers": int(inliers)}


def named_markdown(record: dict) -> str:
    """ "This is *Title* by Painter (date)", with its page and the catalogue's labels, as escaped Markdown."""
    title = escape_markdown(record["title"] or "an untitled painting")
    painter = escape_markdown(record["painter"] or "an unknown painter")
    date = f" ({escape_markdown(record['date'])})" if record["date"] else ""
    page = f" [Its page]({record['url']})." if record["url"] else ""
    known = {head: value for head, value in record["labels"].items() if value}
    catalogue = (
        " The catalogue says: " + ", ".join(f"{head} {escape_markdown(value)}" for head, value in known.items()) + "."
        if known
        else ""
    )
    return (
        f"**This is *{title}* by {painter}{date}**, a painting of the collection (matched on "
        f"{record['inliers']} local features).{page}{catalogue} The model's own answers below are its guesses."
    )


@functools.lru_cache(maxsize=THUMBS_CACHED)
def thumbnail_data_uri(path: str, root: str) -> str:
    """A thumbnail inlined as a data: URI (~8 KB): the page needs no request per thumbnail, and the server no
    file handling (see `DemoBackend.similar`). Read only as a regular file inside the export `root` (a link out
    of it is an `ExportError`, even one put in place after the index was loaded), at most THUMB_MAX_BYTES.
    Cached: the index's thumbnails never change while it serves."""
    return "data:image/jpeg;base64," + base64.b64encode(read_inside(root, path, THUMB_MAX_BYTES)).decode("ascii")


def _thumbnail(path: str, root: str | None) -> str | None:
    """`thumbnail_data_uri`, or None (logged, naming the file) for a thumbnail that is no longer a regular file
    inside the export: that card shows no image, and the answer still comes."""
    try:
        return thumbnail_data_uri(str(path), str(root or PurePosixPath(path).parent))
    except ExportError as error:
        LOG.warning("left out a thumbnail: %s", error)
        return None


def neighbours_html(records: list[dict], thumbnails: list[str | None], total: int, root: str | None = None) -> str:
    """The similar paintings as cards: thumbnail shown whole, the full caption under it (labels, similarity,
    "date unknown"), each linked to its wga.hu page when it has a safe one. All catalogue text is escaped.
    `thumbnails`: paths inside the export `root` (by default each thumbnail's own folder)."""
    cards = []
    for record, thumbnail in zip(records, thumbnails, strict=True):
        caption = html_text(neighbour_caption(record))
        uri = _thumbnail(thumbnail, root) if thumbnail else None
        image = f'<img src="{uri}" alt="{caption}">' if uri else ""
        body = f"{image}<figcaption>{caption}</figcaption>"
        if record["url"]:  # a wga.hu page (safe_url): no quotes or markup can be in it
            body = f'<a href="{record["url"]}" target="_blank" rel="noopener noreferrer">{body}</a>'
        cards.append(f"<figure>{body}</figure>")
    header = f"<p>The {len(records)} nearest of the {total:,} paintings of the training collection:</p>"
    return header + f'<div class="artnet-neighbours">{"".join(cards)}</div>'


NEIGHBOURS_CSS = """
.artnet-neighbours { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.artnet-neighbours figure { margin: 0; }
.artnet-neighbours a { color: inherit; text-decoration: none; }
.artnet-neighbours img { display: block; width: 100%; height: 180px; object-fit: contain; }
.artnet-neighbours figcaption { font-size: 0.85em; line-height: 1.3; overflow-wrap: anywhere; }
"""
