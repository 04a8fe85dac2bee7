"""Speed and memory targets, measured and written to a JSON report (medians; this machine is shared and noisy).

    python scripts/bench.py [--out bench/report.json] [--skip-stack]

Pipeline: p50 of the whole analysis of a 600x450 JPEG against the sum of the bare ONNX Runtime sessions (and the
same sessions timed inside the analyses, to show what the time outside them is); cold
start (new process → models loaded → first result) and resident memory. Local stack: upload p50, upload → done
seen by a Firestore listener p50, 200 uploads from 8 concurrent clients (all must end done, once), and the upload
process's peak resident memory over the hostile corpus and the heaviest photos that pass (≤ 300 MB).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devstack.sample import synthetic_lesion

PHONE_PHOTOS = REPO.parent / "shared/data/ham10000-600x450/images"
TERMINAL = {"done", "rejected", "failed"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 2)


def summary(values_ms: list[float]) -> dict:
    return {
        "p50_ms": round(statistics.median(values_ms), 2),
        "p99_ms": percentile(values_ms, 99),
        "min_ms": round(min(values_ms), 2),
        "n": len(values_ms),
    }


def sample_photo() -> tuple[bytes, str]:
    photos = sorted(PHONE_PHOTOS.glob("*.jpg"))
    if photos:
        return photos[0].read_bytes(), str(photos[0].relative_to(REPO.parent))
    import io

    buffer = io.BytesIO()
    synthetic_lesion(seed=7).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue(), "generated 600x450 synthetic lesion (../shared/data absent)"


COLD_START = """
import time, resource, sys
started = time.perf_counter()
from shared import config
from shared.analysis.pipeline import Pipeline
pipeline = Pipeline(config.load())
loaded = time.perf_counter()
import psutil
rss_loaded = psutil.Process().memory_info().rss
pipeline.analyze(open(sys.argv[1], "rb").read())
done = time.perf_counter()
print(loaded - started, done - started, rss_loaded, psutil.Process().memory_info().rss,
      "torch" in sys.modules, "ultralytics" in sys.modules)
"""


class TimedSession:
    """Stands in for an ONNX Runtime session to time each ``run`` as it happens inside the pipeline."""

    def __init__(self, session, times: list[float]):
        self.session, self.times = session, times

    def run(self, *args, **kwargs):
        started = time.perf_counter()
        outputs = self.session.run(*args, **kwargs)
        self.times.append((time.perf_counter() - started) * 1000)
        return outputs


def bench_pipeline(photo: bytes, runs: int, rounds: int = 5) -> dict:
    """Whole analyses and bare session runs, measured in alternating rounds so drift on this shared machine
    falls on both alike. Bare: one session run over and over on the input the pipeline feeds it (warm caches).
    In the pipeline: the same runs timed inside the analyses (caches left cold by the other stages)."""
    from shared import config
    from shared.analysis.imaging import decode
    from shared.analysis.pipeline import Pipeline
    from shared.analysis.preprocess import model_input, to_tensor, with_views

    pipeline = Pipeline(config.load())
    image = decode(photo, reduce_to=pipeline.decode_side).image  # what the pipeline's models are fed
    feeds, sessions, bare, in_pipeline = {}, {}, {}, {}
    for role, classifier in pipeline.classifiers.items():
        entry = classifier.entry
        crop = model_input(image, entry.size, entry.colour_constancy)[None]
        feeds[role] = to_tensor(with_views(crop, entry.views), entry.mean, entry.std)  # one batch of its views
        sessions[role], bare[role], in_pipeline[role] = classifier.session, [], []
        classifier.session = TimedSession(classifier.session, in_pipeline[role])
    for _ in range(5):
        if pipeline.analyze(photo).status != "done":
            raise SystemExit("the bench photo was rejected: the pipeline's full path cannot be timed on it")
    for times in in_pipeline.values():
        times.clear()  # the warm-up's
    totals, stages = [], {}
    for _ in range(rounds):
        for _ in range(runs // rounds):
            analysis = pipeline.analyze(photo)
            totals.append(analysis.timings_ms["total"])
            for stage, ms in analysis.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
        for role, session in sessions.items():
            input_name = pipeline.classifiers[role].input_name
            for _ in range(runs // rounds):
                tic = time.perf_counter()
                session.run(None, {input_name: feeds[role]})
                bare[role].append((time.perf_counter() - tic) * 1000)
    median = lambda values: round(statistics.median(values), 2)
    p50, bare_p50 = statistics.median(totals), {role: median(times) for role, times in bare.items()}
    bare_sum = sum(bare_p50.values())
    outside = [total - sum(times[i] for times in in_pipeline.values()) for i, total in enumerate(totals)]
    return {
        "threads": pipeline.threads,
        "total": summary(totals),
        "stages_p50_ms": {stage: median(v) for stage, v in stages.items()},
        "bare_onnxruntime_p50_ms": bare_p50,
        "bare_sum_ms": round(bare_sum, 2),
        "ratio_to_bare_sum": round(p50 / bare_sum, 3),
        "sessions_in_pipeline_p50_ms": {role: median(times) for role, times in in_pipeline.items()},
        "outside_sessions_p50_ms": median(outside),
        "targets": {"p50_le_30ms": p50 <= 30, "ratio_le_1.25": p50 / bare_sum <= 1.25},
    }


def bench_cold_start(photo: bytes, runs: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".jpg") as handle:
        handle.write(photo)
        handle.flush()
        walls, loads, rss = [], [], []
        for _ in range(runs):
            tic = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", COLD_START, handle.name],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
            )
            walls.append(time.perf_counter() - tic)
            loaded_s, first_s, rss_loaded, rss_after, has_torch, has_ultra = out.stdout.split()
            loads.append(float(loaded_s))
            rss.append((int(rss_loaded), int(rss_after)))
    cold = statistics.median(walls)
    rss_mb = statistics.median(r[0] for r in rss) / 2**20
    return {
        "process_to_first_result_p50_s": round(cold, 3),
        "models_loaded_in_process_p50_s": round(statistics.median(loads), 3),
        "rss_after_loading_mb": round(rss_mb, 1),
        "rss_after_first_result_mb": round(statistics.median(r[1] for r in rss) / 2**20, 1),
        "imports_torch": has_torch == "True",
        "imports_ultralytics": has_ultra == "True",
        "runs": runs,
        "targets": {"cold_start_le_1.5s": cold <= 1.5, "rss_le_500mb": rss_mb <= 500, "no_torch": has_torch == "False"},
    }


def bench_browser(web_url: str, photo: bytes, runs: int) -> dict:
    """The web client in Chromium: time from the upload's 202 to the listener's done snapshot, measured in the page."""
    from devstack import browser

    if browser.missing():
        return {"skipped": browser.missing()}
    times = []
    with tempfile.TemporaryDirectory() as folder, browser.chromium() as chromium:
        client = browser.WebClient(chromium, web_url)
        client.open()
        client.sign_in("bench-browser@example.com", "bench-password")
        for run in range(runs + 1):
            path = Path(folder) / f"photo-{run}.jpg"  # a newly chosen file: a new Idempotency-Key, a new job
            path.write_bytes(photo)
            client.upload(path)
            assert client.wait_finished() == "done"
            if run:  # the first one also opens the listener's channel
                times.append(client.done_after_ms())
        client.close()
    return summary(times)


def bench_stack(photo: bytes, uploads: int, listens: int, load_total: int, load_clients: int) -> dict:
    import os

    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    from devstack import auth_emulator
    from devstack.stack import Stack, free_ports, service_env

    ports = free_ports()  # every part of the stack on a free port of its own
    stack = Stack(
        {**os.environ, **ports, "STACK_DIR": str(REPO / "build/bench-stack"), "UPLOADS_PER_USER_PER_HOUR": "1000"}
    )
    env = service_env(stack.s)
    os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
    upload_url = f"http://127.0.0.1:{stack.s['UPLOAD_PORT']}/"
    stack.up()
    try:
        db = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials())
        session = requests.Session()
        tokens: dict[str, str] = {}  # signed in once per user on the stack's Auth emulator

        def token_of(uid: str) -> str:
            if uid not in tokens:
                tokens[uid] = auth_emulator.id_token(
                    env["FIREBASE_AUTH_EMULATOR_HOST"], env["GOOGLE_CLOUD_PROJECT"], uid
                )
            return tokens[uid]

        def auth(uid: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token_of(uid)}"}

        def upload(uid: str) -> tuple[float, str]:
            headers = auth(uid)
            tic = time.perf_counter()
            reply = session.post(
                upload_url, files={"image": ("photo.jpg", photo, "image/jpeg")}, headers=headers, timeout=60
            )
            elapsed = (time.perf_counter() - tic) * 1000
            assert reply.status_code == 202, reply.text
            return elapsed, reply.json()["jobId"]

        def wait_all(uid: str, expected: int, timeout: float) -> list[dict]:
            deadline = time.monotonic() + timeout
            while True:
                docs = [
                    d.to_dict() for d in db.collection("jobs").where(filter=FieldFilter("ownerUid", "==", uid)).stream()
                ]
                if len(docs) >= expected and all(d["status"] in TERMINAL for d in docs) or time.monotonic() > deadline:
                    return docs
                time.sleep(0.2)

        for _ in range(5):
            upload("warmup")
        wait_all("warmup", 5, 60)
        upload_ms = [upload("bench-upload")[0] for _ in range(uploads)]
        wait_all("bench-upload", uploads, 120)

        to_done = []
        for _ in range(listens):
            seen = threading.Event()
            started = time.perf_counter()
            elapsed_ms, job_id = upload("bench-listen")
            watch = (
                db.collection("jobs")
                .document(job_id)
                .on_snapshot(
                    lambda snaps, *_, seen=seen: (
                        seen.set() if any(s.to_dict()["status"] in TERMINAL for s in snaps) else None
                    )
                )
            )
            assert seen.wait(60)
            to_done.append((time.perf_counter() - started) * 1000)
            watch.unsubscribe()

        browser_ms = bench_browser(f"http://127.0.0.1:{stack.s['WEB_PORT']}/", photo, 10)
        print(json.dumps({"browser_202_to_done": browser_ms}), flush=True)

        load_ms = []
        started = time.perf_counter()
        with ThreadPoolExecutor(load_clients) as pool:
            for elapsed, _ in pool.map(lambda i: upload(f"load-{i % load_clients}"), range(load_total)):
                load_ms.append(elapsed)
        uploaded = time.perf_counter() - started
        docs = []
        for client in range(load_clients):
            docs += wait_all(f"load-{client}", load_total // load_clients, 600)
        drained = time.perf_counter() - started
        statuses = [d["status"] for d in docs]
        load = {
            "uploads": load_total,
            "clients": load_clients,
            "upload": summary(load_ms),
            "all_uploaded_s": round(uploaded, 2),
            "drain_s": round(drained, 2),
            "jobs_created": len(docs),
            "done": statuses.count("done"),
            "delivered_more_than_once": sum(1 for d in docs if d.get("attempts", 0) > 1),
            "throughput_per_s": round(load_total / drained, 2),
        }
        load["targets"] = {"all_done_once": load["done"] == load_total == len(docs)}
        upload_p50, done_p50 = statistics.median(upload_ms), statistics.median(to_done)
        hostile = bench_hostile(stack, upload_url, auth)
        return {
            "upload": summary(upload_ms),
            "upload_to_done_listener": summary(to_done),
            "browser_202_to_done": browser_ms,
            "load": load,
            "hostile": hostile,
            "targets": {
                "upload_p50_le_50ms": upload_p50 <= 50,
                "upload_to_done_p50_le_600ms": done_p50 <= 600,
                "browser_202_to_done_p50_le_1s": browser_ms.get("p50_ms", float("inf")) <= 1000,
            },
        }
    finally:
        stack.down()


def heavy_photos() -> list[tuple[str, bytes, str]]:
    """Photos that pass and cost the most to decode: 40 MP (the limit) in ~100 KB of PNG, 16-bit grey and 8-bit
    RGB, and the real iPhone photo when ../shared/data has it."""
    import io

    import numpy as np
    from PIL import Image

    from tests.phone_files import IPHONE_JPEG

    side = 6300  # 39.7 MP
    ramp = np.tile(np.arange(side, dtype=np.uint16)[None, :] * 10, (side, 1)).astype("<u2")
    photos = []
    for name, image in (
        ("40 MP 16-bit grey PNG", Image.fromarray(ramp)),
        ("40 MP RGB PNG", Image.fromarray((ramp >> 8).astype(np.uint8)).convert("RGB")),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=9)
        photos.append((name, buffer.getvalue(), "image/png"))
    if IPHONE_JPEG.is_file():
        photos.append(("real iPhone 14 photo (MPO, Display P3)", IPHONE_JPEG.read_bytes(), "image/jpeg"))
    return photos


def bench_hostile(stack, upload_url: str, auth) -> dict:
    """The upload process's peak resident memory (VmHWM, the whole process group) over the hostile corpus of
    tests/e2e/test_hostile.py and the heaviest photos that pass, sent one after another to a fresh upload process;
    and how long each of them took to answer."""
    import os

    import psutil
    import requests

    from tests.e2e.test_hostile import UPLOADS

    stack.stop("upload")
    stack.start("upload")
    group = os.getpgid(stack._pids()["upload"])
    cases = [(name, body, content_type, extra) for name, body, content_type, extra, _, _ in UPLOADS]
    cases += [(name, body, content_type, {}) for name, body, content_type in heavy_photos()]
    answers = {}
    for name, body, content_type, extra in cases:
        headers = {**auth("bench-hostile"), "Content-Type": content_type, **extra}
        tic = time.perf_counter()
        reply = requests.post(upload_url, data=body, headers=headers, timeout=120)
        answers[name] = {"status": reply.status_code, "ms": round((time.perf_counter() - tic) * 1000, 1)}
    peak = 0
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group:
                with open(f"/proc/{process.pid}/status") as status:
                    peak = max(peak, *(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
        except (OSError, psutil.Error):
            continue
    peak_mb = round(peak / 1024, 1)
    return {
        "cases": len(cases),
        "answers": answers,
        "upload_peak_rss_mb": peak_mb,
        "targets": {"upload_peak_rss_le_300mb": peak_mb <= 300},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench/report.json")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--skip-stack", action="store_true", help="only the pipeline figures")
    args = parser.parse_args()
    photo, source = sample_photo()
    report = {
        "machine": {
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "photo": source,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report["pipeline"] = bench_pipeline(photo, args.runs)
    print(json.dumps({"pipeline": report["pipeline"]}, indent=1), flush=True)
    report["cold_start"] = bench_cold_start(photo, 5)
    print(json.dumps({"cold_start": report["cold_start"]}, indent=1), flush=True)
    if not args.skip_stack:
        report["stack"] = bench_stack(photo, uploads=50, listens=20, load_total=200, load_clients=8)
        print(json.dumps({"stack": report["stack"]}, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
