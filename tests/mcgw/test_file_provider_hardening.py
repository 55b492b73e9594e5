"""The file provider against hostile, broken and vanishing files: what the store keeps, what
``errors`` (``fileErrors`` on /api/status) says, and that ``/healthz`` keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.file_provider import CASES, Case, HealthzProbe, anchor_bomb, fetch_status, route_manifest, run_case
from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.objects.model import SUPPORTED_KINDS, ManifestError
from mcgw.providers.files import manifests
from mcgw.providers.files.manifests import FileLimits, read_cluster_dir
from mcgw.providers.files.provider import FileProvider
from mcgw.store import Store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "quickstart"
ROUTE = ("HTTPRoute", "shop", "store")
SERVICE = ("Service", "shop", "extra")
EXTRA_SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop}\n"
KEY_LINE = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "clusters")
    return tmp_path / "clusters"


def _provider(root: Path, **options: object) -> tuple[FileProvider, Store, Clock]:
    clock = Clock()
    provider = FileProvider(root, clock=clock, **options)  # type: ignore[arg-type]
    store = Store(provider.clusters, SUPPORTED_KINDS)
    provider.fill(store)
    return provider, store, clock


def test_the_c_loader_is_used_where_pyyaml_has_it() -> None:
    import yaml

    assert manifests._FAST_LOADER is getattr(yaml, "CSafeLoader", None)


def test_a_file_over_the_size_limit_is_refused_naming_it_and_its_size(root: Path) -> None:
    provider, store, _ = _provider(root, limits=FileLimits(max_bytes=4096))
    shop = root / "east" / "shop.yaml"
    before = store["east"].get(ROUTE)
    shop.write_text(shop.read_text() + "#" * 5000 + "\n")
    provider.poll(store)
    assert store["east"].get(ROUTE) is before
    assert f"{shop}: " in provider.errors["east"]
    assert "bytes, more than the 4,096-byte limit" in provider.errors["east"]
    assert "last good objects are kept" in provider.errors["east"]


def test_a_yaml_bomb_is_refused_before_it_is_built(root: Path) -> None:
    provider, store, _ = _provider(root)
    bomb = root / "east" / "bomb.yaml"
    bomb.write_text(anchor_bomb())
    assert bomb.stat().st_size < 1024
    provider.poll(store)
    assert f"{bomb}: document 1: YAML aliases expand to more than 1,000,000 extra nodes" in provider.errors["east"]
    assert store["east"].get(ROUTE) is not None
    (root / "west" / "loop.yaml").write_text("&a [*a]\n")
    provider.poll(store)
    assert "a YAML alias inside the node it names" in provider.errors["west"]


def test_small_aliases_are_still_allowed(root: Path) -> None:
    provider, store, _ = _provider(root)
    (root / "east" / "alias.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: &meta {name: extra, "
        "namespace: shop}}\n- {apiVersion: v1, kind: Service, metadata: {<<: *meta, name: extra2}}\n")
    provider.poll(store)
    assert "east" not in provider.errors
    assert store["east"].get(("Service", "shop", "extra2")) is not None


def test_invalid_utf8_names_the_file_and_byte_offset_while_running(root: Path) -> None:
    provider, store, _ = _provider(root)
    bad = root / "east" / "bad.yaml"
    bad.write_bytes(b"apiVersion: v1\nkind: Service\nmetadata: {name: \xff\xfe, namespace: shop}\n")
    (root / "east" / "extra.yaml").write_text(EXTRA_SERVICE)
    provider.poll(store)
    assert f"{bad}: not valid UTF-8 at byte offset 46 (line 3)" in provider.errors["east"]
    assert store["east"].get(SERVICE) is not None, "the cluster's other files still load"


def test_invalid_utf8_at_start_and_in_translate_names_the_file(root: Path) -> None:
    bad = root / "west" / "bad.yaml"
    bad.write_bytes(b"kind: Service\n\x80\n")
    with pytest.raises(ManifestError, match=r"west/bad.yaml: not valid UTF-8 at byte offset 14 \(line 2\)"):
        FileProvider(root)
    result = subprocess.run([sys.executable, "-m", "mcgw", "translate", "-f", str(root)], capture_output=True,
                            text=True, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}: not valid UTF-8 at byte offset 14" in result.stderr


def test_out_of_memory_names_the_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider, store, _ = _provider(root)

    def exhausted(*_: object) -> object:
        raise MemoryError

    monkeypatch.setattr(manifests, "parse_object", exhausted)
    shop = root / "east" / "shop.yaml"
    shop.write_text(shop.read_text() + "\n")
    provider.poll(store)
    assert f"{shop}: out of memory while reading; refused" in provider.errors["east"]
    assert store["east"].get(ROUTE) is not None


def test_an_unknown_kind_is_skipped_and_reported_while_running(root: Path) -> None:
    provider, store, _ = _provider(root)
    mixed = root / "east" / "mixed.yaml"
    mixed.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n" + EXTRA_SERVICE)
    provider.poll(store)
    assert provider.skipped["east"] == (f"{mixed} document 1: unsupported kind 'Deployment', skipped",)
    assert "east" not in provider.errors  # a kind mcgw does not read is not an error in the file
    assert store["east"].get(SERVICE) is not None
    assert store["east"].get(ROUTE) is not None


def test_a_missing_cluster_directory_keeps_its_objects_and_is_reported(root: Path) -> None:
    provider, store, clock = _provider(root)
    moved = root.parent / "west-aside"
    (root / "west").rename(moved)
    for _ in range(3):
        provider.poll(store)
        clock.now += 5.0
    assert store["west"].get(ROUTE) is not None
    assert "the cluster directory is missing" in provider.errors["west"]
    moved.rename(root / "west")
    provider.poll(store)
    assert "west" not in provider.errors
    assert store["west"].get(ROUTE) is not None


def test_the_whole_directory_deleted_keeps_every_cluster(root: Path) -> None:
    provider, store, clock = _provider(root)
    shutil.rmtree(root)
    provider.poll(store)
    clock.now += 10.0
    provider.poll(store)
    assert sorted(provider.errors) == ["central", "east", "west"]
    assert all(store[cluster].get(ROUTE) is not None for cluster in ("central", "east", "west"))


def test_an_emptied_file_is_a_deletion_only_after_the_delay(root: Path) -> None:
    provider, store, clock = _provider(root)
    shop = root / "east" / "shop.yaml"
    good = shop.read_text()
    shop.write_text("")
    provider.poll(store)
    clock.now += 1.0
    provider.poll(store)
    assert store["east"].get(ROUTE) is not None, "empty for one second: kept"
    shop.write_text(good.replace("weight: 80", "weight: 70"))
    clock.now += 5.0
    provider.poll(store)
    route = store["east"].get(ROUTE)
    assert route is not None
    assert route.spec.rules[2].backend_refs[0].weight == 70

    shop.write_text("# nothing here any more\n")
    provider.poll(store)
    clock.now += provider.deletion_delay
    provider.poll(store)
    assert store["east"].get(ROUTE) is None
    assert "east" not in provider.errors


def test_a_file_removed_and_written_back_is_never_deleted(root: Path) -> None:
    provider, store, clock = _provider(root)
    shop = root / "east" / "shop.yaml"
    good = shop.read_text()
    shop.unlink()
    provider.poll(store)
    clock.now += 1.5
    provider.poll(store)
    assert store["east"].get(ROUTE) is not None
    shop.write_text(good)
    provider.poll(store)
    clock.now += 5.0
    provider.poll(store)
    assert store["east"].get(ROUTE) is not None


@pytest.mark.parametrize("broken", [
    f"apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: infra}}\ndata:\n  tls.key: \"{KEY_LINE}\n",
    f"apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: infra}}\ndata:\n  tls.key: {KEY_LINE}: x\n",
    f"apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: infra}}\ndata:\n\ttls.key: {KEY_LINE}\n",
    f"apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: infra}}\ndata:\n  tls.key: [{KEY_LINE}\n",
])
def test_a_yaml_error_in_a_secret_quotes_no_key_material(root: Path, broken: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    provider, store, _ = _provider(root)
    secret = root / "east" / "secret.yaml"
    secret.write_text(broken)
    with caplog.at_level(logging.DEBUG):
        provider.poll(store)
    error = provider.errors["east"]
    assert f"{secret}: not valid YAML: " in error
    assert "line " in error
    assert "column " in error
    for fragment in (KEY_LINE[:12], KEY_LINE[-12:], "LS0t"):
        assert fragment not in error
        assert fragment not in caplog.text
    with pytest.raises(ManifestError) as raised:
        read_cluster_dir(root / "east")
    assert "LS0t" not in str(raised.value)


async def test_healthz_keeps_answering_while_each_hostile_file_is_read(root: Path) -> None:
    """The benchmark's cases in-process, with a smaller route (250 x 64) to keep the test short."""
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0", with_envoy=False)
    smaller_route = Case(CASES[1].name.replace("1,000", "250"), CASES[1].file,
                         lambda path: path.write_text(route_manifest(rules=250)), CASES[1].done)
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        admin = f"http://127.0.0.1:{standalone.admin_port}"
        for case in (CASES[0], smaller_route, *CASES[2:]):
            result = await asyncio.to_thread(run_case, case, root / "east", admin, lambda: fetch_status(admin))
            print(f"\n{case.name}: /healthz worst {result['worst_ms']} ms, p99 {result['p99_ms']} ms, "
                  f"{result['probes']} probes, handled after {result['handled_after_s']} s")
            assert result["failures"] == 0, result["failure_examples"]
            assert result["probes"] >= 5
            assert result["handled_after_s"] is not None, f"{case.name} was never reported or loaded"
        assert not (root / "east" / "big.yaml").exists()
        errors = await asyncio.to_thread(fetch_status, admin)
        assert "route" not in errors.get("fileErrors", {}).get("east", "")


def test_the_probe_can_fail() -> None:
    with HealthzProbe("http://127.0.0.1:9/healthz", timeout=0.5) as probe:
        while not probe.latencies:
            pass
    assert probe.failures


def test_a_control_character_is_reported_by_position(root: Path) -> None:
    provider, store, _ = _provider(root)
    bad = root / "east" / "control.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: \x01x, namespace: shop}\n")
    provider.poll(store)
    assert provider.errors["east"] == f"{bad}: not valid YAML: unacceptable character #x0001 at character 46"


def test_an_unsupported_kind_that_is_not_a_name_is_shown_by_type_only(root: Path) -> None:
    provider, store, _ = _provider(root)
    odd = root / "east" / "odd.yaml"
    odd.write_text(f"kind: {{tls.key: {KEY_LINE}}}\nmetadata: {{name: x}}\n")
    provider.poll(store)
    assert provider.skipped["east"] == (f"{odd} document 1: unsupported kind (a dict value), skipped",)


def test_a_file_of_too_many_nodes_is_refused_before_they_are_built(root: Path) -> None:
    provider, store, _ = _provider(root, limits=FileLimits(max_nodes=2000))
    listed = root / "east" / "many.yaml"
    listed.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop}\nx: ["
                      + "a," * 3000 + "a]\n")
    provider.poll(store)
    assert provider.errors["east"] == f"{listed}: more than 2,000 YAML nodes in one file; refused"
    listed.write_text(EXTRA_SERVICE + "x: [" + "a," * 100 + "a]\n")
    provider.poll(store)
    assert "east" not in provider.errors
    assert store["east"].get(SERVICE) is not None


def test_fields_set_to_null_are_pruned_at_start_and_while_running(root: Path) -> None:
    nulls = root / "east" / "nulls.yaml"
    nulls.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop, labels: null}\n"
                     "spec: {ports: [{port: 80, name: null}]}\n")
    provider, store, _ = _provider(root)
    assert store["east"].get(SERVICE) is not None
    shop = root / "east" / "shop.yaml"
    shop.write_text(shop.read_text().replace("parentRefs: [{name: public, namespace: infra}]",
                                             "parentRefs: [{name: public, namespace: infra, sectionName: null}]\n"
                                             "  hostnames: null"))
    provider.poll(store)
    assert "east" not in provider.errors
    route = store["east"].get(ROUTE)
    assert route is not None
    assert route.spec.parent_refs[0].section_name is None  # type: ignore[union-attr]


def test_a_bad_object_is_rejected_alone_while_running(root: Path) -> None:
    provider, store, _ = _provider(root)
    mixed = root / "east" / "mixed.yaml"
    mixed.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                     "metadata: {name: bad, namespace: shop}\n"
                     "spec: {rules: [{matches: [{path: {type: Prefix, value: /}}]}]}\n---\n" + EXTRA_SERVICE)
    provider.poll(store)
    error = provider.errors["east"]
    assert f"{mixed} document 1: HTTPRoute 'bad': spec.rules.0.matches.0.path.type" in error
    assert error.endswith("it is not served until it is fixed")
    assert store["east"].get(SERVICE) is not None  # the file's other object is served
    assert store["east"].get(("HTTPRoute", "shop", "bad")) is None
    assert store["east"].get(ROUTE) is not None


def test_a_bad_edit_keeps_the_objects_last_good_version(root: Path) -> None:
    provider, store, _ = _provider(root)
    before = store["east"].get(ROUTE)
    shop = root / "east" / "shop.yaml"
    text = shop.read_text()
    # A number where a string belongs, in the route; the Services of the same file change meanwhile.
    shop.write_text(text.replace("value: store-v2}]}", "value: 2}]}").replace("{name: store-v2, namespace: shop}",
                                                                              "{name: store-v2, namespace: shop, "
                                                                              "labels: {edited: 'yes'}}"))
    provider.poll(store)
    error = provider.errors["east"]
    assert f"{shop} document" in error
    assert "responseHeaderModifier.set.0.value" in error
    assert error.endswith("its last good version is kept until it is fixed")
    assert store["east"].get(ROUTE) is before
    service = store["east"].get(("Service", "shop", "store-v2"))
    assert service is not None
    assert service.metadata.labels == {"edited": "yes"}
    shop.write_text(text)
    provider.poll(store)
    assert "east" not in provider.errors


def test_a_bad_object_at_start_is_rejected_alone(root: Path) -> None:
    shop = root / "east" / "shop.yaml"
    shop.write_text(shop.read_text().replace("type: PathPrefix, value: /failover", "type: Prefix, value: /failover"))
    provider, store, _ = _provider(root)
    error = provider.errors["east"]
    assert re.search(r"shop.yaml document \d+: HTTPRoute 'store': spec.rules.1.matches.0.path.type", error)
    assert error.endswith("it is not served until it is fixed")
    assert store["east"].get(ROUTE) is None
    assert store["east"].get(("Service", "shop", "store-v2")) is not None  # the file's other objects are served
    assert "west" not in provider.errors
    with pytest.raises(ManifestError, match=r"shop.yaml document \d+: HTTPRoute 'store': spec.rules.1.matches.0"):
        read_cluster_dir(root / "east")  # fixtures and the demo read strictly
