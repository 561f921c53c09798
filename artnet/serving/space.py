"""`artnet space --model EXPORT --out DIR`: a folder that runs as a Hugging Face Space, to share the demo for longer
than a gradio.live link lives (72 hours).

The folder holds `README.md` (Spaces front matter: `sdk: gradio` at the gradio version artnet pins, `app_file:
app.py`, and the data's terms), `app.py` (artnet's own demo, `build_demo` + `launch`, over `export/` beside it),
`requirements.txt` (TensorFlow CPU and artnet's wheel, built here with `pip wheel --no-deps`, which brings its
pinned dependencies), the wheel, the export copied (without its SavedModel: the demo serves `model.keras`), and
`.gitattributes` tracking the large files with Git LFS.

Upload it (a Hugging Face account and token; `hf auth login` first) with the Hub's client:
`hf upload USER/SPACE DIR . --repo-type space`, or from DIR with `gradio deploy`.

The export's `index/thumbs` are thumbnails of the training images: for the Web Gallery of Art, images for
personal and educational use, so a public Space must not republish them: the index is left out unless asked for
(`include_index=True`, `artnet space --with-index`, for a private Space or a collection whose terms allow it); the
demo then shows no similar paintings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from artnet.serving.model_card import front_matter, one_line
from artnet.workdir import Export

GRADIO_VERSION = "6.31.0"  # setup.cfg's gradio pin (tests/test_sharing.py checks that they agree)
TENSORFLOW = "tensorflow-cpu==2.21.0"  # setup.cfg's `cpu` extra: a Space's free hardware is a CPU
LFS_PATTERNS = ["*.keras", "*.tflite", "*.whl", "*.npy", "*.npz", "*.jpg", "*.png", "*.pb", "variables/*"]
APP = '''"""artnet's demo as a Hugging Face Space: the export beside this file, served by artnet's own demo."""

from pathlib import Path

from artnet.serving.demo import build_demo, example_images
from artnet.serving.launch import launch
from artnet.serving.threads import limit_serving_threads

EXPORT = Path(__file__).resolve().parent / "export"
limit_serving_threads()  # before the model loads
demo = build_demo(EXPORT, examples=example_images(EXPORT))

if __name__ == "__main__":
    launch(demo, server_name="0.0.0.0")
'''


def build_wheel(out: Path, source: Path | None = None) -> Path:
    """artnet's wheel (no dependencies), built from the checkout `source` into `out`."""
    source = source or Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="artnet-wheel-") as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", folder, str(source)],
            check=True,
            capture_output=True,
        )
        (wheel,) = Path(folder).glob("artnet-*.whl")
        return Path(shutil.copy2(wheel, out / wheel.name))


def space_readme(card: dict, title: str = "artnet") -> str:
    fields = {
        "title": one_line(title, 60),
        "emoji": "🖼️",
        "colorFrom": "yellow",
        "colorTo": "red",
        "sdk": "gradio",
        "sdk_version": GRADIO_VERSION,
        "app_file": "app.py",
        "pinned": False,
        "license": "apache-2.0",
        "short_description": "When, where and what is this painting?",
    }
    return front_matter(fields) + (
        "\nartnet's demo: drop in a European painting (1401-1900), get its school, timeframe and type from one "
        "model, why (Grad-CAM) and similar paintings of the training collection.\n\n"
        "Licences: artnet's code and weights are Apache-2.0. The similar-paintings thumbnails under `export/index` "
        "come from the training collection: the Web Gallery of Art's images are for personal and educational use "
        "(cite the Web Gallery of Art); remove `export/index` before a public upload if that use does not fit.\n"
    )


def write_space(
    export_dir: str | Path, out: str | Path, include_index: bool = False, wheel: Path | None = None
) -> Path:
    """Write the Space folder (see the top) for `export_dir` into `out`; returns `out`."""
    files, out = Export(Path(export_dir)), Path(out)
    if not files.model.is_file():
        raise FileNotFoundError(f"no model.keras in {files.root}: give an export folder (artnet export)")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "export"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for path in sorted(files.root.iterdir()):
        if path.name in ("saved_model",) or (path.name == "index" and not include_index) or path.is_symlink():
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name, symlinks=True)  # a link is copied as a link: the demo refuses it
        else:
            shutil.copy2(path, target / path.name)
    wheel = Path(shutil.copy2(wheel, out / wheel.name)) if wheel else build_wheel(out)
    card = files.read_card() if files.card.is_file() else {}
    (out / "README.md").write_text(space_readme(card), encoding="utf-8")
    (out / "app.py").write_text(APP, encoding="utf-8")
    (out / "requirements.txt").write_text(f"{TENSORFLOW}\n./{wheel.name}\n", encoding="utf-8")
    (out / ".gitattributes").write_text(
        "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS), encoding="utf-8"
    )
    return out


def read_front_matter(text: str) -> dict:
    """The YAML front matter of a README (for tests and checks)."""
    match = re.match(r"^---\n(.*?)^---\n", text, re.DOTALL | re.MULTILINE)
    if not match:
        raise ValueError("no front matter")
    return yaml.safe_load(match.group(1))
