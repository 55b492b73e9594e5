"""Run a program in a root filesystem the way a container runtime would: its own mount and PID namespaces,
/proc, a minimal /dev, a tmpfs /run, the given user, environment and working directory.

``run()`` starts ``unshare`` with this module as the program inside; ``main()`` (inside) mounts, chroots,
drops to the user and execs, so the exit status is the program's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Spec:
    root: str
    argv: list[str]
    env: dict[str, str]
    uid: int = 0
    gid: int = 0
    cwd: str = "/"
    binds: dict[str, str] = field(default_factory=dict)  # host file or folder -> path inside, read-only
    read_only: bool = False  # the root file system, as with a pod's readOnlyRootFilesystem
    tmpfs: list[str] = field(default_factory=list)  # writable empty folders over it, as emptyDir volumes


def _command(spec: Spec) -> list[str]:
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child",
            sys.executable, "-m", "hack.image.chroot", json.dumps(asdict(spec))]


def _host_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def run(spec: Spec, *, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(spec), cwd=REPO, env=_host_env(), capture_output=capture, text=True,
                          timeout=timeout, check=False)


def start(spec: Spec, *, stdout: int | None = None, stderr: int | None = None) -> subprocess.Popen[str]:
    """Start the program and return at once; ``program_pid`` finds the program itself (PID 1 inside)."""
    return subprocess.Popen(_command(spec), cwd=REPO, env=_host_env(), text=True, stdout=stdout, stderr=stderr)


def program_pid(started: subprocess.Popen[str]) -> int | None:
    """The host PID of the program: unshare's one child. Signals for the program go there (PID 1 inside
    its namespace gets only the signals it handles, as in a container)."""
    children = Path(f"/proc/{started.pid}/task/{started.pid}/children")
    found = children.read_text().split() if children.exists() else []
    return int(found[0]) if found else None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_point(path: Path, like: Path) -> None:
    if like.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch()


def _prepare(spec: Spec) -> None:
    root = Path(spec.root)
    _mount("--make-rprivate", "/")
    for name in ("proc", "dev", "run", *(inside.lstrip("/") for inside in spec.tmpfs)):
        (root / name).mkdir(parents=True, exist_ok=True)
    volatile = ("dev/", "run/", *(f"{inside.strip('/')}/" for inside in spec.tmpfs))
    for host, inside in spec.binds.items():
        if not inside.lstrip("/").startswith(volatile):
            _mount_point(root / inside.lstrip("/"), Path(host))
    if spec.read_only:  # mount points made first: afterwards nothing can be created in it
        _mount("--bind", str(root), str(root))
        _mount("-o", "remount,bind,ro", str(root))
    _mount("-t", "proc", "proc", str(root / "proc"))
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", str(root / "dev"))
    for device in DEVICES:
        (root / "dev" / device).touch()
        _mount("--bind", f"/dev/{device}", str(root / "dev" / device))
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        os.symlink(link, root / "dev" / name)
    (root / "dev" / "pts").mkdir()
    _mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts", str(root / "dev" / "pts"))
    os.symlink("pts/ptmx", root / "dev" / "ptmx")
    (root / "dev" / "shm").mkdir()
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(root / "dev" / "shm"))
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", str(root / "run"))
    for inside in spec.tmpfs:
        _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(root / inside.lstrip("/")))
    for host, inside in spec.binds.items():
        target = root / inside.lstrip("/")
        _mount_point(target, Path(host))  # one on a tmpfs mounted above can only be made now
        _mount("--rbind" if Path(host).is_dir() else "--bind", host, str(target))
        _mount("-o", "remount,bind,ro", str(target))


def main(argv: list[str]) -> None:
    spec = Spec(**json.loads(argv[0]))
    _prepare(spec)
    os.chroot(spec.root)
    os.chdir(spec.cwd)
    os.setgroups([])
    os.setgid(spec.gid)
    os.setuid(spec.uid)
    try:
        os.execvpe(spec.argv[0], spec.argv, spec.env)
    except OSError as error:
        print(f"cannot run {spec.argv[0]} in the image: {error}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
