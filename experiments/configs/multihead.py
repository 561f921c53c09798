"""Multi-head arm: `school`, `timeframe` and `type` from one backbone, trained jointly.

    .venv/bin/artnet train --config experiments/configs/multihead.py:cpu --workdir runs/cpu/multihead
    .venv/bin/artnet train --config experiments/configs/multihead.py:full --workdir runs/full/multihead   # GPUs

Measured (cpu, WikiArt split by painter): each head within the 95 % interval of its single-head arm, at a third of
the inference cost; balanced accuracy well above chance on every head, but top-1 below the majority baseline for
school and timeframe (class weights trade one for the other). Numbers: experiments/results/wikiart_cpu.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arm  # noqa: E402


def get_config(variant=None):
    return arm(("school", "timeframe", "type"), variant, "multi-head: school + timeframe + type")
