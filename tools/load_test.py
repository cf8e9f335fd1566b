"""Load test over loopback: many clients predicting at once while a few ask for explanations.

    python tools/load_test.py [--url URL [--pid PID] | --registry FILE] [--clients 16] [--requests 50]
                              [--explainers 4] [--samples 1000]

Without --url it starts `python app.py` itself on a free 127.0.0.1 port (with --registry, or the
bundled registry) and stops it at the end. Each client makes half its predictions alone, then the
other half while the explainers run LIME explanations back to back, so the two prediction latencies
of one run show whether explanations (heavy, their own lane) slow predictions (light) down.
Prints one JSON object; exits 1 when a request failed, memory grew 10 % or more, or time ran out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ports import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "skin_demo" / "resources" / "examples").glob("*.jpg"))
MAX_MEMORY_GROWTH = 0.10
REQUEST_TIMEOUT = 300.0

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="an app already running (loopback); default: start one")
    target.add_argument("--registry", help="registry file for the app this script starts")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, to read its memory")
    parser.add_argument("--model", help="model name; default: the first one the app offers")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="predictions per client")
    parser.add_argument("--explainers", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000, help="LIME's cap on samples per explanation (the UI default; the default design uses far fewer)")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds; the run stops after this")
    return parser.parse_args(argv)


def resident_mib(pid: int | None) -> float | None:
    """The process's resident memory from /proc (Linux), in MiB."""
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def start_app(registry: str | None, cache_dir: str) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free loopback port, with Gradio's cache in cache_dir; returns once it answers."""
    import httpx

    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=cache_dir,
               TF_CPP_MIN_LOG_LEVEL="3")
    if registry:
        env["SKIN_DEMO_REGISTRY"] = str(Path(registry).resolve())
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the app exited during start-up:\n{server.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the app did not answer within 300 s")


def stop_app(server: subprocess.Popen) -> None:
    """SIGTERM, as a host would send; the app closes and deletes its cache."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def first_model(client) -> str:
    """The model the app's dropdown offers first."""
    for component in client.config["components"]:
        props = component.get("props", {})
        if props.get("elem_id") == "model" and props.get("choices"):
            return props["choices"][0][1]
    raise SystemExit("the app offers no model")


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 4)


def summary(latencies: list[float], seconds: float | None = None) -> dict:
    result = {"n": len(latencies), "p50_s": percentile(latencies, 0.5), "p95_s": percentile(latencies, 0.95)}
    if seconds:
        result["throughput_per_s"] = round(len(latencies) / seconds, 2)
    return result


class LoadRun:
    """Clients (one gradio_client session each) and the latencies and errors they collect."""

    def __init__(self, url: str, model: str | None, args):
        from gradio_client import Client

        self.args = args
        self.deadline = time.monotonic() + args.time_limit
        self.clients = [Client(url, verbose=False, analytics_enabled=False, download_files=False)
                        for _ in range(args.clients + args.explainers)]
        self.model = model or first_model(self.clients[0])
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def call(self, client, kind: str, index: int) -> float | None:
        """Seconds one request took, or None after recording its error."""
        from gradio_client import handle_file

        image = handle_file(str(EXAMPLES[index % len(EXAMPLES)]))
        extra = (5, self.args.samples, "lime") if kind == "explain" else ()
        start = time.perf_counter()
        try:
            client.submit(image, self.model, *extra, api_name=f"/{kind}").result(
                timeout=min(REQUEST_TIMEOUT, max(1.0, self.deadline - time.monotonic())))
        except Exception as exc:  # every failure counts; the first few are shown
            with self.lock:
                self.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        return time.perf_counter() - start

    def predictions(self, count: int, offset: int) -> tuple[list[float], float]:
        """Every prediction client makes `count` requests at once; (latencies, wall seconds)."""
        latencies: list[float] = []

        def client_loop(client, seed):
            for i in range(count):
                if time.monotonic() > self.deadline:
                    return
                seconds = self.call(client, "predict", seed + i)
                if seconds is not None:
                    with self.lock:
                        latencies.append(seconds)

        start = time.perf_counter()
        self._run_all([lambda c=c, s=offset + n: client_loop(c, s) for n, c in enumerate(self.clients[:self.args.clients])])
        return latencies, time.perf_counter() - start

    def explanations_during(self, work) -> tuple[list[float], object]:
        """Run work() while the explainers ask for explanations back to back; (latencies, work's result)."""
        latencies: list[float] = []
        done = threading.Event()

        def explainer_loop(client, seed):
            i = 0
            while not done.is_set() and time.monotonic() < self.deadline:
                seconds = self.call(client, "explain", seed + i)
                if seconds is not None:
                    with self.lock:
                        latencies.append(seconds)
                i += 1

        threads = [threading.Thread(target=explainer_loop, args=(c, n)) for n, c in
                   enumerate(self.clients[self.args.clients:])]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the explanation lane is busy before the measured predictions start
        try:
            result = work()
        finally:
            done.set()
            for thread in threads:
                thread.join()
        return latencies, result

    def warm_up(self) -> None:
        """One prediction per client and one explanation per explainer at once: compiled graphs, grown pools."""
        self._run_all([lambda c=c, n=n: self.call(c, "predict", n) for n, c in enumerate(self.clients[:self.args.clients])]
                      + [lambda c=c, n=n: self.call(c, "explain", n) for n, c in enumerate(self.clients[self.args.clients:])])
        if self.errors:
            raise SystemExit(f"warm-up failed: {self.errors[0]}")

    @staticmethod
    def _run_all(tasks) -> None:
        threads = [threading.Thread(target=task) for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skin_demo_load_") as cache_dir:
        server, url, pid = None, args.url, args.pid
        if not url:
            server, url = start_app(args.registry, cache_dir)
            pid = server.pid
        try:
            run = LoadRun(url, args.model, args)
            run.warm_up()
            memory_before = resident_mib(pid)
            alone, alone_seconds = run.predictions(args.requests // 2, 0)
            memory_between = resident_mib(pid)
            explain, (busy, busy_seconds) = run.explanations_during(
                lambda: run.predictions(args.requests - args.requests // 2, args.requests))
            memory_after = resident_mib(pid)
        finally:
            if server:
                stop_app(server)
    growth = (memory_after - memory_before) / memory_before if memory_before else None
    p50_alone, p50_busy = percentile(alone, 0.5), percentile(busy, 0.5)
    expected = args.clients * args.requests
    timed_out = len(alone) + len(busy) + len(run.errors) < expected
    report = {
        "url": url, "model": run.model, "clients": args.clients, "requests_per_client": args.requests,
        "explainers": args.explainers, "lime_samples": args.samples,
        "errors": len(run.errors), "error_examples": run.errors[:5], "timed_out": timed_out,
        "predict_alone": summary(alone, alone_seconds),
        "predict_with_explanations": summary(busy, busy_seconds),
        "explain": summary(explain),
        "predict_p50_ratio_with_over_without_explanations": round(p50_busy / p50_alone, 2) if p50_alone and p50_busy else None,
        # starved = a prediction waited about as long as a whole explanation takes
        "predictions_starved": bool(explain and busy and percentile(busy, 0.95) >= percentile(explain, 0.5)),
        "requests_between_memory_samples": len(alone) + len(busy) + len(explain),
        "server_rss_mib": {"before": round(memory_before, 1) if memory_before else None,
                           "after_predictions_alone": round(memory_between, 1) if memory_between else None,
                           "after": round(memory_after, 1) if memory_after else None,
                           "growth_percent": round(100 * growth, 2) if growth is not None else None},
    }
    report["ok"] = not run.errors and not timed_out and (growth is None or growth < MAX_MEMORY_GROWTH)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
