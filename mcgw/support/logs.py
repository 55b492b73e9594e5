"""Structured logging for every mcgw command: ``--log-level`` and ``--log-format text|json``.

A log line about an object names it with three fields passed through ``extra=`` (see
:func:`object_fields`): ``cluster``, ``kind`` and ``object`` (``namespace/name``, or ``name`` for
cluster-scoped kinds). Both formats show them, so ``grep object=shop/cart`` and a JSON log pipeline
find every line about one object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import IO, Any

from mcgw.support.timestamps import rfc3339

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
OBJECT_FIELDS = ("cluster", "kind", "object")

# Third-party loggers that are too chatty for an operator. The Kubernetes client logs request and
# response bodies at debug level, Secrets included, so it stays at warning whatever --log-level says.
_QUIET = {"kubernetes": logging.WARNING, "client": logging.WARNING, "urllib3": logging.WARNING,
          "grpc": logging.WARNING, "leaderelection": logging.WARNING}


def object_fields(cluster: str, kind: str, namespace: str, name: str) -> dict[str, str]:
    """The ``extra=`` that names an object in a log line."""
    return {"cluster": cluster, "kind": kind, "object": f"{namespace}/{name}" if namespace else name}


def _fields(record: logging.LogRecord) -> dict[str, str]:
    return {key: str(value) for key in OBJECT_FIELDS if (value := getattr(record, key, None)) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339(record.created, fraction=3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def _quote(value: str) -> str:
    if value and not any(ch.isspace() or ch in '="' for ch in value):
        return value
    return json.dumps(value, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value...``, with any traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{rfc3339(record.created, fraction=3)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields := _fields(record):
            line += " " + " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=LEVELS, help="least severe level logged")
    parser.add_argument("--log-format", default="text", choices=FORMATS,
                        help="text for people, json (one object per line) for log pipelines")


def configure_logging(level: str, fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr by default) in ``fmt``; calling again replaces the setup.

    Returns the installed handler (so a caller can remove it).
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
    return handler
