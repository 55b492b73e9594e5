"""Golden files: ``<case>.in.yaml`` goes through a pure function and must give ``<case>.out.yaml``.

Regenerate every golden file with ``pytest --update-golden``, then review the diff.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


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
