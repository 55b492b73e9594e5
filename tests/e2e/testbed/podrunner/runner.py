"""The runner's loop: watch every pod, bind the unscheduled ones to this node, run the ones bound here.

One list-then-watch of ``/api/v1/pods``; a watch that ends is resumed from the last resourceVersion, a
410 or any error relists (and pods gone meanwhile are stopped). Pods bound to other nodes are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from .kubeapi import ApiError, Expired, KubeApi
from .logs import LogSource
from .node import NodeAgent
from .pod import PodWorker, Settings
from .status import is_terminal

Json = dict[str, Any]
DEFAULT_SCHEDULER = "default-scheduler"


def wants_binding(pod: Json, scheduler: str = DEFAULT_SCHEDULER) -> bool:
    spec, meta = pod.get("spec", {}), pod.get("metadata", {})
    return (not spec.get("nodeName") and not meta.get("deletionTimestamp")
            and spec.get("schedulerName", DEFAULT_SCHEDULER) in ("", scheduler)
            and not is_terminal((pod.get("status") or {}).get("phase", "")))


class Runner:
    def __init__(self, settings: Settings, agent: NodeAgent, shutdown_grace: float = 5.0) -> None:
        self.s = settings
        self.api: KubeApi = settings.api
        self.agent = agent
        self.shutdown_grace = shutdown_grace
        self.workers: dict[str, PodWorker] = {}
        self._binding: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # The log server asks here.

    def find_log(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource | str:
        for worker in self.workers.values():
            if worker.namespace == namespace and worker.name == pod:
                return worker.log_source(container, previous)
        return f'pod "{pod}" in namespace "{namespace}" is not running on node {self.s.node}'

    # Pods.

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(self, pod: Json) -> None:
        meta = pod["metadata"]
        uid, namespace, name = meta["uid"], meta.get("namespace", "default"), meta["name"]
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.s.node}}
        try:
            await self.api.post(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body)
        except ApiError as error:
            if error.status not in (404, 409):
                print(f"podrunner: binding {namespace}/{name} failed: {error}", flush=True)
        except Exception as error:
            print(f"podrunner: binding {namespace}/{name} failed: {error}", flush=True)
        finally:
            self._binding.discard(uid)

    async def _delete_now(self, pod: Json) -> None:
        """A deleting pod bound here that nothing runs (for instance from before a restart): finish it."""
        meta = pod["metadata"]
        with contextlib.suppress(Exception):
            await self.api.delete(f"/api/v1/namespaces/{meta.get('namespace', 'default')}/pods/{meta['name']}",
                                  {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                   "preconditions": {"uid": meta["uid"]}})

    def seen(self, pod: Json) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        if wants_binding(pod):
            if uid not in self._binding:
                self._binding.add(uid)
                self._spawn(self._bind(pod))
            return
        if spec.get("nodeName") != self.s.node:
            return
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if meta.get("deletionTimestamp"):
            self._spawn(self._delete_now(pod))
            return
        if is_terminal((pod.get("status") or {}).get("phase", "")):
            return
        worker = PodWorker(self.s, pod)
        self.workers[uid] = worker
        worker.start().add_done_callback(lambda _task: self._forget(uid, worker))

    def _forget(self, uid: str, worker: PodWorker) -> None:
        if self.workers.get(uid) is worker:
            del self.workers[uid]

    def deleted(self, pod: Json) -> None:
        worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.vanished()

    def relisted(self, pods: list[Json]) -> None:
        present = {pod["metadata"]["uid"] for pod in pods}
        for uid, worker in list(self.workers.items()):
            if uid not in present:
                worker.vanished()
        for pod in pods:
            self.seen(pod)

    async def watch(self) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    listing = await self.api.get("/api/v1/pods")
                    version = listing["metadata"]["resourceVersion"]
                    self.relisted(listing.get("items", []))
                async for event in self.api.watch("/api/v1/pods", version):
                    pod = event["object"]
                    version = pod.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        self.deleted(pod)
                    else:
                        self.seen(pod)
            except Expired:
                version = None
            except asyncio.CancelledError:
                raise
            except Exception as error:
                print(f"podrunner: pod watch failed, relisting: {type(error).__name__}: {error}", flush=True)
                version = None
                await asyncio.sleep(1)

    async def run(self, stop: asyncio.Event, owner_pid: int | None = None) -> None:
        await self.agent.register()
        print(f"podrunner: node {self.s.node} registered, Ready", flush=True)
        loops = [asyncio.create_task(self.watch()), asyncio.create_task(self.agent.heartbeat())]
        if owner_pid:
            loops.append(asyncio.create_task(_watch_owner(owner_pid, stop)))
        try:
            await stop.wait()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop every pod's containers and remove their sandboxes; mark the node as no longer reporting."""
        await asyncio.gather(*(w.shutdown(self.shutdown_grace) for w in list(self.workers.values())),
                             return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.agent.post_status(False), 3)


async def _watch_owner(pid: int, stop: asyncio.Event) -> None:
    """The process that started the runner is gone (a killed test run): stop and clean up."""
    while True:
        await asyncio.sleep(1)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"podrunner: owner {pid} is gone, stopping", flush=True)
            stop.set()
            return
        except PermissionError:
            pass
