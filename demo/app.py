"""artnet's Gradio demo. `python demo/app.py` (or `gradio demo/app.py` for live reload) serves the model in
$ARTNET_MODEL (default: runs/sample/export, which `make demo` trains); `artnet demo --model DIR` does the same
with --share / --port / --auth options. $ARTNET_AUTH (user:password) or $ARTNET_AUTH_FILE require a login.
"""

import os

from artnet.serving.demo import build_demo, example_images
from artnet.serving.launch import launch, parse_auth
from artnet.serving.threads import limit_serving_threads

MODEL = os.environ.get("ARTNET_MODEL", "runs/sample/export")
limit_serving_threads()  # before the model loads
demo = build_demo(MODEL, examples=example_images(MODEL))

if __name__ == "__main__":
    launch(demo, auth=parse_auth(os.environ.get("ARTNET_AUTH"), os.environ.get("ARTNET_AUTH_FILE")))
