"""The main job, end to end on the local stack: upload a photo, follow the job through status, print the result.

python scripts/demo.py [--image PHOTO] [--keep-up]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from devstack import auth_emulator
from devstack.sample import synthetic_lesion
from devstack.stack import PARTS, Stack, service_env


def show(job: dict) -> None:
    print(f"\njob {job['jobId']}: {job['status']}")
    if job["status"] == "done":
        result = job["result"]
        quality, binary, diagnosis, check = (result[k] for k in ("quality", "binary", "diagnosis", "check"))
        print(
            f"  quality    blur {quality['blurScore']} (threshold {quality['blurThreshold']}), "
            f"{quality['width']}x{quality['height']}"
        )
        print(f"  binary     {binary['label']:10} {binary['confidence']:.3f}   ({binary['model']})")
        print(f"  diagnosis  {diagnosis['label']:10} {diagnosis['confidence']:.3f}   ({diagnosis['model']})")
        ranked = sorted(diagnosis["scores"].items(), key=lambda kv: -kv[1])
        print("             " + "  ".join(f"{k} {v:.2f}" for k, v in ranked))
        print(f"  check      {check['label']:10} {check['confidence']:.3f}   agrees with binary: {check['agrees']}")
        reference, assessment = result["reference"], result["assessment"]
        print(f"  reference  {reference['label']:10} {reference['confidence']:.3f}   ({reference['model']})")
        print(
            f"  assessment {assessment['label']:10} {assessment['confidence']:.3f}   "
            f"p(malignant) {assessment['malignant']:.3f}, from {', '.join(assessment['models'])}"
        )
        print(f"  conclusive {result['conclusive']}")
        stages = ("decode", "quality", "reference", "binary", "diagnosis", "check", "total")
        print("  timings ms " + "  ".join(f"{stage} {result['timingsMs'][stage]}" for stage in stages))
    elif job["status"] == "rejected":
        print(f"  {job['rejection']['code']}: {job['rejection']['message']}")
    else:
        print(f"  {json.dumps(job.get('error'))}")
    print("\nThis is a research prototype, not a medical device.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", type=Path)
    parser.add_argument("--keep-up", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args()
    if args.image:
        data, name = args.image.read_bytes(), str(args.image)
    else:
        buffer = io.BytesIO()
        synthetic_lesion(seed=7).save(buffer, format="JPEG", quality=92)
        data, name = buffer.getvalue(), "a generated sample"
        print(
            "No IMAGE given: analysing a generated sample (a synthetic lesion, not a real photo). "
            "Run `make demo IMAGE=path/to/photo.jpg` for your own."
        )

    stack = Stack()
    print("Starting the local stack…")
    ours = stack.up()  # the parts that were not running already: the demo stops only those
    try:
        env = service_env(stack.s)
        upload_url = f"http://127.0.0.1:{stack.s['UPLOAD_PORT']}/"
        # signed in on the stack's Firebase Auth emulator, as an app would be
        token = auth_emulator.id_token(env["FIREBASE_AUTH_EMULATOR_HOST"], env["GOOGLE_CLOUD_PROJECT"], "demo-user")
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        reply = requests.post(upload_url, files={"image": ("photo", data)}, headers=headers, timeout=30)
        print(f"POST {upload_url} ({name}, {len(data)} bytes) -> {reply.status_code} {reply.text}")
        if reply.status_code != 202:
            return 1
        status_url = reply.json()["statusUrl"]
        while True:
            job = requests.get(status_url, headers=headers, timeout=10).json()
            if job["status"] in ("done", "rejected", "failed"):
                break
            if time.perf_counter() - started > 120:
                print(f"gave up waiting; the job is still {job['status']}")
                return 1
            time.sleep(0.1)
        print(f"GET {status_url} -> {job['status']} after {time.perf_counter() - started:.2f} s")
        show(job)
        return 0 if job["status"] in ("done", "rejected") else 1
    finally:
        if not args.keep_up and ours:
            stack.stop_parts(ours)
            print("Stack stopped." if len(ours) == len(PARTS) else f"Stopped what the demo started: {ours}.")
        elif not args.keep_up:
            print("The stack was running before the demo: left running (`make down` stops it).")


if __name__ == "__main__":
    sys.exit(main())
