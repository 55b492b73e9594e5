"""Render charts/mcgw with the real helm (built by the test bed, hack/helm) and keep the manifests
generated from it in step: deploy/rbac/mcgw.yaml and deploy/mcgw/mcgw.yaml.

``python -m tests.chart`` says whether those files match the chart; ``--update`` (``make manifests``)
rewrites them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.testbed.build import CACHE, cached_helm, helm_binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mcgw"
PLAIN_VALUES = REPO / "deploy" / "mcgw" / "values.yaml"
RELEASE = "mcgw"
NAMESPACE = "mcgw-system"
_HEADER = ("# Generated from charts/mcgw by `make manifests` (python -m tests.chart --update) with "
           "deploy/mcgw/values.yaml,\n# release {release} in namespace {namespace}. Edit the chart, not this file.\n")


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


def helm() -> Path:
    return cached_helm() or helm_binary()


def _env() -> dict[str, str]:
    # helm's own state (repositories, plugins, registry logins) kept out of the user's home.
    home = CACHE / "helm-home"
    return {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def run_helm(args: Sequence[str]) -> str:
    result = subprocess.run([str(helm()), *args], capture_output=True, text=True, env=_env(), check=False)
    if result.returncode != 0:
        raise HelmError((result.stderr or result.stdout).strip())
    return result.stdout


def template(values: dict[str, Any] | Path | None = None, *args: str, release: str = RELEASE,
             namespace: str = NAMESPACE) -> str:
    """``helm template`` of the chart with these values (a dict or a file) and extra arguments."""
    with tempfile.TemporaryDirectory() as tmp:
        files: list[str] = []
        if isinstance(values, Path):
            files = ["--values", str(values)]
        elif values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            files = ["--values", str(path)]
        return run_helm(["template", release, str(CHART), "--namespace", namespace, *files, *args])


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@dataclass(frozen=True)
class Generated:
    path: Path
    args: tuple[str, ...]

    def render(self) -> str:
        header = _HEADER.format(release=RELEASE, namespace=NAMESPACE)
        return header + template(PLAIN_VALUES, *self.args)


GENERATED = (
    Generated(REPO / "deploy" / "rbac" / "mcgw.yaml", ("--show-only", "templates/rbac.yaml")),
    Generated(REPO / "deploy" / "mcgw" / "mcgw.yaml", ("--include-crds",)),
)


def stale() -> list[Path]:
    """The generated files whose committed text differs from what the chart renders now."""
    return [g.path for g in GENERATED if not g.path.exists() or g.path.read_text() != g.render()]


def update() -> list[Path]:
    changed = stale()
    for generated in GENERATED:
        if generated.path in changed:
            generated.path.parent.mkdir(parents=True, exist_ok=True)
            generated.path.write_text(generated.render())
    return changed
