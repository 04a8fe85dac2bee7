"""One JSON line per event on stdout, in the shape Cloud Logging parses (``severity``, ``message``, fields)."""

from __future__ import annotations

import json
import sys

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


class JsonLog:
    def __init__(self, level: str = "INFO", stream=None):
        self.threshold = LEVELS.get(level.upper(), 20)
        self.stream = stream or sys.stdout

    def write(self, severity: str, message: str, **fields) -> None:
        if LEVELS.get(severity, 20) < self.threshold:
            return
        entry = {"severity": severity, "message": message}
        entry.update({key: value for key, value in fields.items() if value is not None})
        self.stream.write(json.dumps(entry, default=str) + "\n")
        self.stream.flush()
