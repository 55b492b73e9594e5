"""Layers as OCI defines them: the files a step added or changed, and whiteouts for what it removed."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Mount points a step's chroot gets, and the files every container runtime provides: never in a layer.
MOUNTED = ("proc", "sys", "dev", "run")
PROVIDED = frozenset({"etc/resolv.conf", "etc/hostname"})
WHITEOUT = ".wh."

Entry = tuple[int, int, int, int, int, int, str]  # mode, uid, gid, size, mtime_ns, rdev, link target


def _entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    stack = [""]
    while stack:
        relative = stack.pop()
        with os.scandir(root / relative if relative else root) as listing:
            for item in listing:
                path = f"{relative}/{item.name}" if relative else item.name
                info = item.stat(follow_symlinks=False)
                yield path, info
                if stat.S_ISDIR(info.st_mode) and not (relative == "" and item.name in MOUNTED):
                    stack.append(path)


def snapshot(root: Path) -> dict[str, Entry]:
    """What a later snapshot is compared with: each path's metadata (a changed file has a new mtime)."""
    found: dict[str, Entry] = {}
    for path, info in _entries(root):
        if path in PROVIDED:
            continue
        target = os.readlink(root / path) if stat.S_ISLNK(info.st_mode) else ""
        found[path] = (info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, info.st_rdev, target)
    return found


def changes(before: dict[str, Entry], after: dict[str, Entry]) -> tuple[list[str], list[str]]:
    """Paths added or changed, and the top-most paths removed (a removed directory needs one whiteout)."""
    changed = sorted(path for path, entry in after.items() if before.get(path) != entry)
    removed = sorted(path for path in before if path not in after)
    gone = set(removed)
    top = [path for path in removed if path.rpartition("/")[0] not in gone]
    return changed, top


@dataclass(frozen=True)
class Layer:
    """A gzip layer blob: ``digest`` names the compressed bytes, ``diff_id`` the tar inside."""

    path: Path
    digest: str
    diff_id: str
    size: int


class _Hashing:
    """A write-only file that hashes what passes through it on the way to ``target``."""

    def __init__(self, target: object) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.target.write(data)  # type: ignore[attr-defined, no-any-return]

    def flush(self) -> None:
        self.target.flush()  # type: ignore[attr-defined]


def write(root: Path, changed: list[str], removed: list[str], out: Path) -> Layer:
    """Write the layer of ``changed`` paths under ``root`` and whiteouts for ``removed`` to ``out`` (gzip)."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.partial")  # concurrent builds share the cache
    with open(tmp, "wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as zipped:
            plain = _Hashing(zipped)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for path in changed:
                    info = tar.gettarinfo(str(root / path), arcname=path)
                    info.uname = info.gname = ""
                    if info.isreg():
                        with open(root / path, "rb") as content:
                            tar.addfile(info, content)
                    else:
                        tar.addfile(info)
                for path in removed:
                    parent, _, name = path.rpartition("/")
                    whiteout = tarfile.TarInfo(f"{parent}/{WHITEOUT}{name}" if parent else f"{WHITEOUT}{name}")
                    tar.addfile(whiteout)
    os.replace(tmp, out)
    return Layer(out, f"sha256:{compressed.hash.hexdigest()}", f"sha256:{plain.hash.hexdigest()}", compressed.size)


def apply(layer: Path, root: Path) -> None:
    """Unpack a layer onto ``root``: whiteouts remove, the rest is extracted with owners and modes.

    The layers come from this builder (or an image it wrote), so members are extracted as they are.
    """
    with tarfile.open(layer, "r:gz") as tar:
        for member in tar:
            parent, _, name = member.name.rpartition("/")
            if name.startswith(WHITEOUT):
                target = root / parent / name[len(WHITEOUT):]
                if target.is_dir() and not target.is_symlink():
                    _remove_tree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                continue
            target = root / member.name
            if target.is_dir() and not target.is_symlink() and not member.isdir():
                _remove_tree(target)
            elif (target.exists() or target.is_symlink()) and not (member.isdir() and target.is_dir()):
                target.unlink()
            tar.extract(member, root, numeric_owner=True, filter="fully_trusted")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as content:
        while chunk := content.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
