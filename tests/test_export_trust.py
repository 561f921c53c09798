"""Trust nothing read from disk: an export folder is data, never a door; a login file says what it means.

Each test crafts what an attacker (or a half-written export) could hand the demo, and proves one route closed:
gradio's static files, the thumbnails inlined in every answer, the API's file paths, the model card's text, the
index's files, the credentials file, the year head's NaN, and the demo's own file reads.
"""

import base64
import json
import logging
import math
import os
import re
import shutil
import stat
import threading

import gradio as gr
import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image

import artnet.serving.similar as similar_module
from artnet import labels
from artnet.data.synthetic import synthetic_source
from artnet.models.artnet import ArtNet
from artnet.serving import cards
from artnet.serving.backend import DemoBackend
from artnet.serving.demo import build_demo, example_images, uploaded_image
from artnet.serving.export import export
from artnet.serving.launch import launch, parse_auth

SECRET = "artnet-test-secret-7f3a9c"  # what must never reach a visitor


@pytest.fixture(scope="module")
def base_export(tmp_path_factory):
    """A sound export with an index of 8 paintings (copied by each test before it is crafted)."""
    folder = tmp_path_factory.mktemp("trusted") / "export"
    source = synthetic_source(8, seed=11)
    source.meta = [
        {"author": f"Painter {i}", "title": f"Work {i}", "date": "1620", "url": f"https://www.wga.hu/html/p/{i}.html"}
        for i in range(8)
    ]
    export(
        ArtNet("tiny", image_size=32),
        folder,
        card={"data": "wga/sample:train", "train_examples": 8},
        index_source=source,
    )
    return folder


@pytest.fixture
def crafted(base_export, tmp_path):
    """A fresh copy of the sound export to craft, and a secret file outside it."""
    folder = tmp_path / "export"
    shutil.copytree(base_export, folder, symlinks=True)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    return folder, secret


@pytest.fixture
def painting(tmp_path):
    path = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def no_new_static_paths(monkeypatch):
    """gradio's static paths are global to the process: whatever a test adds is dropped after it."""
    from gradio.data_classes import _StaticFiles

    monkeypatch.setattr(_StaticFiles, "all_paths", list(_StaticFiles.all_paths))
    return _StaticFiles


def secret_in(text: str) -> bool:
    encoded = base64.b64encode(SECRET.encode()).decode()
    return SECRET in text or encoded[:16] in text


def relink(path, target) -> None:
    """Replace `path` (a file or a folder) by a symbolic link to `target`."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


# --- an export that links out is refused at load, naming the file -------------------------------------------


def _thumbs_to_root(folder, secret):
    relink(folder / "index" / "thumbs", "/")


def _thumb_to_secret(folder, secret):
    relink(folder / "index" / "thumbs" / "000003.jpg", secret)


def _thumb_is_a_fifo(folder, secret):
    (folder / "index" / "thumbs" / "000002.jpg").unlink()
    os.mkfifo(folder / "index" / "thumbs" / "000002.jpg")


def _index_elsewhere(folder, secret):
    shutil.copytree(folder / "index", secret.parent / "index")
    relink(folder / "index", secret.parent / "index")


def _items_elsewhere(folder, secret):
    shutil.copy(folder / "index" / "items.json", secret.parent / "items.json")
    relink(folder / "index" / "items.json", secret.parent / "items.json")


def _card_elsewhere(folder, secret):
    (secret.parent / "card.json").write_text(json.dumps({"data": SECRET}))
    relink(folder / "model_card.json", secret.parent / "card.json")


def _model_elsewhere(folder, secret):
    shutil.copy(folder / "model.keras", secret.parent / "model.keras")
    relink(folder / "model.keras", secret.parent / "model.keras")


@pytest.mark.parametrize(
    ("craft", "named", "why"),
    [
        (_thumbs_to_root, "index/thumbs", "links out of it"),
        (_thumb_to_secret, "index/thumbs/000003.jpg", "links out of it"),
        (_thumb_is_a_fifo, "index/thumbs/000002.jpg", "not a regular file"),
        (_index_elsewhere, "index/embeddings.npy", "links out of it"),
        (_items_elsewhere, "index/items.json", "links out of it"),
        (_card_elsewhere, "model_card.json", "links out of it"),
        (_model_elsewhere, "model.keras", "links out of it"),
    ],
)
def test_an_export_that_links_out_or_holds_a_fifo_is_refused_at_load_naming_the_file(crafted, craft, named, why):
    folder, secret = crafted
    craft(folder, secret)
    with pytest.raises(ValueError, match=f"^{re.escape(named)} in the export .*{why}") as raised:
        DemoBackend(folder)
    assert type(raised.value).__name__ == "ExportError" and SECRET not in str(raised.value)
    if "thumbs" in named:  # the examples come from the same folder: refused the same way
        with pytest.raises(ValueError, match=re.escape(named)):
            example_images(folder, count=8)


# --- every route, against the export whose thumbs link to / -------------------------------------------------


def test_the_served_demo_serves_no_file_outside_and_reads_no_path_a_visitor_names(
    crafted, free_port, monkeypatch, no_new_static_paths
):
    """The export of the finding (`index/thumbs` -> `/`), served with the load-time check switched off: gradio's
    file route and the API's file paths hold on their own (before: `/gradio_api/file=<any file>` served it, and
    `/classify` with `{"path": "/etc/passwd"}` opened it)."""
    import httpx

    folder, secret = crafted
    _thumbs_to_root(folder, secret)
    # Past the load-time check (the test above), each route must hold by itself.
    monkeypatch.setattr(similar_module, "checked_thumbnails", lambda files, count, root: [None] * count, raising=False)
    demo = build_demo(folder)
    read = []
    real_read = demo.backend.read
    demo.backend.read = lambda image: read.append(image) or real_read(image)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/gradio_api"
        for outside in (secret, "/etc/hostname", folder / "index" / "thumbs" / str(secret).lstrip("/")):
            answer = httpx.get(f"{url}/file={outside}", timeout=60)
            assert answer.status_code == 403 and not secret_in(answer.text), (outside, answer.status_code)
        for outside in (secret, "/etc/passwd"):
            payload = {"data": [{"path": str(outside), "meta": {"_type": "gradio.FileData"}}]}
            event = httpx.post(f"{url}/call/classify", json=payload, timeout=60).json()["event_id"]
            stream = httpx.get(f"{url}/call/classify/{event}", timeout=120).text
            assert "event: error" in stream and not secret_in(stream), stream
        assert read == []  # the demo opened nothing a visitor named
    finally:
        demo.close()
        demo.backend.close()
    assert not any(str(path).startswith(str(folder)) or str(path) == "/" for path in no_new_static_paths.all_paths)


def test_no_folder_of_a_sound_export_becomes_a_static_path(base_export, no_new_static_paths, tmp_path):
    """A static folder is served whole, with a link followed and an .html file inline (stored XSS on the demo's
    origin): the export adds no static path at all, and its examples still arrive (copied into gradio's cache)."""
    before = list(no_new_static_paths.all_paths)
    demo = build_demo(base_export, examples=example_images(base_export))
    assert no_new_static_paths.all_paths == before
    config = demo.get_config_file()
    samples = [c for c in config["components"] if c.get("props", {}).get("samples")]
    assert samples and all(
        not sample[0]["path"].startswith(str(base_export)) for sample in samples[0]["props"]["samples"]
    ), samples
    demo.backend.close()


def test_the_demo_reads_only_what_gradio_says_a_visitor_uploaded(tmp_path, monkeypatch):
    from gradio import utils as gradio_utils

    uploads = tmp_path / "gradio-uploads"
    (uploads / "abc").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    upload = uploads / "abc" / "painting.png"
    upload.write_bytes(b"x")
    assert gradio_utils.get_upload_folder() == str(uploads)
    assert uploaded_image({"path": str(upload), "meta": {"_type": "gradio.FileData"}}) == str(upload)
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    (uploads / "abc" / "link.png").symlink_to("/etc/passwd")
    for outside in ("/etc/passwd", str(tmp_path / "elsewhere.png"), str(uploads / "abc" / "link.png"), "../x"):
        for payload in ({"path": outside, "meta": {"_type": "gradio.FileData"}}, outside):
            with pytest.raises(gr.Error, match="not uploaded to this demo") as raised:
                uploaded_image(payload)
            assert raised.value.title == "Image refused"


def test_a_thumbnail_that_turns_into_a_link_after_load_is_left_out_naming_it(crafted, painting, caplog):
    """Inlined cards: the thumbnail read at request time is checked again (an export replaced while it serves)."""
    folder, secret = crafted
    backend = DemoBackend(folder)
    for index in range(8):
        relink(folder / "index" / "thumbs" / f"{index:06d}.jpg", secret)
    cards.thumbnail_data_uri.cache_clear()
    with caplog.at_level(logging.WARNING, logger="artnet.serving.demo"):
        answer = backend.classify(painting, k_similar=8)
    assert not secret_in(answer.similar) and "<img" not in answer.similar
    assert answer.similar.count("<figcaption>") == 8  # the cards still come, without their images
    assert re.search(r"left out a thumbnail: index/thumbs/00000\d\.jpg in the export", caplog.text), caplog.text
    backend.close()


# --- the index's files must agree ---------------------------------------------------------------------------


def _write_items(folder, items):
    (folder / "index" / "items.json").write_text(json.dumps(items))


def _items(folder):
    return json.loads((folder / "index" / "items.json").read_text())


@pytest.mark.parametrize(
    ("craft", "message"),
    [
        (
            lambda f: _write_items(f, _items(f)[:-1]),
            r"index/items\.json lists 7 paintings but index/embeddings\.npy holds 8",
        ),
        (lambda f: _write_items(f, {"items": _items(f)}), r"index/items\.json .*holds a dict, not a list"),
        (
            lambda f: _write_items(f, [*_items(f)[:2], {**_items(f)[2], "title": {"x": 1}}, *_items(f)[3:]]),
            "painting 2's 'title'",
        ),
        (lambda f: _write_items(f, [*_items(f)[:7], "a string"]), "painting 7 is a str"),
        (lambda f: (f / "index" / "items.json").write_text("[{"), r"index/items\.json .*is not valid JSON"),
        (lambda f: np.save(f / "index" / "embeddings.npy", np.full((8, 4), np.nan, np.float32)), "NaN or infinite"),
        (
            lambda f: np.save(f / "index" / "embeddings.npy", np.ones((8, 5), np.float32)),
            "5-wide embeddings but the model's",
        ),
        (lambda f: np.save(f / "index" / "embeddings.npy", np.ones(8, np.float32)), "not a 2-D float array"),
        (lambda f: np.save(f / "index" / "embeddings.npy", np.array([["a"]] * 8)), "not a 2-D float array"),
        (
            lambda f: (f / "index" / "embeddings.npy").write_bytes((f / "index" / "embeddings.npy").read_bytes()[:-4]),
            "its header says",
        ),
        (lambda f: (f / "model_card.json").write_text("[1, 2]"), r"model_card\.json .*holds a list, not a JSON object"),
    ],
)
def test_index_and_card_files_that_disagree_or_are_malformed_are_refused_at_load(crafted, craft, message):
    folder, _ = crafted
    craft(folder)
    with pytest.raises(ValueError, match=message) as raised:
        DemoBackend(folder)
    assert type(raised.value).__name__ == "ExportError"


def test_a_nan_in_the_catalogue_reads_as_unknown_and_the_answer_is_valid_json(crafted, painting):
    folder, _ = crafted
    text = (folder / "index" / "items.json").read_text()
    (folder / "index" / "items.json").write_text(text.replace('"date": "1620"', '"date": NaN'))
    answer = DemoBackend(folder).classify(painting, k_similar=8)
    assert all(record["date"] is None for record in answer.neighbours)
    json.dumps(answer.neighbours, allow_nan=False)  # what /classify sends is strict JSON


# --- the model card: every field escaped, no machine paths --------------------------------------------------

HOSTILE = "[click me](https://evil.example/x) <img src=x onerror=alert(1)> https://evil.example"
CARD = {
    "backbone": "tiny",
    "heads": ["school"],
    "image_size": 32,
    "parameters": 1000,
    "data": "wga/sample:train",
    "train_examples": 8,
    "train_painters": 3,
    "test_painters": 2,
    "test": {"school": {"n": 4, "top1": 0.5, "top3": 0.75, "balanced_accuracy": 0.4}},
    "test_year": {"mae": 40.0, "n": 3, "mae_constant": 60.0},
}


def _with(path: str, value) -> dict:
    card = json.loads(json.dumps(CARD))
    *parents, last = path.split(".")
    target = card
    for key in parents:
        target = target[key]
    target[last] = value
    return card


@pytest.mark.parametrize(
    "card",
    [
        _with("data", HOSTILE),
        _with("backbone", HOSTILE),
        _with("heads", [HOSTILE]),
        _with("image_size", HOSTILE),
        _with("parameters", HOSTILE),
        _with("train_examples", HOSTILE),
        _with("train_painters", HOSTILE),
        _with("test_painters", HOSTILE),
        _with("test", {HOSTILE: CARD["test"]["school"]}),
        _with("test.school.n", HOSTILE),
        _with("test.school.top1", HOSTILE),
        _with("test.school.top3", HOSTILE),
        _with("test.school.balanced_accuracy", HOSTILE),
        _with("test.school.data_majority", {"class": HOSTILE, "top1": 0.5}),
        _with("test.school.majority_baseline", HOSTILE),
        _with("test_year.mae", HOSTILE),
        _with("test_year.n", HOSTILE),
        _with("test_year.mae_constant", HOSTILE),
        _with("data", "x\n\n# heading\n===\n<script>alert(1)</script>"),
        _with("backbone", "x\n\n# heading\n===\n\n- item"),
        _with("test.school.data_majority", {"class": "x\n\n- item\n\npara", "top1": 0.5}),
    ],
)
def test_every_model_card_field_reaches_the_page_as_text(card):
    markdown = MarkdownIt("commonmark", {"html": True})  # raw HTML allowed: stricter than the page's sanitizer
    page = markdown.render(cards.model_card_facts(card)) + markdown.render(cards.model_card_markdown(card))
    assert set(re.findall(r"<(\w+)", page)) <= {"p", "strong", "ul", "li", "h3"}, page
    assert "evil.example" not in "".join(re.findall(r"<[^>]*>", page)), page  # in no tag, no attribute, no href
    # Nor can a field add a paragraph, a list item or a heading of its own (a line break in it stays in its line).
    sound = markdown.render(cards.model_card_facts(CARD)) + markdown.render(cards.model_card_markdown(CARD))
    for tag in ("<p>", "<li>", "<h3>", "<strong>"):
        assert page.count(tag) <= sound.count(tag), (tag, page)


def test_the_card_names_its_sources_without_the_machines_paths():
    card = _with("data", "/home/alice/secret-project/paintings:train + wga/full:train[40% of painters]")
    shown = cards.model_card_facts(card) + cards.model_card_markdown(card)
    assert "alice" not in shown and "secret" not in shown
    text = MarkdownIt("commonmark").render(shown)
    assert "folder paintings:train + wga/full:train[40% of painters]" in text, text
    assert "folder art:test" in MarkdownIt().render(cards.source_words(r"C:\Users\bob\art:test"))
    assert cards.source_words("wga/sample:train") == r"wga/sample\:train"


# --- the credentials file ------------------------------------------------------------------------------------


def _logins(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "logins"
    path.write_bytes(text.encode("utf-8"))
    path.chmod(mode)
    return path


def test_an_auth_file_with_a_bom_comments_and_crlf_reads_as_written(tmp_path, capsys):
    path = _logins(tmp_path, "\ufeff# visitors\r\n  # indented comment\r\nann:pw\r\n\r\nbob:p#w:x\r\n")
    assert parse_auth(None, path) == [("ann", "pw"), ("bob", "p#w:x")]
    assert parse_auth("#eve:pw") == [("#eve", "pw")]  # a command-line login is never taken for a comment
    assert capsys.readouterr().err == ""  # mode 600: no warning


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ann:secret \n", r"line 1: the password of user 'ann' starts or ends with a space"),
        ("ann: secret\n", r"line 1: the password of user 'ann' starts or ends with a space"),
        ("# a\nann :secret\n", r"line 2: user 'ann' starts or ends with a space"),
        ("ann:one\nbob:two\nann:three\n", r"line 3: user 'ann' is given twice \(first at .*line 1\)"),
        ("# only comments\n\n", "holds no user:password line"),
        ("ann\n", "line 1: credentials must read user:password"),
    ],
)
def test_an_auth_file_that_would_not_mean_what_it_says_is_refused(tmp_path, text, message):
    with pytest.raises(ValueError, match=message) as raised:
        parse_auth(None, _logins(tmp_path, text))
    assert "secret" not in str(raised.value) and "three" not in str(raised.value)  # no password in the message


def test_a_world_readable_auth_file_is_warned_about(tmp_path, capsys):
    path = _logins(tmp_path, "ann:pw\n", mode=0o644)
    assert parse_auth(None, path) == [("ann", "pw")]
    err = capsys.readouterr().err
    assert "readable by every user of this machine (mode 644)" in err and f"chmod 600 {path}" in err
    path.chmod(0o666)
    parse_auth(None, path)
    assert "writable by every user" in capsys.readouterr().err
    path.chmod(0o640)
    parse_auth(None, path)
    assert capsys.readouterr().err == ""


# --- NaN years, the demo's reads, the export's writes -------------------------------------------------------


def test_a_nan_year_answers_unknown(tmp_path, painting):
    export(ArtNet("tiny", image_size=32, heads=("timeframe",), year_head=True), tmp_path / "export")
    backend = DemoBackend(tmp_path / "export")
    real = backend.batcher
    backend.batcher = lambda pixels: {**real(pixels), labels.YEAR: (math.nan, 25.0)}  # the head's NaN
    answer = backend.classify(painting)
    assert answer.year == cards.YEAR_UNKNOWN and answer.year.startswith("unknown")
    json.dumps(answer._asdict(), allow_nan=False, default=str)
    assert cards.year_words((1641.7, 23.0)) == "c. 1640 ± 25"
    for year in ((1640.0, math.inf), (math.inf, 5.0), (math.nan, math.nan)):
        assert cards.year_words(year) == cards.YEAR_UNKNOWN
    backend.close()


def test_the_demo_reads_a_fifo_as_load_path_does_refusing_it_at_once(base_export, tmp_path):
    backend = DemoBackend(base_export)
    fifo = tmp_path / "painting.png"
    os.mkfifo(fifo)
    outcome = []

    def classify():
        try:
            backend.classify(str(fifo))
        except gr.Error as error:
            outcome.append(error)

    worker = threading.Thread(target=classify, daemon=True)  # before: blocked forever, waiting for a writer
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert len(outcome) == 1 and "painting.png: not a regular file" in outcome[0].message
    backend.close()


def test_the_export_is_strict_json_and_every_file_is_fsynced_before_it_is_published(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    source = synthetic_source(4, seed=2)
    source.meta = [{"author": "A", "title": "T", "date": math.nan, "url": None} for _ in range(4)]
    card = {"data": "wga/sample:train", "test": {"school": {"balanced_accuracy": math.nan, "n": 0}}}
    out = export(ArtNet("tiny", image_size=32), tmp_path / "export", card=card, index_source=source)

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))

    assert strict((out / "model_card.json").read_text())["test"]["school"]["balanced_accuracy"] is None
    assert [item["date"] for item in strict((out / "index" / "items.json").read_text())] == [None] * 4
    staged = {re.sub(r"^.*/\.export\.partial/", "", path) for path in synced if "/.export.partial/" in path}
    files = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    assert files and files <= staged, sorted(files - staged)
    assert os.path.realpath(tmp_path) in synced  # the folder that holds the rename
    assert stat.S_ISREG(os.stat(out / "index" / "embeddings.npy").st_mode)
