"""The first process of a container: sets up its mount namespace, then executes the container's command.

Run as ``python -I -S mountns.py PLAN.json`` by the pod runner, already inside the pod's network
namespace and fresh mount, IPC, UTS and PID namespaces (``unshare``). Standard library only, no package
imports: it starts for every container.

Mount paths are honoured as written: a bind mount onto a path that does not exist on the host (say
``/etc/secret-volume``) first puts a private overlay (its upper layer on a tmpfs of this namespace only)
on the deepest existing directory, with that directory's own submounts carried over, so the host's
files are never touched. Network-namespace files of other pods are detached, so this container does not
keep their namespaces alive. A failure before ``exec`` is written to the plan's ``startFifo``, which this
process alone holds open (close-on-exec): the runner reads end-of-file at a successful ``exec``, or the
error, and so tells a start error from the program's own exit.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(errno)}")


def _umount(target: str) -> None:
    _libc.umount2(target.encode(), MNT_DETACH)


def _unescape(path: str) -> str:
    return path.encode().decode("unicode_escape") if "\\" in path else path


def _mounts() -> list[tuple[str, str]]:
    """``(mount point, fstype)`` of every mount of this namespace, in mount order."""
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            separator = fields.index("-")
            mounts.append((_unescape(fields[4]), fields[separator + 1]))
    return mounts


def _within(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


class MountSetup:
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.private: list[str] = []  # directories whose changes stay in this namespace
        _mount("mcgw-stage", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")

    def _overlay(self, directory: str) -> None:
        index = len(self.private)
        base = os.path.join(self.stage, f"o{index}")
        upper, work, keep = (os.path.join(base, name) for name in ("upper", "work", "keep"))
        for path in (upper, work, keep):
            os.makedirs(path)
        below = [point for point, _ in _mounts() if point != directory and _within(point, directory)]
        top_level = [p for p in below if not any(q != p and _within(p, q) for q in below)]
        if top_level:
            _mount(directory, keep, None, MS_BIND | MS_REC)
        _mount("overlay", directory, "overlay", 0, f"lowerdir={directory},upperdir={upper},workdir={work}")
        for point in top_level:
            relative = os.path.relpath(point, directory)
            _mount(os.path.join(keep, relative), point, None, MS_BIND | MS_REC)
        if top_level:
            _umount(keep)
        self.private.append(directory)

    def ensure(self, target: str, directory: bool) -> None:
        """Make ``target`` exist as a mount point without changing the host's filesystem."""
        if os.path.lexists(target):
            return
        existing = os.path.dirname(target)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        existing = os.path.realpath(existing)
        if not any(_within(existing, p) for p in self.private):
            if existing == "/":
                # Nothing can be laid over / itself: the new top-level directory is made on the host,
                # empty, and everything below it is private.
                top = "/" + os.path.relpath(target, "/").split("/")[0]
                os.makedirs(top, exist_ok=True)
                existing = top
            self._overlay(existing)
        if directory:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "a"):
                pass


def _detach_namespace_files() -> None:
    for point, fstype in reversed(_mounts()):
        if fstype == "nsfs":
            _umount(point)


def _fail(error_fd: int, message: str) -> None:
    if error_fd >= 0:
        os.write(error_fd, message.encode())
    print(f"container start failed: {message}", file=sys.stderr, flush=True)
    os._exit(128)


def _check_not_hidden(argv0: str, env: dict[str, str], targets: list[str]) -> None:
    """The image is the host's filesystem: a volume mounted over the directory holding the program
    (say ``/work`` over a virtualenv in ``/work/...``) would hide it. Say so rather than fail to exec."""
    found = shutil.which(argv0, path=env.get("PATH")) if "/" not in argv0 else argv0
    if not found:
        return
    for path in {os.path.abspath(found), os.path.realpath(found)}:
        for target in targets:
            if _within(path, target.rstrip("/") or "/"):
                raise RuntimeError(f"mountPath {target} would hide the container's executable {path}, which the "
                                   "test bed runs from the host's filesystem; mount the volume elsewhere")


def _prepare(plan: dict[str, object]) -> None:
    argv, env, listed = plan["argv"], plan["env"], plan["mounts"]
    assert isinstance(argv, list)
    assert isinstance(env, dict)
    assert isinstance(listed, list)
    mounts: list[dict[str, object]] = sorted(listed, key=lambda m: str(m["target"]).rstrip("/").count("/"))
    _check_not_hidden(str(argv[0]), env, [str(m["target"]) for m in mounts])
    _detach_namespace_files()
    stage = str(plan["stage"])
    setup = MountSetup(stage)
    for mount in mounts:
        setup.ensure(str(mount["target"]), os.path.isdir(str(mount["source"])))
        _mount(str(mount["source"]), str(mount["target"]), None, MS_BIND | MS_REC)
    # Read-only last, so that mount points nested in a read-only volume could still be made.
    for mount in mounts:
        if mount.get("readOnly"):
            _mount("none", str(mount["target"]), None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    working_dir = str(plan.get("workingDir") or "/")
    if not os.path.exists(working_dir):
        setup.ensure(working_dir, True)
    _umount(stage)  # the overlays keep their upper layers; the staging tmpfs leaves the tree
    if plan.get("hostname"):
        socket.sethostname(str(plan["hostname"]))
    os.chdir(working_dir)


def main(plan_path: str) -> None:
    with open(plan_path) as source:
        plan = json.load(source)
    error_fd = os.open(plan["startFifo"], os.O_WRONLY | os.O_CLOEXEC) if plan.get("startFifo") else -1
    try:
        _prepare(plan)
    except Exception as error:
        _fail(error_fd, f"{type(error).__name__}: {error}")
    argv = [str(arg) for arg in plan["argv"]]
    try:
        os.execvpe(argv[0], argv, plan["env"])
    except FileNotFoundError:
        _fail(error_fd, f'exec: "{argv[0]}": executable file not found in $PATH')
    except OSError as error:
        _fail(error_fd, f'exec: "{argv[0]}": {error.strerror}')


if __name__ == "__main__":
    main(sys.argv[1])
