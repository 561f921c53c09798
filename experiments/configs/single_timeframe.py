"""Single-head arm: `timeframe` only. Identical to `multihead.py` in all but heads.

    .venv/bin/artnet train --config experiments/configs/single_timeframe.py:cpu --workdir runs/cpu/single_timeframe

Expect (cpu, WikiArt split by painter): well above the majority baseline, within a few points of the
multi-head model's `timeframe` head; see experiments/results/ for the measured numbers.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arm  # noqa: E402


def get_config(variant=None):
    return arm(("timeframe",), variant, "single-head: timeframe")
