"""The runner's watch loop against a fake API: binding, relisting after 410, leaving other nodes' pods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from tests.e2e.testbed.podrunner.kubeapi import Expired, KubeApi
from tests.e2e.testbed.podrunner.netns import AddressPool
from tests.e2e.testbed.podrunner.node import NodeAgent
from tests.e2e.testbed.podrunner.pod import Settings
from tests.e2e.testbed.podrunner.runner import Runner


def _pod(name: str, node: str = "", version: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "resourceVersion": version},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Pending"}}


class FakeApi:
    """Lists and watches from a script: each watch yields its events, then ends or raises."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[dict[str, Any]] | type[Exception]]):
        self.lists = lists
        self.watches = watches
        self.listed = 0
        self.watched_from: list[str] = []
        self.posts: list[tuple[str, Any]] = []

    async def get(self, path: str, **params: str) -> Any:
        items = self.lists[min(self.listed, len(self.lists) - 1)]
        self.listed += 1
        return {"metadata": {"resourceVersion": str(10 * self.listed)}, "items": items}

    async def post(self, path: str, body: Any) -> Any:
        self.posts.append((path, body))
        return {}

    async def watch(self, path: str, resource_version: str,
                    timeout_seconds: int = 300) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            await asyncio.Event().wait()
        script = self.watches.pop(0)
        if isinstance(script, type):
            raise script(path)
        for event in script:
            yield event


def _runner(api: FakeApi, tmp_path: Path) -> Runner:
    settings = Settings(api=cast(KubeApi, api), node="east-node", cluster="east", host_ip="198.18.0.1", bridge="br",
                        prefixlen=20, pool=AddressPool("198.18.1.128", "198.18.1.130"), state_dir=tmp_path,
                        images=[], owner=1, root_ca=b"", api_host="127.0.0.1", api_port=6443, allocatable={},
                        probe_session=cast(Any, None))
    return Runner(settings, cast(NodeAgent, None))


async def test_binds_unscheduled_pods_and_relists_after_expiry(tmp_path: Path) -> None:
    api = FakeApi(
        lists=[[_pod("a"), _pod("elsewhere", node="west-node")], [_pod("c")]],
        watches=[[{"type": "ADDED", "object": _pod("b", version="11")},
                  {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}],
                 [{"type": "MODIFIED", "object": _pod("elsewhere", node="west-node", version="13")}],
                 Expired])
    runner = _runner(api, tmp_path)
    task = asyncio.create_task(runner.watch())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if api.listed >= 2 and len(api.posts) >= 3:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    bound = sorted(path.split("/")[-2] for path, _ in api.posts)
    assert bound == ["a", "b", "c"]
    assert all(body["target"] == {"apiVersion": "v1", "kind": "Node", "name": "east-node"} for _, body in api.posts)
    # A watch that ends resumes from the last version seen (the bookmark's); a 410 lists again.
    assert api.watched_from[:3] == ["10", "12", "13"]
    assert api.listed == 2
    assert runner.workers == {}
