"""`artnet space --model EXPORT --out DIR`: a folder that runs as a Hugging Face Space, to share the demo for longer
than a gradio.live link lives (72 hours).

The folder holds `README.md` (Spaces front matter: `sdk: gradio` at the gradio version artnet pins, `app_file:
app.py`, and the data's terms), `app.py` (artnet's own demo, `build_demo` + `launch`, over `export/` beside it),
`requirements.txt` (TensorFlow CPU and artnet's wheel, built here with `pip wheel --no-deps`, which brings its
pinned dependencies), the wheel, the export copied (without its SavedModel and LiteRT files: the demo serves
`model.keras`), and `.gitattributes` tracking the large files with Git LFS.

Upload it (a Hugging Face account and token; `hf auth login` first) with the Hub's client:
`hf upload USER/SPACE DIR . --repo-type space`, or from DIR with `gradio deploy`.

The export's `index/thumbs` are thumbnails of the training images: for the Web Gallery of Art, images for
personal and educational use, so a public Space must not republish them: the index is left out unless asked for
(`include_index=True`, `artnet space --with-index`, for a private Space or a collection whose terms allow it); the
demo then shows no similar paintings, and the Space says so and why, on its README and at the foot of the app's
page (an export made without an index says it has none).

`--out` must be a new or empty folder: one holding anything is refused unless `force=True` (`--force`), which
replaces it whole (never a folder that holds the export itself).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from artnet.serving.backend import read_card
from artnet.serving.export import refuse_non_empty
from artnet.serving.model_card import front_matter, one_line
from artnet.workdir import Export

GRADIO_VERSION = "6.31.0"  # setup.cfg's gradio pin (tests/test_sharing.py checks that they agree)
TENSORFLOW = "tensorflow-cpu==2.21.0"  # setup.cfg's `cpu` extra: a Space's free hardware is a CPU
LFS_PATTERNS = ["*.keras", "*.tflite", "*.whl", "*.npy", "*.npz", "*.jpg", "*.png", "*.pb", "variables/*"]
APP = '''"""artnet's demo as a Hugging Face Space: the export beside this file, served by artnet's own demo."""

from pathlib import Path

import gradio as gr

from artnet.serving.demo import build_demo, example_images
from artnet.serving.launch import launch
from artnet.serving.threads import limit_serving_threads

EXPORT = Path(__file__).resolve().parent / "export"
NOTE = {note!r}  # what this Space leaves out, shown at the foot of the page
limit_serving_threads()  # before the model loads
demo = build_demo(EXPORT, examples=example_images(EXPORT))
if NOTE:
    with demo:
        gr.Markdown(NOTE)

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


NO_INDEX = (
    "**No similar paintings here:** the export this Space serves was made without a similar-paintings index, "
    "so the demo answers without neighbours and names no photographed painting."
)
INDEX_LEFT_OUT = (
    "**No similar paintings here:** the similar-paintings index was left out of this Space, because its "
    "thumbnails are images of the training collection, which are not for republishing; without it, the demo also "
    "names no photographed painting."
)


def space_readme(card: dict, title: str = "artnet", note: str = "") -> str:
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
        + (f"\n{note}\n" if note else "")
    )


def write_space(
    export_dir: str | Path,
    out: str | Path,
    include_index: bool = False,
    wheel: Path | None = None,
    force: bool = False,
) -> Path:
    """Write the Space folder (see the top) for `export_dir` into `out`; returns `out`."""
    files, out = Export(Path(export_dir)), Path(out)
    if not files.model.is_file():
        raise FileNotFoundError(f"no model.keras in {files.root}: give an export folder (artnet export)")
    refuse_non_empty(out, force)
    if files.root.resolve().is_relative_to(out.resolve()) or out.resolve().is_relative_to(files.root.resolve()):
        raise ValueError(f"--out {out} and the export {files.root} overlap: pick a folder outside the export")
    card = read_card(files)
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)  # --force: what was there goes, or an old wheel would sit beside the new one
    elif os.path.lexists(out):
        out.unlink()
    target = out / "export"
    target.mkdir(parents=True)
    for path in sorted(files.root.iterdir()):
        # The demo serves model.keras: the SavedModel and the LiteRT files would only lengthen the upload.
        skipped = path.name == "saved_model" or path.suffix == ".tflite" or path.is_symlink()
        if skipped or (path.name == "index" and not include_index):
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name, symlinks=True)  # a link is copied as a link: the demo refuses it
        else:
            shutil.copy2(path, target / path.name)
    wheel = Path(shutil.copy2(wheel, out / wheel.name)) if wheel else build_wheel(out)
    has_index = os.path.lexists(files.index.embeddings)
    note = "" if has_index and include_index else INDEX_LEFT_OUT if has_index else NO_INDEX
    (out / "README.md").write_text(space_readme(card, note=note), encoding="utf-8")
    (out / "app.py").write_text(APP.replace("{note!r}", repr(note)), encoding="utf-8")
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
