"""artnet's Gradio demo. `python demo/app.py` (or `gradio demo/app.py` for live reload) serves the model in
$ARTNET_MODEL (default: runs/sample/export, which `make demo` trains); `artnet demo --model DIR` does the same
with --share / --port options.
"""

import os

from artnet.demo import build_demo, example_images, launch

MODEL = os.environ.get("ARTNET_MODEL", "runs/sample/export")
demo = build_demo(MODEL, examples=example_images(MODEL))

if __name__ == "__main__":
    launch(demo)
