"""Batch prediction over files: folders and files in, one JSON line (or CSV row) per image out.

A bad file gives an error record and never stops the rest; decoding runs in a small thread pool a little ahead
of the forward passes (PIL and TF release the GIL), so memory stays bounded to a few batches. Each record says
what the photo step did (`outline`, `found`) and, for an export whose index holds local features, which painting
of the collection the photo shows (`named`: its index, painter, title, date, URL, the catalogue's labels and the
`inliers` that verified it; null when none is sure enough), as the demo's API answers.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artnet import labels
from artnet.data.images import ImageError, read_path
from artnet.models.artnet import EMBEDDING
from artnet.serving.predictor import SETS, Predictor, check_top_k
from artnet.serving.similar import SimilarityIndex
from artnet.workdir import Export

YEAR_SIGMA_COLUMN = "year_sigma"
NAMED = "named"
PAINTING = "painting"  # the cut-out's pixels, carried from decoding to naming
NAMED_COLUMNS = ("index", "painter", "title", "date", "url", "inliers")  # CSV: named_index, named_painter, ...
NAMING_CANDIDATES = 6  # the embedding's nearest paintings verified for naming (the demo's similar paintings)
SET_SEPARATOR = "|"  # a set's labels in one CSV cell: "Dutch|Flemish"

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


# --- batch prediction over files -------------------------------------------------------------------------


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files as given (whatever their extension, so a bad one gets its error line), folders recursively
    (sorted) for image extensions. A path that does not exist is kept: it gets a "no such file" line."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            paths.extend(sorted(found))
        else:
            paths.append(path)
    return paths


def index_namer(model) -> Callable[[np.ndarray, np.ndarray], dict | None] | None:
    """For an export folder (or a model inside one) whose index holds local features: a function from a
    painting's RGB pixels and the model's embedding of it to the record of the indexed painting it shows, or None
    (the embedding's nearest paintings are the candidates verified, as in the demo). Else None: nothing is named."""
    if not isinstance(model, str | os.PathLike):
        return None
    files = Export.of(Path(model))
    if not os.path.lexists(files.index.features):
        return None
    index = SimilarityIndex.load(files.index.root, root=files.root)  # ExportError, naming the file

    def name(painting: np.ndarray, embedding: np.ndarray) -> dict | None:
        return index.name(painting, [item["position"] for item in index.query(embedding, NAMING_CANDIDATES)])

    return name


def predict_paths(
    predictor: Predictor,
    paths: list[Path],
    batch_size: int = 16,
    top_k: int | None = None,
    namer: Callable[[np.ndarray, np.ndarray], dict | None] | None = None,
) -> Iterator[dict]:
    """One JSON-friendly record per path, in input order; a bad file gives `ok: False` and never stops the rest.

    Files are decoded and resized in a small thread pool (PIL and TF release the GIL) a little ahead of the
    forward passes, so decoding overlaps inference while memory stays bounded to a few batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    def prepare(path: Path):
        try:
            # Under 32 px a side, or a sliver: refused (ImageShapeError); a photo's painting is found and cut out.
            painting, where = predictor.painting(read_path(Path(path)))
            # The painting's pixels stay with it until its forward pass: naming verifies the embedding's nearest.
            where[PAINTING] = painting if namer is not None else None
            return predictor.fit_pixels(painting), where, None
        except ImageError as error:
            return None, None, str(error)
        except Exception as error:  # noqa: BLE001 (one strange file must not abort a batch of thousands)
            return None, None, f"{type(error).__name__}: {error}"

    workers = max(1, min(4, os.cpu_count() or 1))
    pending: collections.deque = collections.deque()
    remaining = iter(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="artnet-decode") as pool:

        def submit_next() -> None:
            path = next(remaining, None)
            if path is not None:
                pending.append((path, pool.submit(prepare, path)))

        for _ in range(2 * batch_size):
            submit_next()
        chunk: list[tuple[Path, np.ndarray | None, dict | None, str | None]] = []
        while pending:
            path, future = pending.popleft()
            submit_next()
            chunk.append((path, *future.result()))
            if len(chunk) == batch_size or not pending:
                yield from _predict_chunk(predictor, chunk, top_k, namer)
                chunk = []


def _predict_chunk(predictor: Predictor, chunk: list, top_k: int | None, namer=None) -> Iterator[dict]:
    good = [(pixels, where) for _, pixels, where, _ in chunk if pixels is not None]
    paintings = [where.pop(PAINTING, None) for _, where in good]  # not a field of the prediction
    predictions = iter(predictor.predict_pixels([pixels for pixels, _ in good], [where for _, where in good], top_k))
    for path, pixels, where, error in chunk:
        if pixels is None:
            yield {"path": display_path(path), "ok": False, "error": error}
            continue
        prediction = next(predictions)
        painting = paintings.pop(0)
        record = {"path": display_path(path), "ok": True, "outline": where["outline"], "found": where["found"]}
        record[NAMED] = namer(painting, prediction[EMBEDDING]) if namer is not None else None
        for head in predictor.heads:
            record[head] = [[label, round(probability, 6)] for label, probability in prediction[head]]
        if SETS in prediction:  # a calibrated model: per head, its conformal set (most probable first)
            record[SETS] = prediction[SETS]
        if labels.YEAR in prediction:
            mean, sigma = prediction[labels.YEAR]
            record[labels.YEAR], record[YEAR_SIGMA_COLUMN] = known_year(mean), known_year(sigma)
        yield record


def known_year(value: float) -> float | None:
    """A year (or its spread) rounded to a tenth, or None (null: unknown) where the head gave no finite number:
    a NaN would make the line invalid JSON."""
    return round(float(value), 1) if math.isfinite(value) else None


def display_path(path: Path) -> str:
    """`path` as printable UTF-8 text: bytes of a name that is not valid UTF-8 (kept by Python as surrogate
    escapes) become `\\xNN`, so JSON and CSV writers accept every name and the record still says which file."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def csv_columns(heads: Iterable[str], top_k: int, year: bool = False, sets: Iterable[str] = ()) -> list[str]:
    """path, ok, error, outline, found, `named_<field>` (the painting named: empty when none), then `<head>_<rank>`
    and `<head>_<rank>_p` for each head and rank (and `year`, `year_sigma` with a year head), then `<head>_set` for
    each head of `sets` (a calibrated model's)."""
    columns = ["path", "ok", "error", "outline", "found", *(f"{NAMED}_{key}" for key in NAMED_COLUMNS)]
    for head in heads:
        for rank in range(1, top_k + 1):
            columns += [f"{head}_{rank}", f"{head}_{rank}_p"]
    columns += [labels.YEAR, YEAR_SIGMA_COLUMN] if year else []
    return columns + [set_column(head) for head in sets]


def set_column(head: str) -> str:
    return f"{head}_set"


def _csv_row(record: dict, heads: Iterable[str]) -> dict:
    outline = record.get("outline")
    row = {
        "path": spreadsheet_safe(record["path"]),
        "ok": record["ok"],
        "error": spreadsheet_safe(record.get("error", "")),
        "outline": "" if outline is None else json.dumps(outline),
        "found": record.get("found", ""),
    }
    named = record.get(NAMED) or {}
    for key in NAMED_COLUMNS:
        value = named.get(key)
        row[f"{NAMED}_{key}"] = "" if value is None else spreadsheet_safe(value) if isinstance(value, str) else value
    for head in heads:
        for rank, (label, probability) in enumerate(record.get(head, []), start=1):
            row[f"{head}_{rank}"] = label
            row[f"{head}_{rank}_p"] = probability
    for key in (labels.YEAR, YEAR_SIGMA_COLUMN):
        if key in record:
            row[key] = record[key]
    for head, members in record.get(SETS, {}).items():
        row[set_column(head)] = SET_SEPARATOR.join(members)
    return row


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet will show as text, never run as a formula (OWASP's CSV-injection rule: a leading
    =, +, -, @, tab or carriage return gets a single quote before it). File names come from anyone."""
    return f"'{text}" if text and text[0] in "=+-@\t\r" else text


def run_batch_prediction(
    model, inputs: list[str], out: str | None, top_k: int = 3, batch_size: int = 16, locate_painting: bool = True
) -> int:
    """Predict every image under `inputs` into `out` (JSON lines; CSV when it ends in .csv; stdout for None/"-").

    Returns 0 when the batch completed, even if some files failed (each has its own error record); 1 when the
    inputs hold no file at all (likely a wrong folder). `model` is an ArtNet, a model path or a `Predictor`.
    Each record says where the painting was found (`outline`, or null for the whole image; `locate_painting`
    False takes every image whole). With a calibrated model, each also holds per head its prediction set
    (`sets`: {head: [labels]} in JSON lines, a `<head>_set` column of `|`-joined labels in CSV).
    """
    paths = expand_inputs(inputs)
    if not paths:
        print(f"no image files found in {', '.join(map(str, inputs)) or 'the inputs'}", file=sys.stderr)
        return 1
    top_k = check_top_k(top_k)
    predictor = (
        model if isinstance(model, Predictor) else Predictor(model, top_k=top_k, locate_painting=locate_painting)
    )
    namer = index_namer(model)
    to_stdout = out is None or str(out) == "-"
    as_csv = not to_stdout and str(out).lower().endswith(".csv")
    if not to_stdout:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    stream = (
        sys.stdout
        if to_stdout
        else open(out, "w", newline="" if as_csv else None, encoding="utf-8", errors="backslashreplace")
    )
    counts = collections.Counter()
    try:
        writer = None
        if as_csv:
            columns = csv_columns(predictor.heads, top_k, predictor.year_head, sets=predictor.calibration)
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
        with tqdm(total=len(paths), unit="img", file=sys.stderr, desc="predict") as progress:
            for record in predict_paths(predictor, paths, batch_size=batch_size, top_k=top_k, namer=namer):
                if writer is not None:
                    writer.writerow(_csv_row(record, predictor.heads))
                else:
                    stream.write(json.dumps(record) + "\n")
                counts["ok" if record["ok"] else "failed"] += 1
                progress.update(1)
        stream.flush()
    finally:
        if not to_stdout:
            stream.close()
    destination = "stdout" if to_stdout else out
    print(f"{counts['ok']} ok, {counts['failed']} failed, {len(paths)} files -> {destination}", file=sys.stderr)
    return 0
