"""Throughput and latency of ``autorec serve`` under a bounded load, over loopback only.

Trains an I-AutoRec quickly on MovieLens-100K (all 100,000 ratings, ``--epochs`` epochs; the
weights' quality does not matter to the timing), saves it, starts ``autorec serve --port 0``
in a subprocess (loopback, a free port), and sends ``--requests`` requests from
``--concurrency`` client threads, each with its own keep-alive connection: a mix of
``POST /predict`` (``--pairs`` random (user, item) pairs, some ids sent as strings, some
unknown) and ``POST /recommend`` (a random user, ``n=10``), shuffled with ``--seed``. Records
the throughput, the p50 / p90 / p99 / max latency (overall and per endpoint) and the failed
requests (any status but 200, a connection error, a body that is not the expected JSON). After
the run every /predict answer is checked against ``model.predict`` (exactly) and every
/recommend answer against ``model.recommend``. Also reports the CPU used by the client, the
server and the rest of the machine during the run (from /proc), and the load average.

Run::

    python benchmarks/serve_load.py                          # 5,000 requests, 32 concurrent
    python benchmarks/serve_load.py --requests 20000 --concurrency 64

Exits 1 when a request failed or an answer differed from the library's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import CpuWatch, default_data_dir, write_json


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    values = np.asarray(latencies) * 1000.0
    return {"n": len(values), "mean_ms": float(values.mean()),
            "p50_ms": float(np.percentile(values, 50)),
            "p90_ms": float(np.percentile(values, 90)),
            "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max())}


def _requests(model: Any, args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """The shuffled mix of requests (path, body)."""
    rng = np.random.default_rng(args.seed)
    users = model.users_.raw_ids
    items = model.items_.raw_ids
    plan = []
    for _ in range(args.requests):
        if rng.random() < args.predict_share:
            pairs = []
            for _ in range(args.pairs):
                user: Any = int(rng.choice(users))
                item: Any = int(rng.choice(items))
                draw = rng.random()
                if draw < 0.2:
                    user, item = str(user), str(item)  # ids as strings: the same ids
                elif draw < 0.25:
                    item = int(items.max()) + 1 + int(rng.integers(1000))  # unknown: fallback
                pairs.append([user, item])
            plan.append(("/predict", {"pairs": pairs}))
        else:
            user = int(rng.choice(users))
            plan.append(("/recommend", {"user": user if rng.random() < 0.8 else str(user),
                                        "n": args.n}))
    return plan


def _start_server(model_dir: Path) -> tuple[subprocess.Popen[str], str, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "autorec", "serve", "--model", str(model_dir), "--host",
         "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=60)
        raise SystemExit(f"autorec serve did not start: {process.stderr.read()}")
    url = line.split(" at ", 1)[1].split()[0]
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + 120
    while True:
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                connection.close()
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return process, host, int(port)


def _run_load(host: str, port: int, plan: list[tuple[str, dict[str, Any]]],
              concurrency: int) -> tuple[list[dict[str, Any]], float]:
    """Send ``plan`` from ``concurrency`` threads; per request: path, latency, status, body."""
    results: list[dict[str, Any] | None] = [None] * len(plan)
    bodies = [json.dumps(body).encode() for _, body in plan]
    next_index = iter(range(len(plan)))
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        while True:
            with lock:
                k = next(next_index, None)
            if k is None:
                break
            path = plan[k][0]
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=bodies[k], headers=headers)
                response = connection.getresponse()
                payload = response.read()
                latency = time.perf_counter() - started
                results[k] = {"path": path, "latency": latency, "status": response.status,
                              "body": payload}
            except (OSError, http.client.HTTPException) as exc:
                results[k] = {"path": path, "latency": time.perf_counter() - started,
                              "status": None, "error": f"{type(exc).__name__}: {exc}"}
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return [r for r in results if r is not None], wall


def _check(model: Any, plan: list[tuple[str, dict[str, Any]]], results: list[dict[str, Any]]
           ) -> list[str]:
    """Problems: failed requests and answers that differ from the library's."""
    problems = []
    for (path, body), result in zip(plan, results, strict=True):
        if result.get("status") != 200:
            problems.append(f"{path}: status {result.get('status')} "
                            f"{result.get('error') or result.get('body', b'')[:200]!r}")
            continue
        try:
            answer = json.loads(result["body"])
        except ValueError:
            problems.append(f"{path}: the body is not JSON")
            continue
        if path == "/predict":
            users = [p[0] for p in body["pairs"]]
            items = [p[1] for p in body["pairs"]]
            expected, cold = model.predict(users, items, return_cold=True)
            got = [p["prediction"] for p in answer["predictions"]]
            if got != expected.tolist() or [p["fallback"] for p in answer["predictions"]] != (
                    cold.tolist()):
                problems.append(f"/predict: answer differs from model.predict for {body}")
        else:
            expected_table = model.recommend([body["user"]], n=body["n"])
            if [e["item"] for e in answer["items"]] != expected_table["item_id"].tolist() or (
                    [e["score"] for e in answer["items"]] != expected_table["score"].tolist()):
                problems.append(f"/recommend: answer differs from model.recommend for {body}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--predict-share", type=float, default=0.5,
                        help="share of /predict requests; the rest are /recommend")
    parser.add_argument("--pairs", type=int, default=10, help="pairs per /predict request")
    parser.add_argument("--n", type=int, default=10, help="items per /recommend request")
    parser.add_argument("--warmup", type=int, default=100, help="requests before timing")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--out", default="/tmp/autorec-bench/serve_load.json")
    args = parser.parse_args()

    import autorec

    ratings = autorec.load_dataset("ml-100k", args.data_dir, download=False)
    model = autorec.AutoRec(hidden=args.hidden, epochs=args.epochs, validation=0.0,
                            random_state=args.seed, device="cpu")
    started = time.perf_counter()
    model.fit(ratings)
    fit_seconds = time.perf_counter() - started
    print(f"trained I-AutoRec on ML-100K ({len(ratings)} ratings, hidden {args.hidden}, "
          f"{args.epochs} epochs) in {fit_seconds:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="autorec-serve-load-") as folder:
        model_dir = model.save(Path(folder) / "model", dataset="ml-100k")
        process, host, port = _start_server(model_dir)
        try:
            print(f"server pid {process.pid} on http://{host}:{port}", flush=True)
            warm_plan = _requests(model, argparse.Namespace(**{**vars(args),
                                                               "requests": args.warmup,
                                                               "seed": args.seed + 1}))
            _run_load(host, port, warm_plan, min(args.concurrency, 8))
            plan = _requests(model, args)
            load_before = os.getloadavg()
            server_cpu = _process_cpu_seconds(process.pid)
            watch = CpuWatch()
            results, wall = _run_load(host, port, plan, args.concurrency)
            cpu = watch.lap()
            server_cores = (_process_cpu_seconds(process.pid) - server_cpu) / cpu["wall_seconds"]
            load_after = os.getloadavg()
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    problems = _check(model, plan, results)
    failed = sum(1 for r in results if r.get("status") != 200)
    by_path = {path: _percentiles([r["latency"] for r in results if r["path"] == path])
               for path in ("/predict", "/recommend")}
    overall = _percentiles([r["latency"] for r in results])
    # the server's CPU is part of "other" in CpuWatch (another process): take it out
    other = max(cpu["other_cores"] - server_cores, 0.0)
    summary = {
        "requests": len(results), "concurrency": args.concurrency, "failed": failed,
        "mismatched": len(problems) - failed, "wall_seconds": wall,
        "throughput_rps": len(results) / wall, "latency": overall, "by_endpoint": by_path,
        "cpu": {"client_cores": cpu["own_cores"], "server_cores": server_cores,
                "other_cores": other, "loadavg_before": load_before,
                "loadavg_after": load_after},
        "fit_seconds": fit_seconds, "n_users": len(model.users_), "n_items": len(model.items_),
    }
    print(f"{len(results)} requests ({args.concurrency} concurrent) in {wall:.2f} s: "
          f"{summary['throughput_rps']:.0f} requests/s, {failed} failed, "
          f"{summary['mismatched']} answers differing from the library")
    for name, figures in (("all", overall), *by_path.items()):
        if figures:
            print(f"  {name:<11} n={figures['n']:5d}  p50 {figures['p50_ms']:7.1f} ms  "
                  f"p90 {figures['p90_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
                  f"max {figures['max_ms']:7.1f} ms")
    print(f"  CPU during the run: server {server_cores:.2f} cores, client "
          f"{cpu['own_cores']:.2f}, other processes {other:.2f}; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}")
    for problem in problems[:5]:
        print(f"  problem: {problem}")
    path = write_json(args.out, args, summary)
    print(f"wrote {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
