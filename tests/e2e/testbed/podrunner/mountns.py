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

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
# A bind remount replaces the mount's flags: these are carried over when it is made read-only.
_KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
# The kernel's filesystems stay as a runtime sets them up, readOnlyRootFilesystem or not.
_SYSTEM_MOUNTS = ("/dev", "/proc", "/sys")

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


def _mountinfo() -> list[tuple[str, str, str]]:
    """``(mount point, fstype, per-mount options)`` of every mount of this namespace, in mount order."""
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            separator = fields.index("-")
            mounts.append((_unescape(fields[4]), fields[separator + 1], fields[5]))
    return mounts


def _mounts() -> list[tuple[str, str]]:
    """``(mount point, fstype)`` of every mount of this namespace, in mount order."""
    return [(point, fstype) for point, fstype, _ in _mountinfo()]


def _read_only_root(writable: list[str]) -> None:
    """readOnlyRootFilesystem: the image is the host's tree as this namespace sees it, so every mount of it
    becomes read-only here (the host's stay as they are: propagation is slave), except the writable
    volumes and the kernel's filesystems."""
    options = {point: opts for point, _, opts in _mountinfo()}  # the topmost mount at each path
    for point, opts in options.items():
        if any(_within(point, d) for d in _SYSTEM_MOUNTS) or any(_within(point, t) for t in writable):
            continue
        kept = sum(flag for name, flag in _KEPT_FLAGS.items() if name in opts.split(","))
        _mount("none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _within(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


class MountSetup:
    def __init__(self, stage: str) -> None:
        self.private: list[str] = []  # directories whose changes stay in this namespace
        _mount("mcgw-stage", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
        # Reached through a descriptor: a volume mounted over a parent of it (an emptyDir at /tmp) hides the path.
        self._fd = os.open(stage, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.stage = f"/proc/self/fd/{self._fd}"

    def close(self) -> None:
        """The staging tmpfs leaves the tree; the overlays keep their upper layers."""
        _umount(self.stage)
        os.close(self._fd)

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
    setup = MountSetup(str(plan["stage"]))
    # The image's own directories go in first, so that volumes lie over them as over a real image's files.
    listed_files = plan.get("imageFiles") or []
    assert isinstance(listed_files, list)
    image_files: list[dict[str, object]] = [{**m, "readOnly": True} for m in listed_files]
    ordered = [*image_files, *mounts]
    # Every source is opened first: one may lie below another's target (the pod's files under the runner's
    # state directory in /tmp, and an emptyDir mounted at /tmp).
    sources = [(os.open(str(m["source"]), os.O_PATH | os.O_CLOEXEC), os.path.isdir(str(m["source"])))
               for m in ordered]
    for mount, (fd, is_dir) in zip(ordered, sources, strict=True):
        setup.ensure(str(mount["target"]), is_dir)
        _mount(f"/proc/self/fd/{fd}", str(mount["target"]), None, MS_BIND | MS_REC)
        os.close(fd)
    # Read-only last, so that mount points nested in a read-only volume could still be made.
    for mount in ordered:
        if mount.get("readOnly"):
            _mount("none", str(mount["target"]), None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    working_dir = str(plan.get("workingDir") or "/")
    if not os.path.exists(working_dir):
        setup.ensure(working_dir, True)
    setup.close()
    if plan.get("readOnlyRoot"):
        _read_only_root([str(m["target"]) for m in mounts if not m.get("readOnly")])
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
