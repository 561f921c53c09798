"""What makes the demo safe to share: each guarantee of the "safe to share" list, as a test that could fail."""

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from image_corpus import huge_bilevel_png
from markdown_it import MarkdownIt
from PIL import Image

import artnet.serving.backend as backend_module
import artnet.serving.batcher as batcher_module
import artnet.serving.demo as demo_module
import artnet.serving.launch as launch_module
import artnet.serving.threads as threads_module
from artnet.data.synthetic import synthetic_source
from artnet.models.artnet import ArtNet
from artnet.serving.backend import DemoBackend
from artnet.serving.batcher import CONCURRENCY
from artnet.serving.cards import escape_markdown, html_text, model_card_facts, safe_url
from artnet.serving.demo import CONCURRENCY_ID, build_demo
from artnet.serving.export import export
from artnet.serving.launch import launch, parse_auth

ROOT = Path(__file__).resolve().parents[1]
EVIL_TITLES = [
    "Madonna](https://evil.example/phish) [x",
    "<img src=http://evil.example/track.gif>",
    '<form action="https://evil.example"><input name=pw></form>',
    "**bold** _it_ `code` # heading",
]
EVIL_URLS = [
    "https://evil.example/html/a.html",
    "javascript:alert(1)",
    "https://www.wga.hu.evil.example/html/a.html",
    "http://www.wga.hu/html/a.html",
    "https://www.wga.hu/html/../../x.html",
]


@pytest.fixture(scope="module")
def hostile_export(tmp_path_factory):
    """An export whose catalogue text and links were written by an attacker (the index is data, not code)."""
    folder = tmp_path_factory.mktemp("hostile-export")
    source = synthetic_source(10, seed=3)
    source.meta = [
        {"author": EVIL_TITLES[i % 4], "title": EVIL_TITLES[(i + 1) % 4], "date": "<b>1600</b>"}
        | {"url": EVIL_URLS[i % 5] if i < 5 else f"https://www.wga.hu/html/a/{i}.html"}
        for i in range(10)
    ]
    card = {"data": "[click](https://evil.example) <img src=x>", "train_examples": 10}
    export(ArtNet("tiny", image_size=32), folder, card=card, index_source=source)
    return folder


@pytest.fixture
def painting(tmp_path):
    path = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


def rendered(markdown: str) -> str:
    """CommonMark to HTML with raw HTML allowed: stricter than the page (whose sanitizer let <img> and <form>
    through before), so escaped text must hold here."""
    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def test_catalogue_text_is_escaped_and_links_go_only_to_wga_pages(hostile_export, painting):
    backend = DemoBackend(hostile_export)
    answer = backend.classify(painting, k_similar=10)
    cards = answer.similar  # the neighbours' HTML, exactly as the page's gr.HTML shows it
    page = cards + rendered(model_card_facts(backend.card))
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) == 10 and all(tag.startswith('<img src="data:image/jpeg;base64,') for tag in images), images
    assert "<form" not in page and "<input" not in page and "<b>" not in page
    facts = rendered(model_card_facts(backend.card))  # the card's Markdown shows as text, not as bold or code
    assert "<strong>" in facts and "<code>" not in facts and "<h1>" not in facts and "<img" not in facts
    # The cards' markup is artnet's own: only its tags, and no placeholder gr.HTML's template could fill in.
    assert set(re.findall(r"<(\w+)", cards)) == {"p", "div", "figure", "a", "img", "figcaption"}
    assert "${" not in cards and "`" not in cards
    hrefs = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    assert len(hrefs) == 5 and all(href.startswith("https://www.wga.hu/html/a/") for href in hrefs), hrefs
    assert "Madonna](https://evil.example/phish) [x" in html.unescape(cards)  # shown, as plain text
    assert "<img src=http://evil.example/track.gif>" in html.unescape(cards)
    # Structured neighbours carry no link but a wga.hu page.
    assert all(n["url"] is None or n["url"].startswith("https://www.wga.hu/html/") for n in answer.neighbours)
    assert sum(n["url"] is None for n in answer.neighbours) == 5
    for url in EVIL_URLS:
        assert safe_url(url) is None, url
    assert escape_markdown("a<b>") == "a&lt;b&gt;"
    assert html_text("${alert(1)} `x` <b>") == "&#36;{alert(1)} &#96;x&#96; &lt;b&gt;"


def test_uploads_over_64_mib_are_refused_before_they_are_cached(tmp_path, free_port):
    import httpx

    folder = tmp_path / "export"
    export(ArtNet("tiny", image_size=32), folder, card={"train_examples": 10})
    demo = build_demo(folder)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        big = httpx.post(url, files={"files": ("big.png", b"\0" * (64 * 2**20 + 1), "image/png")}, timeout=60)
        assert big.status_code == 413, big.text
        small = httpx.post(url, files={"files": ("small.png", b"\0" * 1024, "image/png")}, timeout=60)
        assert small.status_code == 200
    finally:
        demo.close()


def test_auth_from_the_command_line_or_a_file_and_the_served_page_requires_it(tmp_path, free_port, painting):
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AuthenticationError

    assert parse_auth("ann:s3cret:x") == [("ann", "s3cret:x")]
    logins = tmp_path / "logins"
    logins.write_text("# visitors\nbob:pw1\n\ncarol:pw2\n")
    assert parse_auth("ann:pw", logins) == [("ann", "pw"), ("bob", "pw1"), ("carol", "pw2")]
    assert parse_auth(None, None) is None
    for bad in ("ann", "ann:", ":pw"):
        with pytest.raises(ValueError, match="user:password"):
            parse_auth(bad)

    folder = tmp_path / "export"
    export(ArtNet("tiny", image_size=32), folder, card={"train_examples": 10})
    demo = build_demo(folder)
    port = free_port()
    launch(
        demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, auth=parse_auth("ann:pw")
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        # The server itself: without a login the page's config, API info and uploads answer 401; a wrong password
        # is refused by /login (Gradio answers 400 "Incorrect credentials." there) and sets no access cookie.
        for path in ("config", "gradio_api/info"):
            assert httpx.get(url + path, timeout=60).status_code == 401, path
        upload = httpx.post(url + "gradio_api/upload", files={"files": ("a.png", b"\0", "image/png")}, timeout=60)
        assert upload.status_code == 401
        wrong = httpx.post(url + "login", data={"username": "ann", "password": "wrong"}, timeout=60)
        assert wrong.status_code == 400 and wrong.json()["detail"] == "Incorrect credentials.", wrong.text
        assert not any(name.startswith("access-token") for name in wrong.cookies)
        assert httpx.post(url + "login", data={"username": "ann", "password": "pw"}, timeout=60).status_code == 200
        # And as a client sees it: no credentials, then a wrong password, each refused saying so.
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        with pytest.raises(ValueError, match="Could not login to"):
            Client(url, auth=("ann", "wrong"), verbose=False)
        client = Client(url, auth=("ann", "pw"), verbose=False)
        assert client.predict(handle_file(painting), api_name="/classify")[0]["label"]
    finally:
        demo.close()


def test_share_without_auth_prints_a_warning(monkeypatch, capsys):
    launched = []

    class FakeBlocks:
        def launch(self, **options):
            launched.append(options)

    monkeypatch.setattr(launch_module, "remove_files_on_sigterm", lambda: None)
    launch(FakeBlocks(), share=True)
    assert "--share without --auth publishes this demo" in capsys.readouterr().err
    launch(FakeBlocks(), share=True, auth=[("ann", "pw")])
    launch(FakeBlocks(), share=False)
    assert capsys.readouterr().err == ""
    assert all(options["max_file_size"] == "64mb" for options in launched)


def test_one_concurrency_budget_for_every_event_that_runs_the_model(tmp_path):
    folder = tmp_path / "export"
    export(ArtNet("tiny", image_size=32), folder, card={"train_examples": 10})
    demo = build_demo(folder)
    heavy = [fn for fn in demo.fns.values() if fn.queue]
    assert {fn.name for fn in heavy} >= {"on_classify", "on_whole", "on_page", "on_explain"}
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in heavy} == {(CONCURRENCY_ID, CONCURRENCY)}
    # Unqueued events (clearing a stale answer) touch no image: they must not read uploads.
    assert all(fn.name == "clear" for fn in demo.fns.values() if not fn.queue)


def test_concurrent_requests_share_forward_passes_and_keep_their_own_errors(hostile_export, painting, tmp_path):
    backend = DemoBackend(hostile_export)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    inputs = [painting if i % 4 else str(bad) for i in range(16)]
    results = [None] * len(inputs)
    start = threading.Barrier(len(inputs))
    passes_before = backend.predictor.forward_passes
    searches = []  # the neighbour searches: one matrix product per forward pass, none per request
    batch_search, single_search = backend.index.query_batch, backend.index.query
    backend.index.query_batch = lambda vectors, k: searches.append(len(vectors)) or batch_search(vectors, k)
    backend.index.query = lambda *args: searches.append("single") or single_search(*args)

    # Requests reach the batcher after decoding and the photo step, whose time varies; on a loaded machine they
    # would come one by one, and no two would share a pass. So each pass waits (60 s at most) until every good
    # request has been read: what is measured is what the batcher does with requests that are there together.
    read_count, lock, all_read = [0], threading.Lock(), threading.Event()
    real_read, real_run = backend.read, backend.batcher._run

    def counting_read(*args, **kwargs):
        reading = real_read(*args, **kwargs)  # a bad upload raises here, and is not counted
        with lock:
            read_count[0] += 1
            if read_count[0] == 12:
                all_read.set()
        return reading

    def gated_run(batch):
        all_read.wait(timeout=60)
        return real_run(batch)

    backend.read, backend.batcher._run = counting_read, gated_run

    def request(index):
        start.wait()
        try:
            results[index] = backend.classify(inputs[index]).labels
        except gr.Error as error:
            results[index] = error

    threads = [threading.Thread(target=request, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for path, result in zip(inputs, results, strict=True):
        if path == painting:
            assert set(result) == {"school", "timeframe", "type"}
        else:
            assert isinstance(result, gr.Error) and "cannot be read" in result.message
    assert backend.predictor.forward_passes - passes_before < 12  # 12 good requests, fewer passes
    assert max(backend.batcher.batch_sizes) > 1
    assert "single" not in searches and sum(searches) == 12 and len(searches) < 12, searches


@pytest.mark.parametrize("lanes", [1, 2])
def test_the_batcher_runs_at_most_its_lanes_of_passes_at_once_and_answers_each_request_its_own(lanes):
    # No sleeps: each pass holds until every request is either in a pass or waiting in the batcher (counted by
    # wrapping its condition), so every request that could wrongly start a pass has had the chance to.
    requests, running, waiting, finished, most, lock = 12, [0], [0], [0], [0], threading.Lock()

    def quiet() -> bool:
        with lock:
            return running[0] + waiting[0] + finished[0] == requests

    class CountingCondition(threading.Condition):
        def wait(self, timeout=None):
            with lock:
                waiting[0] += 1
            try:
                return super().wait(timeout)
            finally:
                with lock:
                    waiting[0] -= 1

    def run(batch):
        with lock:
            running[0] += 1
        deadline = time.monotonic() + 60
        while not quiet():
            assert time.monotonic() < deadline, "the other requests never settled"
            time.sleep(0.001)
        with lock:
            most[0] = max(most[0], running[0])
            running[0] -= 1
        return [int(pixels[0]) * 10 for pixels in batch]

    batcher = batcher_module.Batcher(run, max_batch=3, lanes=lanes)
    batcher._turn = CountingCondition()
    answers = [None] * requests
    start = threading.Barrier(requests)

    def request(index):
        start.wait()
        try:
            answers[index] = batcher(np.array([index]))
        finally:
            with lock:
                finished[0] += 1

    threads = [threading.Thread(target=request, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert answers == [10 * i for i in range(requests)]  # each its own result, none lost or swapped
    assert most[0] == lanes
    assert sum(batcher.batch_sizes) == requests and max(batcher.batch_sizes) == 3


def test_a_serving_process_runs_each_pass_on_one_thread_and_one_pass_per_core():
    # In a fresh process (TensorFlow's pools are fixed once it has run): what `artnet demo` does before loading.
    script = """
import json, os, sys
from threadpoolctl import threadpool_info
import tensorflow as tf
from artnet.serving.threads import forward_lanes, limit_serving_threads
before = forward_lanes()
applied = limit_serving_threads()
tf.constant(1.0) + 1.0  # TensorFlow runs: the pools are made now
blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
print(json.dumps({"applied": applied, "before": before, "after": forward_lanes(), "blas": blas,
                  "inter": tf.config.threading.get_inter_op_parallelism_threads(),
                  "intra": tf.config.threading.get_intra_op_parallelism_threads()}))
"""

    def serving_settings(environment: dict) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    environment = {k: v for k, v in os.environ.items() if k not in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")}
    for variable in threads_module.BLAS_VARIABLES:
        environment.pop(variable, None)
    cores = min(len(os.sched_getaffinity(0)), CONCURRENCY)
    found = serving_settings(environment)
    assert found["applied"] == {"blas": 1, "tf_inter_op": 1, "tf_intra_op": 1}
    assert found["inter"] == found["intra"] == 1 and set(found["blas"]) <= {1}
    assert found["before"] == 1  # TensorFlow's default pools already spread one pass over the cores
    assert found["after"] == cores
    # A user's own setting wins.
    environment["TF_NUM_INTRAOP_THREADS"] = "2"
    environment["OPENBLAS_NUM_THREADS"] = "2"
    found = serving_settings(environment)
    assert found["applied"] == {"tf_inter_op": 1} and found["after"] == 1
    environment["TF_NUM_INTRAOP_THREADS"] = "1"  # one thread per pass, the user's way: still one pass per core
    assert serving_settings(environment)["after"] == cores


def test_the_queue_keeps_a_bounded_record_summarised_now_and_then(hostile_export, monkeypatch):
    # gradio rebuilds its analytics summary (a pandas DataFrame over every recorded event) after each event: with
    # its defaults (10,000 events, every event) a busy demo slowed down and grew with every request it served.
    for variable in demo_module.GRADIO_ANALYTICS:
        monkeypatch.delenv(variable, raising=False)
    queue = build_demo(hostile_export)._queue
    assert queue.ANALYTICS_MAX_EVENTS == 1000 and queue.ANAYLTICS_CACHE_FREQUENCY == 100  # (gradio's spelling)
    records = [{"function": "classify", "status": "success", "process_time": 0.1}] * 50
    summaries = []
    monkeypatch.setattr(queue, "_get_df", lambda rows: summaries.append(len(rows)) or type(queue)._get_df(rows))
    for _ in range(250):
        queue.events_recorded += 1
        queue.compute_analytics_summary(records)
    assert len(summaries) == 2  # every 100 events, not 250 times


def test_gradcam_files_are_capped(hostile_export, painting, monkeypatch):
    monkeypatch.setattr(backend_module, "OVERLAY_MAX_FILES", 5)
    backend = DemoBackend(hostile_export)
    for _ in range(4):
        returned = backend.explain(painting)
    files = sorted(backend._overlays.iterdir())
    assert len(files) == 5 and {Path(path) for path, _ in returned} <= set(files)  # the newest are kept
    backend.close()
    assert not backend._overlays.exists()


SERVER = """
import sys
from artnet.serving.demo import build_demo
from artnet.serving.launch import launch
demo = build_demo(sys.argv[1])
demo.backend.explain(sys.argv[2])
print(demo.backend._overlays, flush=True)
if sys.argv[3] == "exit":
    sys.exit(0)
launch(demo, server_name="127.0.0.1", server_port=int(sys.argv[4]), quiet=True)
"""


def wait_for_port(port: int, process, timeout: float = 120.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server ended before it served"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {timeout:.0f} s")


@pytest.mark.parametrize("ending", ["sigterm", "exit"])
def test_gradcam_files_are_removed_on_sigterm_and_at_exit(hostile_export, painting, free_port, ending):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    port = free_port()
    args = [sys.executable, "-c", SERVER, str(hostile_export), painting, ending, str(port)]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        folder = Path(server.stdout.readline().strip())
        assert folder.name.startswith("artnet-gradcam-"), folder
        if ending == "sigterm":
            assert any(folder.glob("*.png"))
            # launch() installs the SIGTERM handler before it serves: wait until it answers, or on a loaded machine
            # the signal can arrive first and kill the process the default way (a race in the test, not the demo).
            wait_for_port(port, server)
            server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=120) == (-signal.SIGTERM if ending == "sigterm" else 0)
        assert not folder.exists()
    finally:
        if server.poll() is None:
            server.kill()


def test_loading_a_crafted_keras_file_never_fetches_weights(tmp_path, monkeypatch):
    """A .keras file is a zip whose config.json may say anything: here, ImageNet weights from a URL."""
    from artnet.models import artnet as artnet_module
    from artnet.serving.export import load_model

    path = tmp_path / "model.keras"
    ArtNet("tiny", image_size=32).save(path)
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(crafted, "w") as out:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["backbone_weights"] = "https://evil.example/weights.h5"
                data = json.dumps(config).encode()
            out.writestr(item, data)
    asked = []
    real = artnet_module.build_backbone
    monkeypatch.setattr(
        artnet_module,
        "build_backbone",
        lambda name, weights, **kw: asked.append(weights) or real(name, weights=None, **kw),
    )
    model = load_model(crafted)
    assert asked == [None] and model.backbone_name == "tiny"


@pytest.mark.parametrize(
    ("size", "expected", "title"),
    [
        ((1, 1), "image too small: 1x1 px, under 32 px a side", "Image refused"),
        ((31, 200), "under 32 px a side", "Image refused"),
        ((40, 400), "extreme aspect ratio: 40x400 px is 10:1, over 5:1", "Image refused"),
        ((32, 160), None, None),  # 5:1 at 32 px: still answered
    ],
)
def test_tiny_and_extreme_images_are_refused_saying_so(hostile_export, tmp_path, size, expected, title):
    backend = DemoBackend(hostile_export)
    path = tmp_path / "image.png"
    Image.new("RGB", size, (120, 80, 40)).save(path)
    if expected is None:
        assert set(backend.classify(str(path)).labels) == {"school", "timeframe", "type"}
        return
    for call in (backend.classify, backend.explain):
        with pytest.raises(gr.Error, match=expected) as raised:
            call(str(path))
        assert raised.value.title == title and "cannot be read" not in raised.value.message


def test_the_size_refusal_reports_the_real_megapixels_and_is_not_called_unreadable(hostile_export, tmp_path):
    backend = DemoBackend(hostile_export)
    for (width, height), megapixels in (((20_000, 20_000), "400 Mpx"), ((5_000, 4_000), "20 Mpx")):
        path = tmp_path / f"{width}.png"
        path.write_bytes(huge_bilevel_png(width, height))
        with pytest.raises(gr.Error, match=f"too large.*{megapixels} > 16 Mpx") as raised:
            backend.classify(str(path))
        assert raised.value.title == "Image too large" and "cannot be read" not in raised.value.message


LOGGING_SERVER = """
import sys
from artnet.serving.demo import build_demo
from artnet.serving.launch import launch
launch(build_demo(sys.argv[1]), server_name="127.0.0.1", server_port=int(sys.argv[2]))
"""


def test_an_expected_user_error_logs_one_line_and_no_traceback(hostile_export, tmp_path, free_port):
    """The server's own output, as its operator reads it: one line per refused upload, one start-up banner."""
    import httpx
    from gradio_client import Client, handle_file

    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    log = tmp_path / "server.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-c", LOGGING_SERVER, str(hostile_export), str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                pytest.fail(log.read_text())
            time.sleep(0.5)
        with pytest.raises(Exception, match="cannot be read"):
            Client(url, verbose=False).predict(handle_file(str(bad)), api_name="/classify")
        # No fixed pause for the log: wait (generously) until the refusal is in it; then the server is stopped and
        # waited for, so whatever else it wrote (a traceback would come with the refusal) is in the file too.
        deadline = time.monotonic() + 60
        while "refused a request" not in log.read_text():
            assert time.monotonic() < deadline, f"no refusal logged within 60 s:\n{log.read_text()}"
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=60)
    output = log.read_text()
    refused = [line for line in output.splitlines() if "refused a request" in line]
    assert len(refused) == 1 and "notes.jpg" in refused[0], output
    assert "Traceback" not in output, output
    assert output.count("Running on local URL") == 1 and "DatasetInfo" not in output, output
