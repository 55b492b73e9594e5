"""``python -m hack.image``: build the repository's Dockerfile into build/image/ (what ``make image`` runs)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from .build import CACHE, BuildError, build

REPO = Path(__file__).resolve().parents[2]
REPOSITORY = "mcgw"  # charts/mcgw's image.repository; the tag is the version, the chart's appVersion


def default_tag() -> str:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return f"{REPOSITORY}:{version}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.image", description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "build" / "image" / "oci",
                        help="the OCI image layout to write (default build/image/oci)")
    parser.add_argument("--archive", type=Path, default=REPO / "build" / "image" / "mcgw.tar",
                        help="the `docker load` archive to write (default build/image/mcgw.tar)")
    parser.add_argument("--tag", default=default_tag())
    parser.add_argument("--no-cache", action="store_true", help="run every step again")
    args = parser.parse_args(argv)
    try:
        result = build(REPO / "Dockerfile", REPO, args.output, tag=args.tag, archive=args.archive,
                       use_cache=not args.no_cache, cache=CACHE)
    except BuildError as error:
        print(f"[image] {error}", file=sys.stderr)
        return 1
    size = sum(layer["size"] for layer in _manifest_layers(result.layout))
    print(f"[image] {args.tag} {result.manifest_digest}: {size / 1e6:.1f} MB compressed, "
          f"{result.steps_run} steps run, {result.steps_cached} cached, {result.seconds:.0f}s")
    print(f"[image] wrote {result.layout} and {result.archive}")
    return 0


def _manifest_layers(layout: Path) -> list[dict[str, int]]:
    from .oci import read_layout

    return read_layout(layout).manifest["layers"]  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
