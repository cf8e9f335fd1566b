"""Hostile uploads, a failing model, a full queue and privacy, against the launched app through gradio_client.

One app (launched in this process) takes the whole hostile-image corpus and a model that fails at
request time; the privacy test runs `python app.py` itself in a subprocess under a network guard
(tests/integration/network_guard/sitecustomize.py), with its temporary folders in tmp_path.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from make_bad_images import CASES
from ports import free_port
from skin_demo import CLASSES, display_name
from skin_demo.serving.store import ModelStore
from skin_demo.serving.service import SkinDemo

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import QueueError, Status  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NETWORK_GUARD = Path(__file__).with_name("network_guard")
MODEL_FAILED = "The model failed on this image; try another image or model."
LABELS = {display_name(code) for code in CLASSES}


def launch(app) -> Client:
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)  # else it pings huggingface.co


def labels(result) -> set[str]:
    return {item["label"] for item in result["confidences"]}


def wait_until(condition, timeout: float, what: str, state=lambda: "") -> None:
    """Poll `condition`; on timeout the message includes `state()`, to tell a slow run from a lost request."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}; {state()}")
        time.sleep(0.05)


def job_states(jobs) -> str:
    """Each gradio_client job's queue status, and its exception once it has ended."""
    return ", ".join(f"{job.status().code.name}" + (f" ({job.exception()!r})" if job.done() else "") for job in jobs)


@pytest.fixture(scope="module")
def mismatched_model_dir(tiny_model_dir, tmp_path_factory):
    """A real trained model whose skin_demo.json gives another input size than its network has.

    Every check at load time passes (files, safety, classes); the forward pass then fails inside
    Keras, as it would after a hand edit or files mixed from two trainings.
    """
    folder = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("broken") / "mismatched")
    info = json.loads((folder / "skin_demo.json").read_text())
    info["input_size"] = info["input_size"][::-1]
    (folder / "skin_demo.json").write_text(json.dumps(info))
    return folder


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory, tiny_model_dir, mismatched_model_dir):
    path = tmp_path_factory.mktemp("registry") / "models.json"
    path.write_text(json.dumps({"models": [
        {"name": "tiny", "display_name": "Tiny", "source": str(tiny_model_dir)},
        {"name": "mismatched", "display_name": "Mismatched", "source": str(mismatched_model_dir)},
    ]}))
    return path


@pytest.fixture(scope="module")
def store(registry_file):
    return ModelStore(registry_file)


@pytest.fixture(scope="module")
def client(store):
    from skin_demo.serving.ui import build_app

    app = build_app(SkinDemo(store))
    yield launch(app)
    app.close()


# ---------------------------------------------------------------- hostile uploads through /predict
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_corpus_file_through_the_api(case, corpus_dir, client):
    upload = handle_file(str(corpus_dir / case.name))
    if case.expect == "error":
        with pytest.raises(AppError) as refusal:
            client.predict(upload, "tiny", api_name="/predict")
        assert case.message in str(refusal.value)
    else:
        assert labels(client.predict(upload, "tiny", api_name="/predict")) == LABELS


def test_the_server_still_serves_after_the_corpus(client, test_images):
    assert labels(client.predict(handle_file(test_images["mel"]), "tiny", api_name="/predict")) == LABELS


# ---------------------------------------------------------------- a model failing mid-request
def test_the_failing_model_loads_so_it_fails_at_request_time(store):
    assert "mismatched" in store.available


@pytest.mark.parametrize("api_name, extra", [("/predict", ()), ("/explain", (5, 200, "lime")),
                                              ("/explain", (5, 200, "gradcam"))])
def test_a_model_failing_mid_request_gets_a_clear_message(client, test_images, api_name, extra):
    """Keras's own error (a multi-line ValueError naming source files) must not reach the person."""
    with pytest.raises(AppError) as failure:
        client.predict(handle_file(test_images["bcc"]), "mismatched", *extra, api_name=api_name)
    assert str(failure.value) == MODEL_FAILED


def test_other_requests_keep_being_served_while_a_model_fails(client, test_images):
    upload = handle_file(test_images["nv"])
    jobs = [client.submit(upload, name, api_name="/predict") for name in ["mismatched", "tiny"] * 4]
    for job, name in zip(jobs, ["mismatched", "tiny"] * 4):
        if name == "tiny":
            assert labels(job.result(timeout=60)) == LABELS
        else:
            with pytest.raises(AppError, match="The model failed"):
                job.result(timeout=60)


# ---------------------------------------------------------------- a full queue
class GatedDemo(SkinDemo):
    """Predictions wait at a gate, so a test can fill the queue deterministically."""

    def __init__(self, store):
        super().__init__(store)
        self.gate = threading.Event()
        self.running = 0
        self._count = threading.Lock()

    def predict(self, image, model):
        with self._count:
            self.running += 1
        self.gate.wait(timeout=60)
        return super().predict(image, model)


def test_a_full_queue_answers_busy_at_once_and_loses_no_accepted_request(store, test_images, monkeypatch):
    """Gradio refuses a request beyond max_size waiting events with HTTP 503 instead of letting it hang.

    gradio_client raises QueueError("Queue is full! Please try again."); the browser shows "This
    application is currently busy. Please try again." (Gradio's frontend; neither text is configurable).
    """
    import httpx

    from skin_demo.serving import ui

    monkeypatch.setattr(ui, "QUEUE_SIZE", 2)
    demo = GatedDemo(store)
    app = ui.build_app(demo)
    try:
        client = launch(app)
        upload = handle_file(test_images["akiec"])
        running = []
        for slot in range(1, ui.PREDICT_CONCURRENCY + 1):  # one at a time: a burst would itself fill the small queue
            running.append(client.submit(upload, "tiny", api_name="/predict"))
            wait_until(lambda: demo.running == slot, 180, f"{slot} prediction slots are busy",
                       lambda: f"{demo.running} predictions entered; jobs: {job_states(running)}")
        waiting = [client.submit(upload, "tiny", api_name="/predict") for _ in range(2)]
        wait_until(lambda: all(job.status().code == Status.IN_QUEUE for job in waiting), 120, "two requests wait",
                   lambda: f"jobs: {job_states(waiting)}")

        start = time.monotonic()
        with pytest.raises(QueueError, match="Queue is full! Please try again."):
            client.predict(upload, "tiny", api_name="/predict")
        fn_index = next(i for i, dep in enumerate(client.config["dependencies"]) if dep.get("api_name") == "predict")
        raw = httpx.post(f"{client.src.rstrip('/')}/gradio_api/queue/join", timeout=10, json={
            "data": [None, "tiny"], "fn_index": fn_index, "session_hash": uuid.uuid4().hex, "event_data": None})
        assert raw.status_code == 503 and "Queue is full" in raw.json()["detail"]
        assert time.monotonic() - start < 30  # refused at once, not queued until a slot frees

        demo.gate.set()
        for job in running + waiting:
            assert labels(job.result(timeout=60)) == LABELS
        assert labels(client.predict(upload, "tiny", api_name="/predict")) == LABELS
    finally:
        demo.gate.set()
        app.close()


# ---------------------------------------------------------------- privacy
@pytest.mark.slow
def test_the_app_never_reaches_out_logs_nothing_private_and_forgets_uploads(registry_file, test_images, tmp_path):
    """`python app.py` under a guard that records every non-loopback connect and DNS lookup.

    The upload carries a unique marker: while the app runs it sits in GRADIO_TEMP_DIR (so the test
    looks in the right place); after the SIGTERM a host sends, no file under tmp_path holds it.
    """
    marker = f"PRIVATE-{uuid.uuid4().hex}".encode()
    upload = tmp_path / f"patient_{uuid.uuid4().hex[:8]}.jpg"
    upload.write_bytes(Path(test_images["mel"]).read_bytes() + marker)  # bytes after the JPEG end are ignored
    cache, scratch, attempts = tmp_path / "gradio", tmp_path / "tmp", tmp_path / "network_attempts.txt"
    scratch.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GRADIO_", "HF_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(NETWORK_GUARD), str(REPO)]), NETWORK_GUARD_LOG=str(attempts),
               SKIN_DEMO_REGISTRY=str(registry_file), GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(cache),
               TMPDIR=str(scratch), TF_CPP_MIN_LOG_LEVEL="3")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: server.poll() is not None or _answers(url), 180, "the app answers")
        assert server.poll() is None, "the app exited during start-up"
        client = Client(url, verbose=False, analytics_enabled=False)
        assert labels(client.predict(handle_file(str(upload)), "tiny", api_name="/predict")) == LABELS
        for method in ("lime", "gradcam"):
            _, _, summary, *_ = client.predict(handle_file(str(upload)), "tiny", 5, 200, method, api_name="/explain")
            assert method.upper() in summary
        assert _files_holding(marker, cache), "the upload should be in GRADIO_TEMP_DIR while the app runs"
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert not attempts.exists(), f"the app tried to reach out: {attempts.read_text()}"
    assert _files_holding(marker, tmp_path) == [upload], "the upload outlived the app"
    assert not [p for p in cache.rglob("*") if p.is_file() and p.suffix in (".webp", ".png")], "overlays outlived the app"
    assert upload.name not in output and marker.decode() not in output
    assert not [label for label in LABELS if label in output], "a prediction was logged"


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _files_holding(marker: bytes, folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and marker in p.read_bytes()]
