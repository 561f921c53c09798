"""Single-head arm: `school` only. Identical to `multihead.py` in all but heads.

    .venv/bin/artnet train --config experiments/configs/single_school.py:cpu --workdir runs/cpu/single_school

Measured (cpu, WikiArt split by painter): top-1 62.9 % is below the majority baseline (86.3 %, French);
balanced accuracy 28.5 % vs chance 16.7 %; within the 95 % interval of the multi-head model's `school` head.
Numbers: experiments/results/wikiart_cpu.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arm  # noqa: E402


def get_config(variant=None):
    return arm(("school",), variant, "single-head: school")
