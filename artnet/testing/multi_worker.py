"""A multi-worker training job on localhost: the worker program the tests start (one process per `TF_CONFIG`
task), and helpers to start a cluster of them. Tiny backbone, synthetic data: it checks the machinery, not a model.

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 0}}' \\
        python -m artnet.testing.multi_worker runs/mw --batch-size 8 --epochs 3

Each worker runs `artnet.run.run_experiment` under MultiWorkerMirroredStrategy (strategy=multi_worker, so artnet's
own loop; the chief then evaluates on test and exports, alone) and writes its final weights to
`<workdir>/weights_<task>.npz`; with no TF_CONFIG it trains on one process (the single-worker reference with the
same global batch: pass the global batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--batch-size", type=int, default=8, help="per worker")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--loss-weighting", default="fixed")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--backup-every-steps", type=int, default=None)
    parser.add_argument("--precision", default="float32")
    parser.add_argument(
        "--exact", action="store_true", help="the source's order, deterministic pipeline: comparable with one worker"
    )
    args = parser.parse_args(argv)

    from artnet.training.strategy import make_strategy

    multi = "TF_CONFIG" in os.environ
    strategy = make_strategy("multi_worker" if multi else "none")  # before any other TensorFlow work
    import numpy as np

    from artnet.config import Augment
    from artnet.data.synthetic import synthetic_source
    from artnet.run import run_experiment
    from artnet.testing.configs import NO_AUGMENT, tiny_config
    from artnet.training.strategy import is_chief, worker_name

    config = tiny_config(
        epochs=args.epochs,
        dropout=0.0,  # dropout masks differ per replica: no exact comparison with one worker
        optimizer=args.optimizer,
        loss_weighting=args.loss_weighting,
        backup_every_steps=args.backup_every_steps,
        precision=args.precision,
        strategy="multi_worker" if multi else "none",
        loop="custom",
        data={
            "batch_size": args.batch_size,
            # exact: the cached path maps deterministically (the fused one trades that for speed), the source's
            # order, and no random warps (they are drawn per replica)
            "cache": args.exact,
            "shuffle_buffer": 1 if args.exact else 2048,
            "augment": NO_AUGMENT if args.exact else Augment(),
        },
    )
    sources = {
        split: synthetic_source(args.examples if split == "train" else 32, seed=index)
        for index, split in enumerate(("train", "validation", "test"))
    }
    # The whole run, as `artnet train` does it: train, then the chief alone evaluates on test and exports.
    model = run_experiment(config, args.workdir, sources=sources, strategy=strategy, similarity_index=False).model
    weights = {f"w{i}": np.asarray(value) for i, value in enumerate(model.get_weights())}
    name = worker_name(strategy)
    np.savez(args.workdir / f"weights_{name}.npz", **weights)
    print(json.dumps({"worker": name, "chief": is_chief(strategy), "replicas": strategy.num_replicas_in_sync}))
    return 0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def start_workers(
    workdir: Path, count: int, ports: list[int], extra: list[str], logs: Path, command: list[str] | None = None
) -> list[subprocess.Popen]:
    """`count` worker processes of one localhost cluster, each logging to `<logs>/worker<i>.log` (appended).

    Each runs this module on `workdir` with `extra` arguments, or, given `command`, that command as it is (e.g.
    `artnet train ...`: the same for every worker; only TF_CONFIG's task differs)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports[:count]]}
    argv = command or [sys.executable, "-m", "artnet.testing.multi_worker", str(workdir), *extra]
    processes = []
    for index in range(count):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        log = (logs / f"worker{index}.log").open("a")
        processes.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
        log.close()  # the child holds its own descriptor
    return processes


if __name__ == "__main__":
    sys.exit(main())
