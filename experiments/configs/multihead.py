"""Multi-head arm: `school`, `timeframe` and `type` from one backbone, trained jointly.

    .venv/bin/artnet train --config experiments/configs/multihead.py:cpu --workdir runs/cpu/multihead
    .venv/bin/artnet train --config experiments/configs/multihead.py:full --workdir runs/full/multihead   # GPUs

Expect (cpu, WikiArt split by painter): each head well above its majority baseline and within a few points of
its single-head arm, at a third of the inference cost; see experiments/results/ for the measured numbers.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arm  # noqa: E402


def get_config(variant=None):
    return arm(("school", "timeframe", "type"), variant, "multi-head: school + timeframe + type")
