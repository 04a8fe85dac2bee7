"""Analyse photos without any cloud: ``python -m shared.cli analyze PHOTO [PHOTO ...]`` prints JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared import config
from shared.analysis.pipeline import Pipeline
from shared.errors import ServiceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="print the analysis of each photo as JSON")
    analyze.add_argument("photos", nargs="+", type=Path)
    args = parser.parse_args(argv)

    pipeline = Pipeline(config.load())
    failed = False
    for path in args.photos:
        try:
            analysis = pipeline.analyze(path.read_bytes())
            report: dict[str, Any] = {"photo": str(path), "status": analysis.status}
            report["result" if analysis.result else "rejection"] = analysis.result or analysis.rejection
        except (OSError, ServiceError) as exc:
            failed = True
            error = (
                exc.body()["error"] if isinstance(exc, ServiceError) else {"code": "unreadable", "message": str(exc)}
            )
            report = {"photo": str(path), "status": "error", "error": error}
        print(json.dumps(report, indent=2 if len(args.photos) == 1 else None))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
