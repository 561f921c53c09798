"""Training steps per second: one worker vs two localhost workers (MultiWorkerMirroredStrategy), same global batch.

    .venv/bin/python benchmarks/multi_worker.py [--examples 512] [--epochs 4] [--global-batch 16]

Both runs train the tiny backbone on synthetic images through artnet's loop (`artnet.testing.multi_worker`):
one process with the global batch, then two worker processes with half of it each, side by side in one run of this
script. Steps/s come from the chief's `metrics.jsonl` over the epochs after the first (which pays for tracing and,
for the cluster, for forming it). On one machine the two workers share its cores and add a collective all-reduce
per step, so this measures the cost of the machinery, not a speed-up: that needs one machine per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from artnet.testing.multi_worker import free_ports, start_workers


def steps_per_second(workdir: Path, steps_per_epoch: int) -> float:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    if len(records) < 2:
        raise SystemExit(f"{workdir}: fewer than 2 epochs logged")
    seconds = records[-1]["seconds"] - records[0]["seconds"]
    return steps_per_epoch * (len(records) - 1) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=16)
    args = parser.parse_args(argv)
    steps = args.examples // args.global_batch
    common = ["--epochs", str(args.epochs), "--examples", str(args.examples)]
    with tempfile.TemporaryDirectory(prefix="artnet-mw-bench-") as scratch:
        scratch = Path(scratch)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_CONFIG", None)
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "artnet.testing.multi_worker",
                str(scratch / "one"),
                "--batch-size",
                str(args.global_batch),
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        one_wall = time.monotonic() - started
        started = time.monotonic()
        workers = start_workers(
            scratch / "two", 2, free_ports(2), ["--batch-size", str(args.global_batch // 2), *common], scratch
        )
        codes = [worker.wait(timeout=1800) for worker in workers]
        two_wall = time.monotonic() - started
        if codes != [0, 0]:
            print((scratch / "worker0.log").read_text()[-3000:])
            raise SystemExit(f"the workers ended with {codes}")
        one, two = steps_per_second(scratch / "one", steps), steps_per_second(scratch / "two", steps)
    print(
        f"{os.cpu_count()} CPU cores, tiny backbone, {args.examples} images, global batch {args.global_batch}, "
        f"{steps} steps per epoch, {args.epochs} epochs"
    )
    print("| run | steps/s (epochs 2+) | images/s | wall s (incl. start-up) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| one worker, batch {args.global_batch} | {one:.1f} | {one * args.global_batch:.0f} | {one_wall:.0f} |")
    print(
        f"| two workers, batch {args.global_batch // 2} each | {two:.1f} | {two * args.global_batch:.0f} | "
        f"{two_wall:.0f} |"
    )
    print(f"two / one: {two / one:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
