"""The one base image the builder knows, ``debian:bookworm-slim``, made with debootstrap.

Like Debian's own container images: the minbase variant, dpkg told to leave out documentation, manuals
and translations, apt's lists and caches removed, and the host's hostname and resolver not kept. It is
one layer, cached by everything that goes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import layers

BASES = {"debian:bookworm-slim": {"suite": "bookworm", "variant": "minbase", "mirror": "http://deb.debian.org/debian",
                                  "security": "http://deb.debian.org/debian-security"}}

DPKG_EXCLUDES = """\
# What Debian's slim images leave out.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
APT_CONFIG = (
    'APT::Install-Recommends "false";\n'
    'Acquire::Languages "none";\n'
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
    ' /var/cache/apt/*.bin || true"; };\n'
)
SOURCES = """\
Types: deb
URIs: {mirror}
Suites: {suite} {suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {security}
Suites: {suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# Bumped when the slimming below changes, so a cached base made the old way is not reused.
RECIPE = "1"


def _log(message: str) -> None:
    print(f"[image] {message}", flush=True)


def _debootstrap_version() -> str:
    out = subprocess.run(["debootstrap", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def key(reference: str) -> str:
    inputs = {"base": BASES[reference], "debootstrap": _debootstrap_version(), "arch": _arch(), "recipe": RECIPE,
              "dpkg": DPKG_EXCLUDES, "apt": APT_CONFIG, "sources": SOURCES}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _slim(root: Path, base: dict[str, str]) -> None:
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/docker").write_text(APT_CONFIG)
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES.format(**base))
    share = root / "usr/share"
    for folder in ("man", "groff", "info", "lintian", "linda", "locale"):
        for item in (share / folder).glob("*"):
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    for package in (share / "doc").glob("*"):
        if package.is_dir() and not package.is_symlink():
            for item in package.iterdir():
                if item.name != "copyright":
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log",
                    "var/log/apt/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"):
        for item in root.glob(pattern):
            if item.is_file() or item.is_symlink():
                item.unlink()
    for name in ("etc/hostname", "etc/resolv.conf"):
        (root / name).unlink(missing_ok=True)
    machine_id = root / "etc/machine-id"
    if machine_id.exists():
        machine_id.write_text("")


def base_layer(reference: str, cache: Path) -> layers.Layer:
    """The base image's layer: from the cache, or made with debootstrap (a few minutes, downloads ~30 MB)."""
    if reference not in BASES:
        raise ValueError(f"hack/image knows only the base images {sorted(BASES)}, not {reference}")
    folder = cache / "base"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{reference.replace(':', '-')}-{key(reference)}"
    blob, meta = folder / f"{name}.tar.gz", folder / f"{name}.json"
    if blob.exists() and meta.exists():
        recorded = json.loads(meta.read_text())
        return layers.Layer(blob, recorded["digest"], recorded["diff_id"], recorded["size"])
    base = BASES[reference]
    started = time.monotonic()
    _log(f"debootstrap {base['variant']} {base['suite']} for {reference} (cached as {blob})")
    with tempfile.TemporaryDirectory(dir=folder, prefix="debootstrap-") as work:
        root = Path(work) / "root"
        log = Path(work) / "debootstrap.log"
        with open(log, "w") as out:
            done = subprocess.run(["nice", "-n", "10", "debootstrap", f"--variant={base['variant']}",
                                   base["suite"], str(root), base["mirror"]], stdout=out, stderr=subprocess.STDOUT,
                                  check=False)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({done.returncode}):\n{log.read_text()[-3000:]}")
        _slim(root, base)
        before: dict[str, layers.Entry] = {}
        changed, removed = layers.changes(before, layers.snapshot(root))
        layer = layers.write(root, changed, removed, blob)
    partial = meta.with_name(f"{meta.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}))
    os.replace(partial, meta)
    os.chmod(blob, 0o644)
    _log(f"base {reference}: {layer.size / 1e6:.1f} MB compressed in {time.monotonic() - started:.0f}s")
    return layer
