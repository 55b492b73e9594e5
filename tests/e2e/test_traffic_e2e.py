"""Who serves the traffic, seen from the gateways' load reports (LRS), during a real failover: ``mcgw run`` over
the three-cluster test bed, east's Gateway (a real Envoy on the host, reporting load to mcgw over its mTLS xDS
connection) routing /cart to the ServiceImport, 200 requests/s, east's backends killed, then restarted.

The reports must show the traffic move from east (priority 0) to west (priority 1) within 2 s of the kill, as
a failover event with those levels, and back after the restore; the metrics and ``mcgw status`` say the same;
and the dashboard, loaded in a real headless Chromium for the whole run, follows it without a reload.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from mcgw.app.operator import Style, render_status
from mcgw.app.run import Controller
from mcgw.support.netutil import free_port
from tests.browser import browser_page, require_chromium
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.faults import BackendKill
from tests.e2e.testbed.load import OpenLoopLoad, failures, until_served_by
from tests.e2e.xds_credentials import controller_with_east_envoy

GW, MCS = bed_objects.GW, bed_objects.MCS
ORDER = ["east", "west", "central"]
SHOP, INFRA = "shop-traffic", "infra-traffic"
SERVICE = f"{SHOP}/cart:80"
DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, list[EchoBackend]]
    controller: Controller
    url: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    backends = {name: [clusterset.start_echo(name, namespace=SHOP, pod=f"cart-{name}-{i}-lrs") for i in range(2)]
                for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(bed_objects.service, clusterset.clusters[name], SHOP, "cart", backends[name])
    directory = tmp_path_factory.mktemp("traffic")
    port, xds_port = free_port(), free_port()
    await asyncio.to_thread(bed_objects.http_gateway_to_import, clusterset.clusters["east"], port, SHOP, INFRA)
    config = bed_objects.run_config(directory / "mcgw-traffic.yaml", clusterset, ORDER, xds_port)
    try:
        async with controller_with_east_envoy(clusterset, config, xds_port, INFRA, directory) as controller:
            url = f"http://127.0.0.1:{port}/cart"
            load = OpenLoopLoad(url, 50)
            await asyncio.to_thread(load.start)
            try:
                await until_served_by(load, 0.0, "east", streak=50, within=60)
            finally:
                await asyncio.to_thread(load.stop)
            yield Bed(clusterset, backends, controller, url)
    finally:
        bed_objects.delete(clusterset.clusters["east"], f"/apis/{GW}/v1/namespaces/{SHOP}/httproutes/cart",
                           f"/apis/{GW}/v1/namespaces/{INFRA}/gateways/public")
        for name in ORDER:
            bed_objects.delete(clusterset.clusters[name], f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports/cart")


def _serving(controller: Controller) -> int | None:
    for traffic in controller.load.traffic.services(time.time()):
        if traffic.key.service == SERVICE and traffic.key.cluster == "east":
            return traffic.serving_priority
    return None


async def _until_serving(controller: Controller, priority: int, within: float) -> float:
    """Seconds until the load reports say ``priority`` serves."""
    started = time.monotonic()
    while _serving(controller) != priority:
        assert time.monotonic() - started < within, (
            f"the load reports never showed priority {priority} serving within {within:g} s "
            f"(serving: {_serving(controller)}; services: {controller.load.traffic.services(time.time())})")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_load_reports_show_the_failover_and_the_dashboard_follows_it_live(bed: Bed, tmp_path: Path) -> None:
    require_chromium()
    controller = bed.controller
    admin = f"http://127.0.0.1:{controller.admin_port}"
    shots = tmp_path
    load = OpenLoopLoad(bed.url, 200)
    await asyncio.to_thread(load.start)
    fault = BackendKill(bed.clusterset, bed.backends["east"])
    restored = False
    try:
        async with browser_page() as page:
            await page.goto(admin + "/")
            ladder = f"document.querySelector('.service[data-service=\"{SERVICE}\"]')"
            await _until_serving(controller, 0, 15)
            await page.until(f"{ladder}?.dataset.servingPriority === '0'", within=10)
            await page.evaluate("window.stayedOnThisPage = true")
            await page.screenshot(shots / "dashboard-before.png")
            events_before = len(controller.load.traffic.events)

            load.mark("fault")
            await asyncio.to_thread(fault.inject)
            moved_after = await _until_serving(controller, 1, 2.0)
            event = controller.load.traffic.events[-1]
            assert len(controller.load.traffic.events) == events_before + 1
            assert (event.key.service, event.from_priority, event.to_priority) == (SERVICE, 0, 1)
            assert (event.from_clusters, event.to_clusters) == (("east",), ("west",))
            assert event.share > 0.5
            await page.until(f"{ladder}?.dataset.servingPriority === '1'", within=5)
            await page.until("document.querySelector('#timeline li[data-to=\"1\"]') !== null", within=5)
            await page.until(f"Number({ladder}.querySelector('.level[data-priority=\"1\"]').dataset.share) > 0.9",
                             within=5)  # the next report: all of it on west
            await page.screenshot(shots / "dashboard-failover.png")
            served = await page.evaluate(f"{ladder}.querySelector('.served-by').textContent")
            assert served == "west (priority 1)"

            restore_at = load.mark("restore")
            await asyncio.to_thread(fault.restore)
            restored = True
            await until_served_by(load, restore_at, "east", streak=200)
            back_after = await _until_serving(controller, 0, 10)
            back = controller.load.traffic.events[-1]
            assert (back.from_priority, back.to_priority) == (1, 0)
            await page.until(f"{ladder}?.dataset.servingPriority === '0'", within=5)
            assert await page.evaluate("window.stayedOnThisPage") is True  # live, never reloaded
    finally:
        if not restored:
            await asyncio.to_thread(fault.restore)
        samples = await asyncio.to_thread(load.stop)
    print(f"\nload reports: serving level moved 0 → 1 {moved_after:.2f} s after the kill, 1 → 0 {back_after:.2f} s "
          f"after east answered again; {len(samples)} requests, {len(failures(samples))} failed")
    assert failures(samples) == []

    async with aiohttp.ClientSession() as session:
        async with session.get(admin + "/metrics") as response:
            metrics = await response.text()
        async with session.get(admin + "/api/status") as response:
            status = await response.json()
    labels = f'cluster="east",gateway="{INFRA}/public",priority="1",service="{SERVICE}",source_cluster="west"'
    assert f"mcgw_upstream_requests_total{{{labels}}}" in metrics
    assert f'mcgw_failovers_total{{cluster="east",gateway="{INFRA}/public",service="{SERVICE}"}}' in metrics
    table = render_status(status, Style(colour=False))
    assert any(line.startswith(tuple("0123456789")) and SERVICE in line and "1 (west)" in line
               for line in table.splitlines()), table
    if os.environ.get("MCGW_UPDATE_SCREENSHOTS"):  # docs/ shows this run's pages
        for name in ("dashboard-before.png", "dashboard-failover.png"):
            shutil.copy(shots / name, DOCS / name)
