"""The file provider: ``DIR/<cluster>/*.yaml`` into the store, watched for changes.

Directories are polled (mtime, size and name of every manifest) a few times a second, which needs no
inotify and works on every filesystem; a change is applied well within a second. A cluster directory
that no longer parses keeps its last good objects in the store and the error is reported (log,
``errors``, /api/status) until the files are fixed. Loopback addresses are fine in EndpointSlices here:
nothing validates them the way an API server does, which is what lets a laptop demo run on 127/8.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mcgw.objects.clusterset import ClusterSetProperties
from mcgw.objects.kinds import KINDS
from mcgw.objects.model import AnyObject, ManifestError
from mcgw.providers.files.manifests import MANIFEST_SUFFIXES, read_cluster_dir, read_clusterset_dir
from mcgw.store import Store

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def _fingerprint(directory: Path) -> Fingerprint:
    entries = []
    for path in directory.rglob("*"):
        if path.suffix in MANIFEST_SUFFIXES and path.is_file():
            try:
                stat = path.stat()
            except OSError:
                continue  # removed while we looked; the next poll sees the new state
            entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


class FileProvider:
    """Feeds a :class:`Store` from a ClusterSet directory and keeps it in step with the files."""

    def __init__(self, root: Path, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.errors: dict[str, str] = {}
        self.loads = 0
        self.properties, initial = self._read_all()
        self._initial: dict[str, list[AnyObject]] | None = initial
        self._fingerprints = {c.name: _fingerprint(root / c.name) for c in self.properties.clusters}

    def _read_all(self) -> tuple[ClusterSetProperties, dict[str, list[AnyObject]]]:
        """The first read must succeed: there is no last good state yet, so errors go to the caller."""
        return read_clusterset_dir(self.root)

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

    def poll(self, store: Store) -> list[str]:
        """Re-read every cluster directory whose files changed; returns the clusters that were re-read."""
        reread = []
        for cluster in self.clusters:
            directory = self.root / cluster
            fingerprint = _fingerprint(directory)
            if fingerprint == self._fingerprints.get(cluster):
                continue
            self._fingerprints[cluster] = fingerprint
            reread.append(cluster)
            try:
                objects = read_cluster_dir(directory)
            except (ManifestError, OSError) as error:
                if self.errors.get(cluster) != str(error):
                    log.error("cluster %s: %s; keeping the last good configuration until this is fixed",
                              cluster, error, extra={"cluster": cluster})
                self.errors[cluster] = str(error)
                continue
            if self.errors.pop(cluster, None) is not None:
                log.info("cluster %s: manifests are valid again", cluster, extra={"cluster": cluster})
            log.info("cluster %s: re-read %d objects from %s", cluster, len(objects), directory,
                     extra={"cluster": cluster})
            self._apply(store, cluster, objects)
        return reread

    async def run(self, store: Store) -> None:
        """Poll forever. File reads are small and fast, so they run on the loop."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.poll(store)
            except Exception:  # a provider bug must not take the controller down
                log.exception("polling %s failed", self.root)
