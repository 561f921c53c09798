"""The Markdown evaluation report, and `percent`, the one way artnet writes a fraction for a reader.

This module owns text: `format_report_markdown` turns a report (``{"heads": {head: metrics.head_metrics(...)},
**info}``, as `evaluate` and the linear probe write it to `report.json`) into `report.md`, one section per kind
of number: run info, summary, baselines, time in years, the year head, risk against coverage, calibration,
per-class accuracy. It computes nothing; every table and card of artnet (the comparison tables, the demo) formats
its figures through `percent`.
"""

from __future__ import annotations

import numpy as np

_SUMMARY_COLUMNS = (
    ("n", "n"),
    ("top1", "top-1"),
    ("top3", "top-3"),
    ("balanced_accuracy", "balanced acc."),
    ("macro_f1", "macro F1"),
    ("majority_baseline", "training-majority baseline"),
    ("ece", "ECE"),
)
# Shown as fractions with three decimals, not as percentages.
_FRACTIONS = ("ece", "ece_before", "ece_after", "aurc", "aurc_oracle", "aurc_after")


def percent(value, missing: str = "n/a", suffix: str = "%") -> str:
    """A fraction as a percentage with one decimal (`missing` for None or a blank CSV cell): every table and card
    of artnet writes its figures through this one function."""
    return missing if value is None or value == "" else f"{100 * float(value):.1f}{suffix}"


def _cell(key: str, value) -> str:
    if value is None:
        return "n/a"
    if key == "n":
        return str(value)
    if key in _FRACTIONS:
        return f"{value:.3f}"
    return percent(value)


def _escape(text) -> str:
    return str(text).replace("|", "\\|")


def _row(head, cells) -> str:
    return f"| {_escape(head)} | " + " | ".join(cells) + " |"


def _years(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _info_section(report: dict) -> list[str]:
    """The run's strings and numbers as a bullet list (anything nested is left to the JSON report)."""
    info = [
        (key, value)
        for key, value in report.items()
        if key != "heads" and isinstance(value, str | int | float | np.number)
    ]
    return [f"- **{_escape(key)}**: {_escape(value)}" for key, value in info] + [""] if info else []


def _summary_section(heads: dict) -> list[str]:
    lines = [
        "## Summary",
        "",
        "Accuracies in percent; ECE (15 confidence bins) as a fraction. n counts examples with a known label.",
        "",
        "| head | " + " | ".join(title for _, title in _SUMMARY_COLUMNS) + " |",
        "| --- |" + " ---: |" * len(_SUMMARY_COLUMNS),
    ]
    for head, metrics in heads.items():
        lines.append(_row(head, [_cell(key, metrics.get(key)) for key, _ in _SUMMARY_COLUMNS]))
    return lines


def _baselines_section(heads: dict) -> list[str]:
    """Chance and the two majority answers, where the report has them."""
    if not any("chance" in metrics for metrics in heads.values()):
        return []
    lines = [
        "",
        "## Baselines",
        "",
        "What a model scores without looking: guessing uniformly, and always answering one class.",
        "",
        "| head | chance | training majority | this data's majority |",
        "| --- | ---: | --- | --- |",
    ]
    for head, metrics in heads.items():
        cells = [percent(metrics.get("chance"))]
        for key in ("train_majority", "data_majority"):
            named = metrics.get(key)
            cells.append(f"{_escape(named['class'])}: {percent(named['top1'])}" if named else "n/a (no label counts)")
        lines.append(_row(head, cells))
    return lines


def _time_section(heads: dict) -> list[str]:
    """The heads scored in blocks and years (`metrics.timeframe_year_metrics`), where there are any."""
    dated = {head: metrics for head, metrics in heads.items() if "within_one_block" in metrics}
    if not dated:
        return []
    lines = [
        "",
        "## Time in years",
        "",
        "How far in time the top-1 block falls: within one block (the true block or a neighbour) in percent, and "
        "the absolute error in years between the block's centre and the painting's year, over the n paintings "
        "with a known year. Chance: a block drawn uniformly at random.",
        "",
        "| head | ±1 block | chance ±1 | n (years) | mean error (years) | median error (years) | chance mean |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for head, metrics in dated.items():
        cells = [percent(metrics.get("within_one_block")), percent(metrics.get("within_one_block_chance"))]
        cells += [str(metrics.get("year_n", 0))]
        cells += [_years(metrics.get(key)) for key in ("year_mae", "year_median_ae", "year_mae_chance")]
        lines.append(_row(head, cells))
    return lines


def _year_head_section(year: dict | None) -> list[str]:
    """The year head (`artnet.models.year.year_metrics`), where the model has one."""
    if not year:
        return []
    return [
        "",
        "## Year head",
        "",
        "The predicted year (the mean of its Gaussian) against the painting's year, over the n paintings with a "
        "known year. Constant: always answering the training split's mean year "
        f"({_years(year.get('constant_year'))}); chance: a block drawn uniformly at random (its centre). Within σ: "
        "the error is within the model's own standard deviation (about 68 % if σ is honest). Read as a block: the "
        "block of the predicted year against the timeframe label.",
        "",
        "| n | mean error (years) | median error | constant mean | chance mean | within σ | mean σ "
        "| block top-1 | ±1 block |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {year.get('n', 0)} | {_years(year.get('mae'))} | {_years(year.get('median_ae'))} | "
        f"{_years(year.get('mae_constant'))} | {_years(year.get('mae_chance'))} | "
        f"{percent(year.get('within_one_sigma'))} | {_years(year.get('mean_sigma'))} | "
        f"{percent(year.get('block_top1'))} | {percent(year.get('within_one_block'))} |",
    ]


def _risk_coverage_section(heads: dict) -> list[str]:
    """AURC beside the oracle's (`metrics.aurc`), where the report has it (`evaluate` adds it)."""
    scored = {head: values for head, values in heads.items() if "aurc" in values}
    if not scored:
        return []
    lines = [
        "",
        "## Risk against coverage",
        "",
        "Answering only above a confidence (the top-1 probability), the top-1 error among the answered, averaged "
        "over the share answered: the area under the risk-coverage curve (AURC, a fraction; lower is better). The "
        "oracle ranks every right answer first: the least this top-1 accuracy allows. Curves: "
        "`risk_coverage_<head>.png`.",
        "",
        "| head | n | top-1 error | AURC | oracle AURC |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for head, values in scored.items():
        error = None if values.get("top1") is None else 1 - values["top1"]
        cells = [str(values.get("n", 0)), percent(error), _cell("aurc", values.get("aurc"))]
        lines.append(_row(head, cells + [_cell("aurc_oracle", values.get("aurc_oracle"))]))
    return lines


def _calibration_section(calibration: dict | None) -> list[str]:
    """Temperature scaling and conformal sets per head (`calibration.calibration_metrics`), where the report has
    them (an evaluation given a calibration fitted on another split)."""
    if not calibration:
        return []
    lines = [
        "",
        "## Calibration and prediction sets",
        "",
        "T: the temperature fitted on the calibration split; ECE (as a fraction) before and after it. Sets: the "
        "conformal set of each painting, calibrated to hold the true class at the target coverage; coverage is "
        "how often it did here. Answered: the share of single-class sets (the rest abstain and name their set), "
        "and the top-1 accuracy of those answers. Cannot tell: the share of sets holding more than half the "
        "head's classes. AURC after T: the risk-coverage area with the calibrated top probability as confidence.",
        "",
        "| head | n | T | ECE before | ECE after | method | target coverage | coverage | mean set size "
        "| answered | answered top-1 | cannot tell | AURC after T |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for head, values in calibration.items():
        size = values.get("mean_set_size")
        cells = [str(values.get("n", 0)), f"{values['temperature']:.2f}"]
        cells += [_cell("ece", values.get("ece_before")), _cell("ece", values.get("ece_after"))]
        cells += [
            _escape(values.get("method")),
            percent(values.get("coverage_target")),
            percent(values.get("coverage")),
        ]
        cells += ["n/a" if size is None else f"{size:.2f}", percent(values.get("answered"))]
        cells += [percent(values.get("answered_top1")), percent(values.get("cannot_tell"))]
        cells += [_cell("aurc_after", values.get("aurc_after"))]
        lines.append(_row(head, cells))
    return lines


def _per_class_sections(heads: dict) -> list[str]:
    lines = []
    for head, metrics in heads.items():
        lines += ["", f"## Per-class accuracy: {_escape(head)}", ""]
        lines += ["| class | n | accuracy |", "| --- | ---: | ---: |"]
        for name, row in metrics.get("per_class_accuracy", {}).items():
            lines.append(f"| {_escape(name)} | {row['n']} | {percent(row['accuracy'])} |")
    return lines


def format_report_markdown(report: dict) -> str:
    """A Markdown evaluation report: run info, a summary row per head, then per-class accuracy per head.

    `report` is ``{"heads": {head: head_metrics(...)}, **info}``; info values that are strings or numbers
    become the bullet list at the top, anything nested is left to the JSON report. Baselines, time in years,
    the year head, risk against coverage (AURC) and calibration (temperature and prediction sets) each get a section
    where the report has them.
    """
    heads = report.get("heads", {})
    lines = ["# Evaluation report", ""]
    lines += _info_section(report)
    lines += _summary_section(heads)
    lines += _baselines_section(heads)
    lines += _time_section(heads)
    lines += _year_head_section(report.get("year"))
    lines += _risk_coverage_section(heads)
    lines += _calibration_section(report.get("calibration"))
    lines += _per_class_sections(heads)
    return "\n".join(lines) + "\n"
