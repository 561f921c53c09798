"""What the demo page says in words: the model card, each head's title, and the similar paintings as HTML cards.

Every string here ends up in a browser, and much of it comes from the index and the model card, which are data
and may hold anything; so the escaping lives here too (`escape_markdown`, `html_text`, `safe_url`), beside the
text it guards. Plain functions of plain values: no model, no gradio.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from pathlib import Path

from artnet import labels
from artnet.evaluation.metrics import percent

_percent = functools.partial(percent, suffix=" %")
LOW_CONFIDENCE = 0.5
YEAR_TITLE = "When: year (± one standard deviation, the model's own uncertainty)"
SMALL_MODEL_EXAMPLES = 5_000
TITLES = {"school": "Where: school", "timeframe": "When: timeframe", "type": "What: type"}
THUMBS_CACHED = 2048  # data: URIs of index thumbnails kept in memory, ~8 KB each
# The only pages a neighbour may link to: the painting's own page on wga.hu.
WGA_PAGE = re.compile(r"https://www\.wga\.hu/html/[A-Za-z0-9_\-/]+\.html?")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>])")

# --- escaping ----------------------------------------------------------------------------------------------


def escape_markdown(text) -> str:
    """Catalogue text as literal Markdown: HTML escaped and every Markdown character backslashed, so a title
    such as `Madonna](https://evil.example) [x` or `<img src=...>` shows as text, never as a link or a tag."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=True))


def safe_url(url) -> str | None:
    """`url` when it is a wga.hu painting page, else None (the index is data: it may hold anything)."""
    url = str(url or "")
    return url if WGA_PAGE.fullmatch(url) and ".." not in url else None


def html_text(text) -> str:
    """Catalogue text for the page's HTML: every tag and quote escaped, and `$` and backticks too, because
    gr.HTML fills its value into a JavaScript template literal (a title cannot become markup or a placeholder)."""
    return html.escape(str(text), quote=True).replace("$", "&#36;").replace("`", "&#96;")


# --- the model card ----------------------------------------------------------------------------------------


def is_sample_scale(card: dict) -> bool:
    train_examples = card.get("train_examples")
    return train_examples is not None and train_examples < SMALL_MODEL_EXAMPLES


def model_card_facts(card: dict) -> str:
    """The key facts, shown at the top of the page: what the model saw, how it did on its test split, and what
    chance and always answering the test split's majority class would score."""
    painters = card.get("train_painters")
    trained = f"{card.get('train_examples', 'an unrecorded number of')} training images"
    trained += f" by {painters} painters" if painters else " (painters not recorded)"
    lines = [f"**About this model:** {trained}, from {escape_markdown(card.get('data', 'unrecorded data'))}."]
    test = card.get("test") or {}
    if test:
        first = next(iter(test.values()))
        test_painters = card.get("test_painters")
        lines[0] += f" Tested on {first.get('n', '?')} images" + (
            f" by {test_painters} painters." if test_painters else " (painters not recorded)."
        )
    for head, result in test.items():
        chance = 1 / len(labels.VOCABULARIES[head]) if head in labels.VOCABULARIES else None
        majority = result.get("data_majority") or {}
        against = f"chance {_percent(chance)}"
        if majority.get("top1") is not None:
            against += f", always answering the test majority ({escape_markdown(majority.get('class'))}) " + _percent(
                majority["top1"]
            )
        elif result.get("majority_baseline") is not None:
            against += f", always answering the training majority {_percent(result['majority_baseline'])}"
        else:
            against += ", majority baseline not recorded"
        lines.append(f"- {head}: balanced accuracy {_percent(result.get('balanced_accuracy'))} ({against})")
    year = card.get("test_year") or {}
    if year.get("mae") is not None:
        constant = year.get("mae_constant")
        lines.append(
            f"- year: mean error {year['mae']:.0f} years over {year.get('n', '?')} dated test paintings"
            + (f" (always answering the training mean year: {constant:.0f} years)" if constant is not None else "")
        )
    if is_sample_scale(card):
        lines.append(
            f"- **A small sample-scale model** ({card['train_examples']} training images): its answers demonstrate "
            "the pipeline; they are not an expert's opinion."
        )
    return "\n".join(lines)


def model_card_markdown(card: dict) -> str:
    lines = ["### Model card", ""]
    lines.append(
        f"- **Backbone:** {escape_markdown(card.get('backbone', '?'))} at {card.get('image_size', '?')} px, "
        f"{card.get('parameters', 0) / 1e6:.1f} M parameters, heads: {', '.join(card.get('heads', []))}"
    )
    train_examples = card.get("train_examples")
    if card.get("data"):
        lines.append(
            f"- **Trained on:** {escape_markdown(card['data'])}"
            + (f" ({train_examples} images)" if train_examples else "")
        )
    for head, result in (card.get("test") or {}).items():
        if result.get("top1") is not None:
            lines.append(
                f"- **Test {head}:** top-1 {100 * result['top1']:.1f} %, top-3 {100 * result['top3']:.1f} %, "
                f"balanced {100 * result['balanced_accuracy']:.1f} % over {result['n']} images"
            )
    if is_sample_scale(card):
        lines += [
            "",
            f"**This is a small sample-scale model** ({train_examples} training images): its answers are a "
            "demonstration of the pipeline, not an expert's opinion.",
        ]
    return "\n".join(lines)


# --- one answer: the heads and the similar paintings -------------------------------------------------------


def label_value(ranked: list[tuple[str, float]]) -> dict[str, float]:
    """gr.Label's value for one head: its top classes and their probabilities."""
    return {name: float(p) for name, p in ranked}


def head_title(head: str, ranked: list[tuple[str, float]]) -> str:
    """The head's label on the page, which says in words what it answers, or that it is unsure."""
    top, probability = ranked[0]
    if probability >= LOW_CONFIDENCE:
        return f"{TITLES[head]}: {top} ({100 * probability:.0f} %)"
    return f"{TITLES[head]}: unsure (best guess {top}, {100 * probability:.0f} %)"


def neighbour_record(item: dict) -> dict:
    """One similar painting as structured data (what /classify returns beside the cards)."""
    item_labels = item.get("labels") or {}
    return {
        "title": item.get("title") or None,
        "painter": item.get("author") or None,
        "date": item.get("date") if item.get("date") not in (None, "", "-") else None,
        "labels": {head: item_labels.get(head) for head in labels.HEADS},
        "similarity": round(float(item["score"]), 4),
        "url": safe_url(item.get("url")),
    }


def neighbour_caption(record: dict) -> str:
    """Plain text (escaped where the page shows it): painter, title, date, labels, similarity."""
    known = [value for value in record["labels"].values() if value]
    return (
        f"{record['painter'] or 'unknown painter'}, {record['title'] or 'untitled'} "
        f"({record['date'] or 'date unknown'})" + (f"; {', '.join(known)}" if known else "") + f"; "
        f"similarity {record['similarity']:.2f}"
    )


@functools.lru_cache(maxsize=THUMBS_CACHED)
def thumbnail_data_uri(path: str) -> str:
    """A thumbnail inlined as a data: URI (~8 KB): the page needs no request per thumbnail, and the server no
    file handling (see `DemoBackend.similar`). Cached: the index's thumbnails never change while it serves."""
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def neighbours_html(records: list[dict], thumbnails: list[str | None], total: int) -> str:
    """The similar paintings as cards: thumbnail shown whole, the full caption under it (labels, similarity,
    "date unknown"), each linked to its wga.hu page when it has a safe one. All catalogue text is escaped."""
    cards = []
    for record, thumbnail in zip(records, thumbnails, strict=True):
        caption = html_text(neighbour_caption(record))
        image = f'<img src="{thumbnail_data_uri(thumbnail)}" alt="{caption}">' if thumbnail else ""
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
