"""The file provider: ``DIR/<cluster>/*.yaml`` into the store, watched for changes.

Directories are polled (mtime and size of every manifest) a few times a second, which needs no
inotify and works on every filesystem; a change is applied well within a second. Only changed files
are re-read, in a worker thread, so a slow or hostile file never stalls the event loop (``/healthz``,
xDS). Each file keeps its last good objects while it is broken (the error is reported in the log,
``errors`` and /api/status until it is fixed); a document of a kind mcgw does not read is skipped and
listed in ``skipped`` (logged once as a warning), and an object
that cannot be parsed is reported while its last good version (if any) stays and the file's other objects
load. A missing
cluster directory never empties the cluster, and a file that is removed or emptied is a deletion only
once it has stayed so for ``deletion_delay`` (an editor's truncate-and-write, or a checkout, is not).
Loopback addresses are fine in EndpointSlices here: nothing validates them the way an API server does,
which is what lets a laptop demo run on 127/8.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mcgw.objects.clusterset import ClusterSetProperties
from mcgw.objects.kinds import KINDS
from mcgw.objects.model import AnyObject, ManifestError
from mcgw.providers.files.manifests import (
    DEFAULT_LIMITS,
    FileContents,
    FileLimits,
    manifest_paths,
    merge_files,
    read_clusterset_properties,
    read_manifest_file,
)
from mcgw.store import Store
from mcgw.support import collector

log = logging.getLogger(__name__)

Stamp = tuple[int, int]  # mtime_ns, size


@dataclass
class _FileState:
    """One manifest as last read: its last good contents, and what is wrong with it now."""

    stamp: Stamp
    contents: FileContents
    error: str | None = None
    rejected: tuple[str, ...] = ()  # documents refused, each saying whether a last good version stands in
    empty_since: float | None = None  # read as empty while its last good contents had objects
    gone_since: float | None = None  # no longer on disk; its objects stay until the delay has passed


@dataclass
class _ClusterState:
    files: dict[Path, _FileState] = field(default_factory=dict)
    missing: str | None = None  # the cluster directory is not there
    conflict: str | None = None  # two files define the same object


@dataclass(frozen=True)
class _Scan:
    """What one poll found for a cluster: objects to apply (None: keep the store as it is) and problems."""

    cluster: str
    reread: bool
    objects: list[AnyObject] | None
    problems: tuple[str, ...]
    skipped: tuple[str, ...] = ()


def _stamp(path: Path) -> Stamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None  # removed while we looked; treated as gone
    return stat.st_mtime_ns, stat.st_size


def _with_last_good(contents: FileContents, known: _FileState | None) -> tuple[FileContents, tuple[str, ...]]:
    """``contents`` with the last good version of each object a rejected document names (as an API server
    refuses a bad update and keeps the object), and the rejections' messages."""
    if not contents.rejected:
        return contents, ()
    present = {parsed.key for parsed in contents.objects}
    wanted = {r.key for r in contents.rejected if r.key is not None and r.key not in present}
    kept_objects: list[AnyObject] = []
    kept_sources: list[str] = []
    if known is not None and wanted:
        for parsed, source in zip(known.contents.objects, known.contents.sources, strict=True):
            if parsed.key in wanted:
                kept_objects.append(parsed)
                kept_sources.append(source)
    kept = {parsed.key for parsed in kept_objects}
    messages = tuple(f"{r.message}; {'its last good version is kept' if r.key in kept else 'it is not served'} "
                     "until it is fixed" for r in contents.rejected)
    if kept_objects:
        contents = replace(contents, objects=contents.objects + tuple(kept_objects),
                           sources=contents.sources + tuple(kept_sources))
    return contents, messages


class FileProvider:
    """Feeds a :class:`Store` from a ClusterSet directory and keeps it in step with the files."""

    def __init__(self, root: Path, interval: float = 0.25, *, deletion_delay: float = 2.0,
                 limits: FileLimits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.interval = interval
        self.deletion_delay = deletion_delay
        self.limits = limits
        self._clock = clock
        self.errors: dict[str, str] = {}
        self.skipped: dict[str, tuple[str, ...]] = {}  # per cluster: documents of kinds mcgw does not read
        self.loads = 0
        self.properties: ClusterSetProperties = read_clusterset_properties(root)
        self._state = {cluster: self._read_initial(root / cluster) for cluster in self.clusters}
        self._initial: dict[str, list[AnyObject]] | None = {
            cluster: merge_files([f.contents for f in state.files.values()]) for cluster, state in self._state.items()}

    def _read_initial(self, directory: Path) -> _ClusterState:
        """The first read is strict about files (there is no last good state yet, so an unusable file goes to
        the caller); an object the model refuses is left out and reported, an unread kind skipped."""
        state = _ClusterState()
        for path in manifest_paths(directory):
            stamp = _stamp(path)
            try:
                contents, rejected = _with_last_good(read_manifest_file(path, limits=self.limits), None)
            except OSError as error:
                raise ManifestError(str(path), f"cannot be read: {error.strerror or error}") from None
            state.files[path] = _FileState(stamp or (0, 0), contents, rejected=rejected)
        self._report(directory.name, self._problems(state), self._skipped(state))
        return state

    @property
    def clusters(self) -> list[str]:
        return [c.name for c in self.properties.clusters]

    def fill(self, store: Store) -> None:
        """Put the initial objects into ``store`` (every kind counts as listed)."""
        initial, self._initial = self._initial or {}, None
        for cluster in self.clusters:
            self._apply(store, cluster, initial.get(cluster, []))

    def _apply(self, store: Store, cluster: str, objects: list[AnyObject]) -> None:
        for kind in KINDS:
            store.replace_kind(cluster, kind.name, [o for o in objects if o.kind == kind.name])
        self.loads += 1

    def scan(self) -> list[_Scan]:
        """Read what changed on disk, for every cluster. No store access: this is what runs in a worker thread."""
        now = self._clock()
        with collector.paused():
            return [self._scan_cluster(cluster, now) for cluster in self.clusters]

    def _scan_cluster(self, cluster: str, now: float) -> _Scan:
        state = self._state[cluster]
        directory = self.root / cluster
        if not directory.is_dir():
            state.missing = (f"{directory}: the cluster directory is missing; its last good objects are kept "
                             "until it is back")
            return _Scan(cluster, False, None, self._problems(state), self._skipped(state))
        state.missing = None
        changed = reread = False
        present = set()
        for path in manifest_paths(directory):
            stamp = _stamp(path)
            if stamp is None:
                continue
            present.add(path)
            known = state.files.get(path)
            if known is not None and known.stamp == stamp and known.gone_since is None:
                continue
            reread = True
            changed |= self._reread(cluster, path, stamp, known, state, now)
        for path, known in list(state.files.items()):
            if path in present:
                continue
            if known.gone_since is None:
                known.gone_since = now
                reread = True
                if known.contents.objects:
                    log.info("cluster %s: %s is gone; its objects are kept unless it stays gone for %.1f s",
                             cluster, path, self.deletion_delay, extra={"cluster": cluster})
            if now - known.gone_since >= self.deletion_delay:
                del state.files[path]
                changed = reread = True
        for path, known in state.files.items():
            if known.empty_since is not None and now - known.empty_since >= self.deletion_delay:
                known.contents, known.empty_since = FileContents((), ()), None
                changed = reread = True
                log.info("cluster %s: %s stayed empty; its objects are removed", cluster, path,
                         extra={"cluster": cluster})
        objects = None
        if changed:
            try:
                objects = merge_files([state.files[path].contents for path in sorted(state.files)])
                state.conflict = None
            except ManifestError as error:
                state.conflict = f"{error}; the cluster's last good objects are kept"
        return _Scan(cluster, reread, objects, self._problems(state), self._skipped(state))

    def _reread(self, cluster: str, path: Path, stamp: Stamp, known: _FileState | None, state: _ClusterState,
                now: float) -> bool:
        """Read one changed file into ``state``; whether the cluster's objects changed."""
        try:
            contents = read_manifest_file(path, limits=self.limits)
        except FileNotFoundError:
            return False  # removed since it was listed: the next poll sees it gone
        except (ManifestError, OSError) as error:
            message = str(error) if isinstance(error, ManifestError) else f"{path}: cannot be read: {error}"
            if known is None:
                state.files[path] = _FileState(stamp, FileContents((), ()), error=message)
            else:
                known.stamp, known.error, known.gone_since = stamp, message, None
            return False
        contents, rejected = _with_last_good(contents, known)
        if known is not None and known.contents.objects and not contents.objects:
            known.stamp, known.error, known.gone_since, known.rejected = stamp, None, None, rejected
            if known.empty_since is None:
                known.empty_since = now
                log.info("cluster %s: %s is empty; its objects are kept unless it stays empty for %.1f s",
                         cluster, path, self.deletion_delay, extra={"cluster": cluster})
            return False
        state.files[path] = _FileState(stamp, contents, rejected=rejected)
        return True

    @staticmethod
    def _problems(state: _ClusterState) -> tuple[str, ...]:
        problems = [state.missing] if state.missing else []
        for path in sorted(state.files):
            known = state.files[path]
            if known.error:
                problems.append(f"{known.error}; its last good objects are kept" if known.contents.objects
                                else known.error)
            problems.extend(known.rejected)
        if state.conflict:
            problems.append(state.conflict)
        return tuple(problems)

    @staticmethod
    def _skipped(state: _ClusterState) -> tuple[str, ...]:
        return tuple(skip for path in sorted(state.files) for skip in state.files[path].contents.skipped)

    def apply(self, store: Store, scans: list[_Scan]) -> list[str]:
        """Apply what :meth:`scan` found (on the event loop: the store is not thread-safe)."""
        for scan in scans:
            self._report(scan.cluster, scan.problems, scan.skipped)
            if scan.objects is not None:
                log.info("cluster %s: re-read, %d objects from %s", scan.cluster, len(scan.objects),
                         self.root / scan.cluster, extra={"cluster": scan.cluster})
                self._apply(store, scan.cluster, scan.objects)
        return [scan.cluster for scan in scans if scan.reread]

    def _report(self, cluster: str, problems: tuple[str, ...], skipped: tuple[str, ...]) -> None:
        known = set(self.skipped.get(cluster, ()))
        for skip in skipped:
            if skip not in known:
                log.warning("cluster %s: %s", cluster, skip, extra={"cluster": cluster})
        if skipped:
            self.skipped[cluster] = skipped
        else:
            self.skipped.pop(cluster, None)
        before = self.errors.get(cluster)
        if not problems:
            if self.errors.pop(cluster, None) is not None:
                log.info("cluster %s: manifests are valid again", cluster, extra={"cluster": cluster})
            return
        message = "; ".join(problems)
        if message != before:
            old = set(before.split("; ")) if before else set()
            for problem in problems:
                if problem not in old:
                    log.error("cluster %s: %s", cluster, problem, extra={"cluster": cluster})
        self.errors[cluster] = message

    def poll(self, store: Store) -> list[str]:
        """Scan and apply at once (tests, and callers without a loop); returns the clusters that were re-read."""
        return self.apply(store, self.scan())

    async def run(self, store: Store) -> None:
        """Poll forever; reading and parsing run in a worker thread, only applying runs on the loop."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                scans = await asyncio.to_thread(self.scan)
                self.apply(store, scans)
            except Exception:  # a provider bug must not take the controller down
                log.exception("polling %s failed", self.root)
