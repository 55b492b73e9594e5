"""``mcgw standalone`` end to end: files in, real Envoys on loopback serving them, edits applied live,
a broken file reported without changing anything, and every Envoy stopped on the way out."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mcgw.app.demo import QUICKSTART, Answer, _request, demo_backends
from mcgw.app.echo import make_app
from mcgw.app.standalone import Standalone, StandaloneOptions


@pytest.fixture
async def quickstart(tmp_path: Path) -> AsyncIterator[Path]:
    root = tmp_path / "clusters"
    shutil.copytree(QUICKSTART, root)
    runners = []
    for backend in demo_backends(root):
        runner = web.AppRunner(make_app(backend.cluster, backend.namespace, backend.pod), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, backend.address, backend.port).start()
        runners.append(runner)
    yield root
    for runner in runners:
        await runner.cleanup()


def _status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def _until(predicate_url: str, headers: dict[str, str], want: str, within: float = 15.0) -> float:
    started = time.monotonic()
    answer: Answer | None = None
    while time.monotonic() - started < within:
        answer = await asyncio.to_thread(_request, predicate_url, headers)
        if answer.pod.startswith(want + "-"):
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{predicate_url} never answered from {want}; last answer {answer}")


async def test_standalone_serves_files_applies_edits_and_keeps_state_on_a_broken_file(quickstart: Path) -> None:
    options = StandaloneOptions(quickstart, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        assert standalone.fleet is not None
        envoys = {cluster: m for (cluster, _), m in standalone.fleet.envoys.items()}
        assert sorted(envoys) == ["central", "east", "west"]
        assert len({m.address for m in envoys.values()}) == 3
        east = f"http://{envoys['east'].address}:8080/store"
        v2 = await asyncio.to_thread(_request, east, {"x-version": "v2"})
        assert (v2.status, v2.cluster, v2.served_by) == (200, "east", "store-v2")

        status = await asyncio.to_thread(_status, standalone.admin_port)
        gateway = status["clusters"]["east"]["objects"]["Gateway"]["infra/public"]["status"]
        assert [a["value"] for a in gateway["addresses"]] == [envoys["east"].address]

        # An edit: the header now selects v1. It reaches the Envoy without a restart.
        shop = quickstart / "east" / "shop.yaml"
        good = shop.read_text().replace("backendRefs: [{name: store-v2, port: 80}]",
                                        "backendRefs: [{name: store, port: 80}]")
        shop.write_text(good)
        seconds = await _until(east, {"x-version": "v2"}, "store")
        print(f"\nfile edit applied through Envoy in {seconds * 1000:.0f} ms")

        # A broken file: reported on /api/status, and the gateways keep serving the last good config.
        shop.write_text(good + "\n---\nkind: HTTPRoute\nmetadata: {name: broken, namespace: shop}\nspec: {rules: 7}\n")
        for _ in range(100):
            errors = (await asyncio.to_thread(_status, standalone.admin_port)).get("fileErrors", {})
            if "east" in errors:
                break
            await asyncio.sleep(0.05)
        assert "shop.yaml document" in errors["east"]
        assert "HTTPRoute 'broken'" in errors["east"]
        assert "rules" in errors["east"]
        for _ in range(10):
            answer = await asyncio.to_thread(_request, east, {"x-version": "v2"})
            assert (answer.status, answer.cluster) == (200, "east")
            assert answer.pod.startswith("store-")
        other = await asyncio.to_thread(_request, f"http://{envoys['west'].address}:8080/store", {"x-version": "v2"})
        assert (other.cluster, other.served_by) == ("west", "store-v2")
        processes = [m.process.popen for m in envoys.values()]
    assert all(p.poll() is not None for p in processes), "every Envoy stops with standalone mode"


async def test_standalone_keeps_serving_through_an_emptied_file_a_missing_directory_and_an_unknown_kind(
        quickstart: Path) -> None:
    options = StandaloneOptions(quickstart, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        assert standalone.fleet is not None
        envoys = {cluster: m for (cluster, _), m in standalone.fleet.envoys.items()}
        east = f"http://{envoys['east'].address}:8080/store"

        async def served_from_east() -> None:
            answer = await asyncio.to_thread(_request, east, {"x-version": "v2"})
            assert (answer.status, answer.cluster) == (200, "east")
            assert answer.pod.startswith("store-v2-"), "the header rule still routes to v2"

        # An editor's truncate-then-write: empty for one second, then the same content again.
        shop = quickstart / "east" / "shop.yaml"
        good = shop.read_text()
        shop.write_text("")
        for _ in range(10):
            await served_from_east()
            await asyncio.sleep(0.1)
        shop.write_text(good)

        # The cluster directory moved away for a while: reported, and nothing stops serving.
        aside = quickstart.parent / "east-aside"
        (quickstart / "east").rename(aside)
        errors: dict[str, str] = {}
        for _ in range(100):
            errors = (await asyncio.to_thread(_status, standalone.admin_port)).get("fileErrors", {})
            if "east" in errors:
                break
            await asyncio.sleep(0.05)
        assert "the cluster directory is missing" in errors["east"]
        await asyncio.sleep(standalone.provider.deletion_delay + 0.5)
        await served_from_east()
        aside.rename(quickstart / "east")

        # A Deployment beside the routes is skipped and reported; the edit in the same file still applies.
        shop.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: store, namespace: shop}\n---\n"
                        + good.replace("backendRefs: [{name: store-v2, port: 80}]",
                                       "backendRefs: [{name: store, port: 80}]"))
        pod = ""
        for _ in range(150):
            pod = (await asyncio.to_thread(_request, east, {"x-version": "v2"})).pod
            if not pod.startswith("store-v2-"):
                break
            await asyncio.sleep(0.1)
        assert pod.startswith("store-"), pod
        assert not pod.startswith("store-v2-"), "the edit beside the skipped Deployment never reached the Envoy"
        skipped = (await asyncio.to_thread(_status, standalone.admin_port))["skippedDocuments"]
        assert skipped["east"] == [f"{shop} document 1: unsupported kind 'Deployment', skipped"]
