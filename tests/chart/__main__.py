"""``python -m tests.chart [--update]``: check (or rewrite) the manifests generated from charts/mcgw."""

import sys

from . import REPO, stale, update

if "--update" in sys.argv[1:]:
    for path in update():
        print(f"rewrote {path.relative_to(REPO)}")
    sys.exit(0)
if paths := stale():
    for path in paths:
        print(f"{path.relative_to(REPO)} differs from the chart; run `make manifests`", file=sys.stderr)
    sys.exit(1)
print("the generated manifests match charts/mcgw")
