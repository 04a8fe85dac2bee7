"""`make sweep`: run the sweep once against the local stack (`make up` first), as Cloud Scheduler runs it in
production: one POST to the sweep function. Prints its answer: how many unfinished jobs it checked and how many it
ended `failed`."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from devstack.stack import settings


def main() -> int:
    url = f"http://127.0.0.1:{settings()['SWEEP_PORT']}/"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=120) as reply:
            print(reply.read().decode())
    except urllib.error.URLError as exc:
        print(
            f"the sweep function at {url} did not answer ({exc}); start the local stack with `make up`", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
