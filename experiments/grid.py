"""Single- vs multi-head, as a grid: arms x loss weightings x seeds x training fractions, resumable, then the
statistics (`artnet.evaluation.mtl_stats`): per-head multi minus single and Δm with paired bootstrap intervals, learning
curves, training and inference cost.

    # the whole grid of the cpu recipe (resumable: finished runs are skipped, a killed run resumes):
    .venv/bin/python experiments/grid.py
    # what is left and how long it will take, training nothing:
    .venv/bin/python experiments/grid.py --dry-run
    # only the tables and plots, from the finished runs:
    .venv/bin/python experiments/grid.py --report-only
    # another recipe (with its options), a smaller grid, overrides for every run:
    .venv/bin/python experiments/grid.py --recipe experiments/configs/full.py:split=random --runs runs/grid_full \\
        --out experiments/results/grid_full --strategies fixed,pcgrad --seeds 0,1,2 --set data.batch_size=16

Each run is `run_experiment(apply_overrides(load_config("<recipe>:<arm>"), ["loss_weighting=<s>", "seed=<k>",
"data.train_fraction=<f>", *--set]), "<runs>/<arm>/<s>/seed<k>/frac<f>")`. A loss weighting only matters with
more than one head, so single-head arms run `fixed` only (the others are skipped, and said so). Runs go seed by
seed, smallest fraction first: after the first seed every setting has one result.

Writes under --out: runs.csv (one row per run and head), differences.csv (per head, multi minus single),
delta_m.csv (Δm per strategy and fraction), cost.csv, grid.md (all of them as tables) and
learning_curve_<head>.png. See experiments/results/README.md for the columns.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import importlib.util
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from artnet import labels  # noqa: E402
from artnet.config import ARMS  # noqa: E402
from artnet.evaluation import mtl_stats  # noqa: E402
from artnet.workdir import Workdir  # noqa: E402

HERE = Path(__file__).resolve().parent
RECIPE = str(HERE / "configs" / "cpu.py")
STRATEGIES = ("fixed", "uncertainty", "dwa", "pcgrad")  # artnet.models.weighting.STRATEGIES (no TF here)
SEEDS = (0, 1, 2)
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
MULTI = "multihead"

RUN_COLUMNS = (
    "arm",
    "strategy",
    "seed",
    "fraction",
    "train_painters",
    "train_examples",
    "head",
    "n",
    "top1",
    "balanced_accuracy",
    "train_seconds",
    "parameters",
    "workdir",
)
DIFFERENCE_COLUMNS = (
    "fraction",
    "train_painters",
    "strategy",
    "head",
    "metric",
    "seeds_multi",
    "seeds_single",
    "multi",
    "single",
    "difference",
    "low",
    "high",
)
DELTA_M_COLUMNS = ("fraction", "train_painters", "strategy", "metric", "heads", "seeds_multi", "delta_m", "low", "high")
COST_COLUMNS = (
    "arm",
    "strategy",
    "fraction",
    "runs",
    "train_seconds_mean",
    "train_seconds_min",
    "train_seconds_max",
    "parameters",
    "ms_per_image",
)


@dataclasses.dataclass(frozen=True)
class Run:
    arm: str
    strategy: str
    seed: int
    fraction: float

    def workdir(self, runs: Path) -> Workdir:
        return Workdir(runs / self.arm / self.strategy / f"seed{self.seed}" / f"frac{self.fraction:g}")


def arm_spec(recipe: str, arm: str) -> str:
    """`experiments/configs/cpu.py` or `cpu.py:split=image` and an arm -> `cpu.py:<arm>[,split=image]`."""
    path, _, options = recipe.partition(":")
    return f"{path}:{arm}" + (f",{options}" if options else "")


def multi_head(arm: str) -> bool:
    return len(ARMS[arm]) > 1


def plan(arms, strategies, seeds, fractions) -> tuple[list[Run], int]:
    """The runs of the grid (seed by seed, smallest fraction first), and how many single-head runs of a strategy
    other than `fixed` were left out."""
    runs, skipped = [], 0
    for seed in seeds:
        for fraction in sorted(fractions):
            for arm in arms:
                for strategy in strategies:
                    if not multi_head(arm) and strategy != "fixed":
                        skipped += 1
                        continue
                    runs.append(Run(arm, strategy, seed, fraction))
            for arm in arms:  # a single-head arm is the baseline whatever strategies were asked for
                if not multi_head(arm) and "fixed" not in strategies:
                    runs.append(Run(arm, "fixed", seed, fraction))
    return runs, skipped


def estimate(runs: list[Run], runs_dir: Path) -> dict[float, dict]:
    """Per fraction: finished and remaining runs, the mean training seconds of the finished ones (train_summary
    `seconds`), and the remaining seconds. A fraction with no finished run borrows the others' mean seconds per
    unit of fraction, scaled to it (cost grows with the training set); `basis` says which."""
    seconds: dict[float, list[float]] = {}
    remaining: dict[float, int] = {}
    for run in runs:
        workdir = run.workdir(runs_dir)
        if workdir.finished():
            value = workdir.read_train_summary().get("seconds")
            if value is not None:
                seconds.setdefault(run.fraction, []).append(float(value))
            remaining.setdefault(run.fraction, 0)
        else:
            remaining[run.fraction] = remaining.get(run.fraction, 0) + 1
    per_unit = [value / fraction for fraction, values in seconds.items() for value in values]
    result = {}
    for fraction in sorted(remaining):
        done = seconds.get(fraction, [])
        if done:
            mean, basis = float(np.mean(done)), "measured"
        elif per_unit:
            mean, basis = float(np.mean(per_unit)) * fraction, "scaled from other fractions"
        else:
            mean, basis = None, "no finished run yet"
        result[fraction] = {
            "finished": len(done),
            "remaining": remaining[fraction],
            "mean_seconds": mean,
            "remaining_seconds": None if mean is None else mean * remaining[fraction],
            "basis": basis,
        }
    return result


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_estimate(runs: list[Run], runs_dir: Path) -> dict[float, dict]:
    table = estimate(runs, runs_dir)
    total = 0.0
    unknown = False
    for fraction, row in table.items():
        mean = "?" if row["mean_seconds"] is None else f"{row['mean_seconds']:.1f} s"
        print(
            f"  fraction {fraction:g}: {row['remaining']} to run, {row['finished']} finished; "
            f"mean {mean} per run ({row['basis']}) -> {_duration(row['remaining_seconds'])}"
        )
        if row["remaining"]:
            unknown |= row["remaining_seconds"] is None
            total += row["remaining_seconds"] or 0.0
    left = sum(row["remaining"] for row in table.values())
    print(f"remaining: {left} runs, about {'?' if unknown else _duration(total)} (training time only)", flush=True)
    return table


def train_missing(runs: list[Run], runs_dir: Path, recipe: str, overrides: list[str]) -> int:
    """Train every run whose workdir is not finished; returns how many were trained."""
    from artnet.config import apply_overrides, load_config
    from artnet.run import run_experiment

    todo = [run for run in runs if not run.workdir(runs_dir).finished()]
    for number, run in enumerate(todo, 1):
        workdir = run.workdir(runs_dir)
        options = [f"loss_weighting={run.strategy}", f"seed={run.seed}", f"data.train_fraction={run.fraction}"]
        config = apply_overrides(load_config(arm_spec(recipe, run.arm)), [*options, *overrides])
        print(f"[{number}/{len(todo)}] {run.arm} {run.strategy} seed {run.seed} fraction {run.fraction:g}", flush=True)
        run_experiment(config, workdir.root, similarity_index=False)  # compared, never served
        _release_models()
        if number < len(todo):
            print_estimate(runs, runs_dir)
    return len(todo)


def _release_models() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


# --- report ---------------------------------------------------------------------------------------------


def finished_runs(runs_dir: Path, arms=None, strategies=None, seeds=None, fractions=None) -> list[Run]:
    """Every finished run under `runs_dir` (<arm>/<strategy>/seed<k>/frac<f>), filtered by what is given."""
    found = []
    for path in sorted(runs_dir.glob("*/*/seed*/frac*")):
        arm, strategy = path.parent.parent.parent.name, path.parent.parent.name
        try:
            run = Run(arm, strategy, int(path.parent.name[4:]), float(path.name[4:]))
        except ValueError:
            continue
        if arm not in ARMS or not Workdir(path).finished():
            continue
        if (
            (arms and arm not in arms)
            or (strategies and strategy not in strategies and multi_head(arm))
            or (seeds is not None and run.seed not in seeds)
            or (fractions and not any(np.isclose(run.fraction, f) for f in fractions))
        ):
            continue
        found.append(run)
    return sorted(found, key=lambda r: (r.fraction, list(ARMS).index(r.arm), r.strategy, r.seed))


@dataclasses.dataclass
class Loaded:
    run: Run
    predictions: dict[str, np.ndarray]
    card: dict
    summary: dict
    workdir: Workdir


def load(run: Run, runs_dir: Path) -> Loaded:
    workdir = run.workdir(runs_dir)
    with np.load(workdir.test_evaluation.predictions) as data:
        predictions = {key: data[key] for key in data.files}
    return Loaded(run, predictions, workdir.export.read_card(), workdir.read_train_summary(), workdir)


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def report(
    runs_dir: Path,
    out: Path,
    runs: list[Run],
    n_resamples: int = 1000,
    resample_seeds: bool = True,
    timing: bool = True,
    command: str = "",
) -> dict[str, list[dict]]:
    """Tables and plots of the finished `runs` under `out`; returns the tables' rows."""
    loaded = [load(run, runs_dir) for run in runs]
    if not loaded:
        raise SystemExit(f"no finished runs under {runs_dir}: nothing to report")
    out.mkdir(parents=True, exist_ok=True)
    run_rows = []
    for item in loaded:
        heads = [h for h in labels.HEADS if h in item.predictions]
        values = {
            head: mtl_stats.metric_values(item.predictions[f"{head}_true"], item.predictions[head].argmax(axis=1))
            for head in heads
        }
        for head in heads:
            run_rows.append(
                {
                    **dataclasses.asdict(item.run),
                    "train_painters": item.card.get("train_painters"),
                    "train_examples": item.card.get("train_examples"),
                    "head": head,
                    "n": int((item.predictions[f"{head}_true"] >= 0).sum()),
                    "top1": float(values[head]["top1"][0]),
                    "balanced_accuracy": float(values[head]["balanced_accuracy"][0]),
                    "train_seconds": item.summary.get("seconds"),
                    "parameters": item.summary.get("parameters"),
                    "workdir": str(item.workdir.root),
                }
            )

    # Groups: one per (arm, strategy, fraction), its seeds in order.
    by_group: dict[tuple, list[Loaded]] = {}
    for item in loaded:
        by_group.setdefault((item.run.arm, item.run.strategy, item.run.fraction), []).append(item)
    groups = {key: mtl_stats.Group.from_predictions([i.predictions for i in items]) for key, items in by_group.items()}
    painters = {key: _mean_or_none([i.card.get("train_painters") for i in items]) for key, items in by_group.items()}
    result = mtl_stats.bootstrap(groups, n_resamples=n_resamples, resample_seeds=resample_seeds)

    difference_rows, delta_rows = [], []
    multi_keys = sorted((key for key in groups if multi_head(key[0])), key=lambda k: (k[2], STRATEGIES.index(k[1])))
    for key in multi_keys:
        arm, strategy, fraction = key
        singles = {
            head: (f"single_{head}", "fixed", fraction)
            for head in groups[key].y_pred
            if (f"single_{head}", "fixed", fraction) in groups
        }
        for metric in mtl_stats.METRICS:
            for head, single in singles.items():
                difference_rows.append(
                    {
                        "fraction": fraction,
                        "train_painters": painters[key],
                        "strategy": strategy,
                        "head": head,
                        "metric": metric,
                        "seeds_multi": groups[key].seeds,
                        "seeds_single": groups[single].seeds,
                        **mtl_stats.difference(result, metric, key, single, head),
                    }
                )
            if singles:
                delta = mtl_stats.delta_m(result, metric, key, singles)
                delta_rows.append(
                    {
                        "fraction": fraction,
                        "train_painters": painters[key],
                        "strategy": strategy,
                        "metric": metric,
                        "heads": "+".join(delta["heads"]),
                        "seeds_multi": groups[key].seeds,
                        "delta_m": delta["delta_m"],
                        "low": delta["low"],
                        "high": delta["high"],
                    }
                )

    timings = time_arms(loaded) if timing else {}
    cost_rows = []
    for (arm, strategy, fraction), items in sorted(
        by_group.items(), key=lambda kv: (list(ARMS).index(kv[0][0]), kv[0][1], kv[0][2])
    ):
        seconds = [i.summary.get("seconds") for i in items if i.summary.get("seconds") is not None]
        cost_rows.append(
            {
                "arm": arm,
                "strategy": strategy,
                "fraction": fraction,
                "runs": len(items),
                "train_seconds_mean": _mean_or_none(seconds),
                "train_seconds_min": min(seconds) if seconds else None,
                "train_seconds_max": max(seconds) if seconds else None,
                "parameters": items[0].summary.get("parameters"),
                "ms_per_image": timings.get(arm),
            }
        )

    plots = plot_curves(run_rows, out)
    tables = {"runs": run_rows, "differences": difference_rows, "delta_m": delta_rows, "cost": cost_rows}
    columns = {"runs": RUN_COLUMNS, "differences": DIFFERENCE_COLUMNS, "delta_m": DELTA_M_COLUMNS, "cost": COST_COLUMNS}
    for name, rows in tables.items():
        with (out / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns[name])
            writer.writeheader()
            writer.writerows(rows)
    notes = [
        f"command: `{command}`" if command else "",
        f"runs: {len(loaded)} finished under `{runs_dir}`",
        f"intervals: 95 % percentile bootstrap, {n_resamples} replicates; each replicate resamples the test "
        + ("painters (whole painters, with all their paintings)" if result.by_painter else "images")
        + " once for all runs (paired) and "
        + (
            "the seeds of each setting, independently, with replacement (image and seed noise)"
            if resample_seeds
            else "averages over each setting's seeds (image noise only)"
        ),
        "single-head arms are trained with `fixed` weights only (a loss weighting needs more than one head); every "
        "strategy of `multihead` is compared with the same single-head runs",
        "Δm (LibMTL): mean over heads of (multi - single) / single x 100 %, on the named metric",
        f"learning curves: {', '.join(f'`{p.name}`' for p in plots)}",
    ]
    (out / "grid.md").write_text(to_markdown(tables, [n for n in notes if n], timings))
    return tables


def time_arms(loaded: list[Loaded]) -> dict[str, float]:
    """ms/image of one model per arm (its largest fraction, lowest seed; the strategy does not change the network),
    timed side by side by `experiments/compare.py`'s `time_models`."""
    chosen: dict[str, Loaded] = {}
    for item in loaded:
        best = chosen.get(item.run.arm)
        if best is None or (item.run.fraction, -item.run.seed) > (best.run.fraction, -best.run.seed):
            chosen[item.run.arm] = item
    spec = importlib.util.spec_from_file_location("experiments_compare", HERE / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    return compare.time_models({arm: item.workdir.model for arm, item in chosen.items()})


def plot_curves(run_rows: list[dict], out: Path) -> list[Path]:
    """Per head, balanced accuracy vs training painters: one line per arm/strategy, mean over seeds, min-max band."""
    paths = []
    for head in labels.HEADS:
        rows = [row for row in run_rows if row["head"] == head]
        if not rows:
            continue
        use_painters = all(row["train_painters"] for row in rows)
        points: dict[str, dict[float, list[dict]]] = {}
        for row in rows:
            label = f"{row['arm']} / {row['strategy']}" if multi_head(row["arm"]) else row["arm"]
            points.setdefault(label, {}).setdefault(row["fraction"], []).append(row)
        curves = {}
        for label, by_fraction in points.items():
            curve = []
            for fraction, items in by_fraction.items():
                x = float(np.mean([r["train_painters"] for r in items])) if use_painters else 100 * fraction
                values = [r["balanced_accuracy"] for r in items]
                curve.append((x, float(np.mean(values)), float(min(values)), float(max(values))))
            curves[label] = curve
        path = mtl_stats.plot_learning_curves(
            curves,
            out / f"learning_curve_{head}.png",
            title=f"{head}: test balanced accuracy (mean over seeds, band min-max)",
            xlabel="training painters" if use_painters else "training painters, % of all",
            chance=1.0 / len(labels.VOCABULARIES[head]),
        )
        paths.append(path)
    return paths


def _pct(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _num(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_markdown(tables: dict[str, list[dict]], notes: list[str], timings: dict[str, float]) -> str:
    lines = ["# Single- vs multi-head grid", ""] + [f"- {note}" for note in notes] + [""]
    lines += [
        "## Δm against the single-head arms (%, 95 % CI)",
        "",
        "| fraction | train painters | strategy | metric | heads | seeds | Δm % [95 % CI] |",
        "| ---: | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for row in tables["delta_m"]:
        lines.append(
            f"| {row['fraction']:g} | {_num(row['train_painters'], 0)} | {row['strategy']} | {row['metric']} | "
            f"{row['heads']} | {row['seeds_multi']} | {row['delta_m']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}] |"
        )
    lines += [
        "",
        "## Per head: multi minus single (points, 95 % CI)",
        "",
        "| fraction | strategy | head | metric | seeds multi/single | multi % | single % | difference [95 % CI] |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in tables["differences"]:
        lines.append(
            f"| {row['fraction']:g} | {row['strategy']} | {row['head']} | {row['metric']} | "
            f"{row['seeds_multi']}/{row['seeds_single']} | {_pct(row['multi'])} | {_pct(row['single'])} | "
            f"{_pct(row['difference'], True)} [{_pct(row['low'], True)}, {_pct(row['high'], True)}] |"
        )
    lines += [
        "",
        "## Cost",
        "",
        "| arm | strategy | fraction | runs | train s mean [min, max] | params | ms/img |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in tables["cost"]:
        lines.append(
            f"| {row['arm']} | {row['strategy']} | {row['fraction']:g} | {row['runs']} | "
            f"{_num(row['train_seconds_mean'])} [{_num(row['train_seconds_min'])}, {_num(row['train_seconds_max'])}] "
            f"| {row['parameters'] or ''} | {_num(row['ms_per_image'], 2)} |"
        )
    singles = [f"single_{head}" for head in labels.HEADS if f"single_{head}" in timings]
    if MULTI in timings and len(singles) == len(labels.HEADS):
        three = sum(timings[arm] for arm in singles)
        lines += [
            "",
            f"Inference (batch 8, median of 5 interleaved rounds): one {MULTI} pass {timings[MULTI]:.2f} ms/image, "
            f"the single-head passes together {three:.2f} ms/image ({three / timings[MULTI]:.2f}x).",
        ]
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------------------


def _list(kind):
    def parse(text: str):
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=RECIPE, help="recipe file[:options]; the arm is added per run")
    parser.add_argument("--runs", type=Path, default=Path("runs/grid"), help="grid root: <arm>/<strategy>/seed<k>/...")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/grid"), help="results folder")
    parser.add_argument("--arms", type=_list(str), default=None, help=f"comma list (default all: {','.join(ARMS)})")
    parser.add_argument("--strategies", type=_list(str), default=None, help=f"default {','.join(STRATEGIES)}")
    parser.add_argument("--seeds", type=_list(int), default=None, help=f"default {','.join(map(str, SEEDS))}")
    parser.add_argument("--fractions", type=_list(float), default=None, help=f"default {','.join(map(str, FRACTIONS))}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and the time left; train nothing")
    parser.add_argument("--report-only", action="store_true", help="tables and plots from the finished runs only")
    parser.add_argument("--no-timing", action="store_true", help="skip the ms/image timing of one model per arm")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument(
        "--no-seed-resampling", action="store_true", help="intervals over test images only (average the seeds)"
    )
    args = parser.parse_args(argv)

    arms = args.arms or tuple(ARMS)
    strategies = args.strategies or STRATEGIES
    seeds = args.seeds if args.seeds is not None else SEEDS
    fractions = args.fractions or FRACTIONS
    for arm in arms:
        if arm not in ARMS:
            parser.error(f"unknown arm {arm!r}; the arms are {', '.join(ARMS)}")
    for strategy in strategies:
        if strategy not in STRATEGIES:
            parser.error(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    for fraction in fractions:
        if not 0 < fraction <= 1:
            parser.error(f"fractions must be in (0, 1], got {fraction}")

    runs, skipped = plan(arms, strategies, seeds, fractions)
    if len(seeds) < 3:
        print(f"note: {len(seeds)} seed(s); the question needs at least 3 for a seed interval worth the name")
    if skipped:
        print(
            f"single-head arms run `fixed` only: a loss weighting only matters with more than one head "
            f"({skipped} runs of other strategies skipped)"
        )
    if not args.report_only:
        finished = sum(run.workdir(args.runs).finished() for run in runs)
        print(f"grid: {len(runs)} runs under {args.runs}, {finished} finished")
        if args.dry_run:
            for run in runs:
                state = "done" if run.workdir(args.runs).finished() else "todo"
                print(f"  {state}  {run.workdir(args.runs).root}")
        print_estimate(runs, args.runs)
        if args.dry_run:
            return 0
        started = time.monotonic()
        trained = train_missing(runs, args.runs, args.recipe, args.set)
        print(f"trained {trained} runs in {_duration(time.monotonic() - started)}", flush=True)

    selection = finished_runs(args.runs, args.arms, args.strategies, args.seeds, args.fractions)
    command = shlex.join([".venv/bin/python", "experiments/grid.py", *(argv if argv is not None else sys.argv[1:])])
    report(
        args.runs,
        args.out,
        selection,
        n_resamples=args.resamples,
        resample_seeds=not args.no_seed_resampling,
        timing=not args.no_timing,
        command=command,
    )
    print((args.out / "grid.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
