"""The file provider: edits reach the store, a broken file keeps the last good state and says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mcgw.app.config import ConfigError
from mcgw.objects.model import SUPPORTED_KINDS, ManifestError
from mcgw.providers.files.provider import FileProvider
from mcgw.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "clusters")
    return tmp_path / "clusters"


def _provider(root: Path) -> tuple[FileProvider, Store]:
    provider = FileProvider(root)
    store = Store(provider.clusters, SUPPORTED_KINDS)
    provider.fill(store)
    return provider, store


def test_initial_read_fills_every_cluster(root: Path) -> None:
    provider, store = _provider(root)
    assert provider.clusters == ["east", "west", "central"]
    assert store.all_reachable_synced()
    assert store["west"].get(("HTTPRoute", "shop", "store")) is not None


def test_an_edit_is_applied_on_the_next_poll(root: Path) -> None:
    provider, store = _provider(root)
    revision, west_revision = store["east"].revision, store["west"].revision
    shop = root / "east" / "shop.yaml"
    shop.write_text(shop.read_text().replace("weight: 80", "weight: 70"))
    assert provider.poll(store) == ["east"]
    route = store["east"].get(("HTTPRoute", "shop", "store"))
    assert route is not None
    assert route.spec.rules[2].backend_refs[0].weight == 70
    assert store["east"].revision > revision
    assert store["west"].revision == west_revision
    assert provider.poll(store) == []  # nothing changed since


def test_a_broken_file_keeps_the_last_good_state_and_is_reported(root: Path) -> None:
    provider, store = _provider(root)
    before = store["east"].objects()
    (root / "east" / "shop.yaml").write_text("kind: HTTPRoute\nmetadata: {name: x, namespace: shop}\nspec: [oops\n")
    provider.poll(store)
    assert store["east"].objects() is before
    assert "shop.yaml" in provider.errors["east"]
    assert "not valid YAML" in provider.errors["east"]

    (root / "east" / "extra.yaml").unlink(missing_ok=True)
    (root / "east" / "shop.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: only, namespace: shop}\n")
    provider.poll(store)
    assert "east" not in provider.errors
    assert store["east"].get(("Service", "shop", "only")) is not None
    assert store["east"].get(("HTTPRoute", "shop", "store")) is None  # the file no longer has it


def test_a_file_deleted_removes_its_objects(root: Path) -> None:
    now = [0.0]
    provider = FileProvider(root, clock=lambda: now[0])
    store = Store(provider.clusters, SUPPORTED_KINDS)
    provider.fill(store)
    (root / "central" / "shop.yaml").unlink()
    provider.poll(store)  # gone for the first time: kept until it has stayed gone for deletion_delay
    now[0] += provider.deletion_delay
    provider.poll(store)
    assert store["central"].get(("HTTPRoute", "shop", "store")) is None
    assert store["central"].get(("Gateway", "infra", "public")) is not None


def test_a_kind_mcgw_does_not_read_at_start_is_skipped_and_listed(root: Path) -> None:
    rpc = root / "west" / "rpc.yaml"
    rpc.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: x}\n")
    provider, store = _provider(root)
    assert provider.skipped["west"] == (
        f"{rpc} document 1: 'ListenerSet' of gateway.networking.k8s.io is not served by mcgw, skipped",)
    assert store["west"].get(("Gateway", "infra", "public")) is not None  # the rest is served


def test_a_bad_directory_at_start_is_a_clear_error(root: Path) -> None:
    (root / "west" / "gateway.yaml").write_text("kind: [Gateway\n")
    with pytest.raises(ManifestError, match=r"west/gateway.yaml: not valid YAML"):
        FileProvider(root)
    shutil.rmtree(root / "west")
    with pytest.raises(ConfigError, match="clusters without a directory"):
        FileProvider(root)
