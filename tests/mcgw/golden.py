"""Golden files: ``<case>.in.yaml`` goes through a pure function and must give ``<case>.out.yaml``.

Regenerate every golden file with ``pytest --update-golden``, then review the diff.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from mcgw.translate import redacted


def cases(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.in.yaml"))


def check(case: Path, produce: Callable[[list[Any]], Any], update: bool) -> None:
    documents = [doc for doc in yaml.safe_load_all(case.read_text()) if doc is not None]
    actual = yaml.safe_dump(produce(documents), sort_keys=False, width=120)
    expected_path = case.with_name(case.name.replace(".in.yaml", ".out.yaml"))
    if update or not expected_path.exists():
        expected_path.write_text(actual)
        if not update:
            raise AssertionError(f"{expected_path.name} did not exist; wrote it, review and commit it")
        return
    assert actual == expected_path.read_text(), f"{case.name}: output differs from {expected_path.name}"


def _sorted_formats(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: dict(sorted(item.items())) if key == "jsonFormat" and isinstance(item, dict)
                else _sorted_formats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_sorted_formats(item) for item in value]
    return value


def envoy_data(message: Message) -> Any:
    """An Envoy resource as golden files show it: its JSON (keys redacted), with each access log's JSON format
    sorted by key, since that format is a protobuf Struct, a map that protobuf iterates in no fixed order."""
    return _sorted_formats(json.loads(json_format.MessageToJson(redacted(message))))
