"""compute_mcs: ServiceExports across the ClusterSet → export conditions, ServiceImports, imported slices, and
the view the failover translation reads (KEP-1645 conflict rules, lost clusters, no import loops)."""

from __future__ import annotations

from typing import Any

import pytest

from mcgw.ir.types import EndpointIR
from mcgw.objects.model import AnyObject, parse_object
from mcgw.semantics.mcs import ImportPort, McsCache, McsResult, SourceEndpoints, compute_mcs
from mcgw.semantics.mcs.names import slice_name
from mcgw.store import ClusterHealth

MCS = "multicluster.x-k8s.io/v1beta1"
NOW = 1_800_000_000.0


def namespace(name: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str = "cart", ports: list[dict[str, Any]] | None = None, ns: str = "shop",
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": ports if ports is not None else [{"name": "http", "port": 80}], **spec}}


def export(name: str = "cart", created: str = "2026-01-01T00:00:00Z", ns: str = "shop", generation: int = 1,
           **spec: Any) -> dict[str, Any]:
    return {"apiVersion": MCS, "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "generation": generation},
            "spec": spec}


def endpoint_slice(name: str, service_name: str = "cart", endpoints: list[dict[str, Any]] | None = None,
                   ports: list[dict[str, Any]] | None = None, ns: str = "shop",
                   labels: dict[str, str] | None = None, address_type: str = "IPv4") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": labels if labels is not None else {"kubernetes.io/service-name": service_name}},
            "addressType": address_type,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080}],
            "endpoints": endpoints if endpoints is not None else []}


def ready(address: str, **extra: Any) -> dict[str, Any]:
    return {"addresses": [address], "conditions": {"ready": True, "serving": True, "terminating": False}, **extra}


def draining(address: str) -> dict[str, Any]:
    return {"addresses": [address], "conditions": {"ready": False, "serving": True, "terminating": True}}


def not_ready(address: str) -> dict[str, Any]:
    return {"addresses": [address], "conditions": {"ready": False, "serving": False, "terminating": False}}


def parsed(clusters: dict[str, list[dict[str, Any]]]) -> dict[str, list[AnyObject]]:
    return {name: [parse_object(item, f"{name} test") for item in items] for name, items in clusters.items()}


def healthy(*names: str) -> dict[str, ClusterHealth]:
    return {name: ClusterHealth(name, True, True, "", 0.0) for name in names}


def compute(clusters: dict[str, list[dict[str, Any]]], health: dict[str, ClusterHealth] | None = None,
            now: float = NOW, ttl: float = 300.0) -> McsResult:
    return compute_mcs(parsed(clusters), health if health is not None else healthy(*clusters), now, ttl)


def conditions(result: McsResult, cluster: str, key: tuple[str, str] = ("shop", "cart")) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result.clusters[cluster].exports[key]["conditions"]}


def exported_by_east_and_west() -> dict[str, list[dict[str, Any]]]:
    return {
        "east": [namespace(), service(), export(created="2026-01-01T00:00:00Z"),
                 endpoint_slice("cart-abc", endpoints=[ready("10.0.0.2"), ready("10.0.0.1"), draining("10.0.0.3"),
                                                      not_ready("10.0.0.4")])],
        "west": [namespace(), service(), export(created="2026-01-02T00:00:00Z"),
                 endpoint_slice("cart-xyz", endpoints=[ready("10.1.0.1")])],
        "central": [namespace()],
    }


# -- export and import -------------------------------------------------------------------------------------

def test_a_service_exported_from_two_clusters_is_imported_into_every_cluster_with_the_namespace() -> None:
    result = compute(exported_by_east_and_west())

    for cluster in ("east", "west"):
        assert conditions(result, cluster) == {"Valid": ("True", "Valid"), "Ready": ("True", "Exported"),
                                               "Conflict": ("False", "NoConflicts")}
    for cluster in ("east", "west", "central"):
        imported = result.clusters[cluster].imports[("shop", "cart")]
        assert imported["spec"]["type"] == "ClusterSetIP"
        assert imported["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
        assert imported["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
        assert [(c["type"], c["status"], c["reason"]) for c in imported["status"]["conditions"]] == [
            ("Ready", "True", "Ready")]
        assert imported["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mcs-controller.mcgw.io"}
        assert sorted(result.clusters[cluster].slices) == [("shop", "cart.east"), ("shop", "cart.west")]
    assert result.clusters["central"].exports == {}


def test_the_view_groups_endpoints_by_source_cluster_with_health_from_the_slice_conditions() -> None:
    view = compute(exported_by_east_and_west()).view
    cart = view.services[("shop", "cart")]
    assert (cart.type, cart.ports, cart.clusters) == ("ClusterSetIP", (ImportPort("http", "TCP", 80),),
                                                      ("east", "west"))
    assert cart.endpoints_for(80) == (
        SourceEndpoints("east", (EndpointIR("10.0.0.1", 8080, "HEALTHY"), EndpointIR("10.0.0.2", 8080, "HEALTHY"),
                                 EndpointIR("10.0.0.3", 8080, "DRAINING")),
                        # listed, not ready: kept apart, for a gradual spillover to count as capacity lost
                        unready=(EndpointIR("10.0.0.4", 8080, "UNHEALTHY"),)),
        SourceEndpoints("west", (EndpointIR("10.1.0.1", 8080, "HEALTHY"),)),
    )
    assert cart.endpoints_for(81) == ()
    assert view.imports_for(["shop"]) == {("shop", "cart"): cart}
    assert view.imports_for(["other"]) == {}


def test_imported_slices_mirror_the_source_conditions_with_the_mcs_labels() -> None:
    result = compute(exported_by_east_and_west())
    east = result.clusters["central"].slices[("shop", "cart.east")]
    assert east["metadata"]["labels"] == {"multicluster.kubernetes.io/service-name": "cart",
                                          "multicluster.kubernetes.io/source-cluster": "east",
                                          "endpointslice.kubernetes.io/managed-by": "mcs-controller.mcgw.io"}
    assert "kubernetes.io/service-name" not in east["metadata"]["labels"]
    assert east["addressType"] == "IPv4"
    assert east["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [(e["addresses"], e["conditions"]) for e in east["endpoints"]] == [
        (["10.0.0.2"], {"ready": True, "serving": True, "terminating": False}),
        (["10.0.0.1"], {"ready": True, "serving": True, "terminating": False}),
        (["10.0.0.3"], {"ready": False, "serving": True, "terminating": True}),
        (["10.0.0.4"], {"ready": False, "serving": False, "terminating": False}),
    ]
    # The same slices go to every importing cluster, the exporting ones included.
    assert result.clusters["east"].slices == result.clusters["west"].slices == result.clusters["central"].slices


def test_no_import_where_the_namespace_does_not_exist() -> None:
    clusters = exported_by_east_and_west()
    clusters["central"] = []
    result = compute(clusters)
    assert result.clusters["central"].imports == {}
    assert result.clusters["central"].slices == {}
    assert ("shop", "cart") in result.clusters["east"].imports


def test_importing_the_result_again_changes_nothing_so_imported_slices_never_feed_back() -> None:
    first = compute(exported_by_east_and_west())
    fed_back = exported_by_east_and_west()
    for cluster, desired in first.clusters.items():
        fed_back[cluster] += [*desired.imports.values(), *desired.slices.values()]
    again = compute(fed_back)
    assert again.view == first.view
    assert again.clusters == first.clusters


def test_slices_labelled_as_imported_by_another_controller_are_not_endpoints() -> None:
    clusters = exported_by_east_and_west()
    clusters["west"].append(endpoint_slice("cart-foreign", endpoints=[ready("10.9.9.9")], labels={
        "kubernetes.io/service-name": "cart", "multicluster.kubernetes.io/source-cluster": "elsewhere"}))
    sources = compute(clusters).view.services[("shop", "cart")].endpoints_for(80)
    assert [e.address for s in sources for e in s.endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.0.1"]


def test_a_source_without_endpoints_gets_no_slice_but_still_serves_the_port_in_the_view() -> None:
    clusters = exported_by_east_and_west()
    clusters["west"] = [namespace(), service(), export(created="2026-01-02T00:00:00Z")]
    result = compute(clusters)
    assert sorted(result.clusters["central"].slices) == [("shop", "cart.east")]
    assert [s.cluster for s in result.view.services[("shop", "cart")].endpoints_for(80)] == ["east", "west"]
    assert result.view.services[("shop", "cart")].endpoints_for(80)[1].endpoints == ()


# -- validity -----------------------------------------------------------------------------------------------

def test_an_export_without_its_service_is_not_valid_and_waits() -> None:
    result = compute({"east": [namespace(), export()]})
    assert conditions(result, "east") == {"Valid": ("False", "NoService"), "Ready": ("False", "Pending"),
                                          "Conflict": ("False", "NoConflicts")}
    assert result.clusters["east"].imports == {}
    assert result.view.services == {}


def test_an_externalname_service_cannot_be_exported() -> None:
    result = compute({"east": [namespace(), service(type="ExternalName", externalName="example.com"), export()]})
    assert conditions(result, "east") == {"Valid": ("False", "InvalidServiceType"), "Ready": ("False", "Failed"),
                                          "Conflict": ("False", "NoConflicts")}
    assert result.clusters["east"].imports == {}


def test_an_invalid_export_takes_no_part_in_conflicts() -> None:
    clusters = exported_by_east_and_west()
    clusters["west"] = [namespace(), service(type="ExternalName", ports=[{"name": "http", "port": 9999}]),
                        export(created="2025-01-01T00:00:00Z")]
    result = compute(clusters)
    assert conditions(result, "east")["Conflict"] == ("False", "NoConflicts")
    assert result.view.services[("shop", "cart")].clusters == ("east",)


def test_conditions_carry_the_export_generation() -> None:
    clusters = exported_by_east_and_west()
    clusters["east"][2] = export(generation=7)
    result = compute(clusters)
    assert {c["observedGeneration"] for c in result.clusters["east"].exports[("shop", "cart")]["conditions"]} == {7}


# -- conflicts ----------------------------------------------------------------------------------------------

def two_exports(east_service: dict[str, Any], west_service: dict[str, Any],
                east_export: dict[str, Any] | None = None, west_export: dict[str, Any] | None = None,
                ) -> dict[str, list[dict[str, Any]]]:
    return {
        "east": [namespace(), east_service, east_export or export(created="2026-01-01T00:00:00Z"),
                 endpoint_slice("cart-e", endpoints=[ready("10.0.0.1")], ports=[
                     {"name": p.get("name", ""), "port": 8000 + p["port"] % 1000, "protocol": p.get("protocol", "TCP")}
                     for p in east_service["spec"]["ports"]])],
        "west": [namespace(), west_service, west_export or export(created="2026-01-02T00:00:00Z"),
                 endpoint_slice("cart-w", endpoints=[ready("10.1.0.1")], ports=[
                     {"name": p.get("name", ""), "port": 8000 + p["port"] % 1000, "protocol": p.get("protocol", "TCP")}
                     for p in west_service["spec"]["ports"]])],
    }


def test_a_port_name_used_with_another_number_is_a_conflict_and_only_its_clusters_serve_it() -> None:
    result = compute(two_exports(service(ports=[{"name": "http", "port": 80}]),
                                 service(ports=[{"name": "http", "port": 81}])))
    for cluster in ("east", "west"):
        assert conditions(result, cluster)["Conflict"] == ("True", "PortConflict")
    cart = result.view.services[("shop", "cart")]
    assert cart.ports == (ImportPort("http", "TCP", 80),)
    assert [s.cluster for s in cart.endpoints_for(80)] == ["east"]
    assert cart.clusters == ("east", "west")  # west still exports the service, just not that port
    assert sorted(result.clusters["east"].slices) == [("shop", "cart.east")]


def test_a_port_number_used_with_another_protocol_is_a_conflict() -> None:
    result = compute(two_exports(service(ports=[{"name": "dns", "port": 53, "protocol": "TCP"}]),
                                 service(ports=[{"name": "dns-udp", "port": 53, "protocol": "UDP"}])))
    for cluster in ("east", "west"):
        assert conditions(result, cluster)["Conflict"] == ("True", "PortConflict")
    cart = result.view.services[("shop", "cart")]
    assert cart.ports == (ImportPort("dns", "TCP", 53),)
    assert [s.cluster for s in cart.endpoints_for(53)] == ["east"]


def test_a_port_name_used_with_another_protocol_is_a_conflict() -> None:
    result = compute(two_exports(service(ports=[{"name": "dns", "port": 53, "protocol": "TCP"}]),
                                 service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}])))
    assert conditions(result, "west")["Conflict"] == ("True", "PortConflict")
    assert [s.cluster for s in result.view.services[("shop", "cart")].endpoints_for(53)] == ["east"]


def test_one_service_may_use_a_number_with_two_protocols() -> None:
    dns = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    result = compute(two_exports(service(ports=dns), service(ports=dns)))
    assert conditions(result, "east")["Conflict"] == ("False", "NoConflicts")
    cart = result.view.services[("shop", "cart")]
    assert cart.ports == (ImportPort("dns", "UDP", 53), ImportPort("dns-tcp", "TCP", 53))
    # The view is keyed by number; the TCP port is the one a gateway can use.
    assert [e.port for s in cart.endpoints_for(53) for e in s.endpoints] == [8053, 8053]


def test_an_app_protocol_difference_is_a_port_conflict_but_both_clusters_serve_the_port() -> None:
    result = compute(two_exports(service(ports=[{"name": "http", "port": 80, "appProtocol": "http"}]),
                                 service(ports=[{"name": "http", "port": 80, "appProtocol": "kubernetes.io/h2c"}])))
    assert conditions(result, "west")["Conflict"] == ("True", "PortConflict")
    cart = result.view.services[("shop", "cart")]
    assert cart.ports == (ImportPort("http", "TCP", 80, "http"),)
    assert [s.cluster for s in cart.endpoints_for(80)] == ["east", "west"]


def test_ports_are_merged_into_a_union_by_name_then_protocol_and_port() -> None:
    result = compute(two_exports(service(ports=[{"name": "http", "port": 80}]),
                                 service(ports=[{"name": "web", "port": 80}, {"name": "metrics", "port": 9090}])))
    assert conditions(result, "east")["Conflict"] == ("False", "NoConflicts")
    cart = result.view.services[("shop", "cart")]
    assert cart.ports == (ImportPort("http", "TCP", 80), ImportPort("metrics", "TCP", 9090))
    assert [s.cluster for s in cart.endpoints_for(80)] == ["east", "west"]
    assert [s.cluster for s in cart.endpoints_for(9090)] == ["west"]
    # West's slice names the import's ports (its "web" is the import's "http"), with west's target ports.
    west = result.clusters["east"].slices[("shop", "cart.west")]
    assert west["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"},
                             {"name": "metrics", "port": 8090, "protocol": "TCP"}]
    assert result.clusters["east"].imports[("shop", "cart")]["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80}, {"name": "metrics", "protocol": "TCP", "port": 9090}]


@pytest.mark.parametrize(("east_extra", "west_extra", "reason"), [
    ({"clusterIP": "None"}, {}, "TypeConflict"),
    ({"sessionAffinity": "ClientIP"}, {"sessionAffinity": "None"}, "SessionAffinityConflict"),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
     {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 90}}},
     "SessionAffinityConfigConflict"),
    ({"internalTrafficPolicy": "Local"}, {"internalTrafficPolicy": "Cluster"}, "InternalTrafficPolicyConflict"),
    ({"trafficDistribution": "PreferClose"}, {}, "TrafficDistributionConflict"),
    ({"ipFamilies": ["IPv4"]}, {"ipFamilies": ["IPv6"]}, "IPFamilyConflict"),
])
def test_each_service_property_conflict_is_raised_on_every_export(east_extra: dict[str, Any],
                                                                  west_extra: dict[str, Any], reason: str) -> None:
    result = compute(two_exports(service(**east_extra), service(**west_extra)))
    for cluster in ("east", "west"):
        assert conditions(result, cluster)["Conflict"] == ("True", reason)


@pytest.mark.parametrize(("field", "reason"), [("exportedLabels", "LabelsConflict"),
                                               ("exportedAnnotations", "AnnotationsConflict")])
def test_exported_labels_and_annotations_must_agree(field: str, reason: str) -> None:
    result = compute(two_exports(service(), service(),
                                 export(created="2026-01-01T00:00:00Z", **{field: {"team": "a"}}),
                                 export(created="2026-01-02T00:00:00Z", **{field: {"team": "b"}})))
    for cluster in ("east", "west"):
        assert conditions(result, cluster)["Conflict"] == ("True", reason)
    metadata = result.clusters["west"].imports[("shop", "cart")]["metadata"]
    assert (metadata["labels"] if field == "exportedLabels" else metadata["annotations"])["team"] == "a"


def test_a_headless_services_ip_families_are_not_compared() -> None:
    result = compute(two_exports(service(clusterIP="None", ipFamilies=["IPv4", "IPv6"]),
                                 service(ipFamilies=["IPv4"])))
    assert conditions(result, "west")["Conflict"] == ("True", "TypeConflict")


def test_equivalent_defaults_are_not_conflicts() -> None:
    result = compute(two_exports(service(internalTrafficPolicy="Cluster", ipFamilies=["IPv4"]),
                                 service(sessionAffinity="None")))
    assert conditions(result, "west")["Conflict"] == ("False", "NoConflicts")


def test_several_conflicts_are_joined_in_the_reference_order_on_every_export() -> None:
    clusters = two_exports(service(ports=[{"name": "http", "port": 80}], clusterIP="None", sessionAffinity="ClientIP"),
                           service(ports=[{"name": "http", "port": 80, "protocol": "UDP"}]))
    clusters["central"] = [namespace(), service(ports=[{"name": "http", "port": 80}]),
                           export(created="2026-01-03T00:00:00Z")]
    result = compute(clusters)
    for cluster in ("east", "west", "central"):
        assert conditions(result, cluster)["Conflict"] == (
            "True", "PortConflict,TypeConflict,SessionAffinityConflict")
    message = next(c["message"] for c in result.clusters["central"].exports[("shop", "cart")]["conditions"]
                   if c["type"] == "Conflict")
    assert "west" in message
    assert "central" in message


def test_the_oldest_export_decides_the_type() -> None:
    older_west = two_exports(service(), service(clusterIP="None"),
                             export(created="2026-01-05T00:00:00Z"), export(created="2026-01-01T00:00:00Z"))
    result = compute(older_west)
    assert result.view.services[("shop", "cart")].type == "Headless"
    assert result.clusters["east"].imports[("shop", "cart")]["spec"]["type"] == "Headless"
    older_east = two_exports(service(), service(clusterIP="None"))
    assert compute(older_east).view.services[("shop", "cart")].type == "ClusterSetIP"


def test_equal_creation_times_are_decided_by_cluster_name() -> None:
    same = "2026-01-01T00:00:00Z"
    result = compute(two_exports(service(ports=[{"name": "http", "port": 80}]),
                                 service(ports=[{"name": "http", "port": 81}]),
                                 export(created=same), export(created=same)))
    assert result.view.services[("shop", "cart")].ports == (ImportPort("http", "TCP", 80),)  # east < west


def test_the_oldest_export_decides_the_imported_properties() -> None:
    spec = {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose", "ipFamilies": ["IPv4"]}
    result = compute(two_exports(service(**spec), service(),
                                 export(created="2026-01-01T00:00:00Z", exportedLabels={"tier": "web"},
                                        exportedAnnotations={"note": "x"})))
    imported = result.clusters["west"].imports[("shop", "cart")]
    assert imported["spec"] == {"type": "ClusterSetIP", "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
                                "sessionAffinity": "ClientIP",
                                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                                "internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose",
                                "ipFamilies": ["IPv4"]}
    assert imported["metadata"]["labels"] == {"tier": "web", "app.kubernetes.io/managed-by": "mcs-controller.mcgw.io"}
    assert imported["metadata"]["annotations"] == {"note": "x"}


def test_exported_labels_cannot_take_over_the_managed_by_label() -> None:
    result = compute(two_exports(service(), service(), export(exportedLabels={
        "app.kubernetes.io/managed-by": "someone"})))
    assert result.clusters["east"].imports[("shop", "cart")]["metadata"]["labels"][
        "app.kubernetes.io/managed-by"] == "mcs-controller.mcgw.io"


# -- headless ---------------------------------------------------------------------------------------------

def test_a_headless_service_is_imported_as_headless_with_hostnames() -> None:
    result = compute({
        "east": [namespace(), service(clusterIP="None"), export(),
                 endpoint_slice("cart-1", endpoints=[ready("10.0.0.1", hostname="cart-0", nodeName="node-1",
                                                           targetRef={"kind": "Pod", "name": "cart-0"})])],
        "west": [namespace()],
    })
    assert result.view.services[("shop", "cart")].type == "Headless"
    imported = result.clusters["west"].imports[("shop", "cart")]
    assert imported["spec"]["type"] == "Headless"
    endpoint = result.clusters["west"].slices[("shop", "cart.east")]["endpoints"][0]
    # The hostname makes <hostname>.<cluster>.<svc>.<ns>.svc.clusterset.local; nodeName and targetRef name
    # objects of another cluster and are not copied.
    assert endpoint == {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True,
                                                                  "terminating": False}, "hostname": "cart-0"}


# -- lost clusters --------------------------------------------------------------------------------------------

def lost_west(since: float) -> dict[str, ClusterHealth]:
    return {**healthy("east", "central"), "west": ClusterHealth("west", True, False, "connection refused", since)}


def test_a_lost_cluster_keeps_its_endpoints_within_the_ttl_and_says_so() -> None:
    since = NOW - 100
    result = compute(exported_by_east_and_west(), lost_west(since), ttl=300)
    cart = result.view.services[("shop", "cart")]
    assert cart.clusters == ("east", "west")
    west = cart.endpoints_for(80)[1]
    assert (west.cluster, west.lost_since, west.endpoints) == ("west", since, (EndpointIR("10.1.0.1", 8080,
                                                                                          "HEALTHY"),))
    assert cart.endpoints_for(80)[0].lost_since is None
    assert ("shop", "cart.west") in result.clusters["central"].slices
    ready_condition = result.clusters["central"].imports[("shop", "cart")]["status"]["conditions"][0]
    assert (ready_condition["status"], ready_condition["reason"]) == ("True", "SourceClusterLost")
    assert "west" in ready_condition["message"]
    assert result.next_deadline == since + 300
    assert [(lost.cluster, lost.withdrawn, lost.exports) for lost in result.lost] == [
        ("west", False, (("shop", "cart"),))]


def test_a_lost_cluster_is_withdrawn_when_the_ttl_runs_out() -> None:
    since = NOW - 300
    result = compute(exported_by_east_and_west(), lost_west(since), ttl=300)
    cart = result.view.services[("shop", "cart")]
    assert cart.clusters == ("east",)
    assert [s.cluster for s in cart.endpoints_for(80)] == ["east"]
    assert sorted(result.clusters["central"].slices) == [("shop", "cart.east")]
    imported = result.clusters["central"].imports[("shop", "cart")]
    assert imported["status"]["clusters"] == [{"cluster": "east"}]
    assert imported["status"]["conditions"][0]["reason"] == "SourceClusterLost"
    assert "withdrawn" in imported["status"]["conditions"][0]["message"]
    assert result.next_deadline is None
    assert [(lost.cluster, lost.withdrawn) for lost in result.lost] == [("west", True)]


def test_the_deadline_is_the_earliest_ttl_end_of_clusters_still_kept() -> None:
    health = {"east": ClusterHealth("east", True, False, "", NOW - 50),
              "west": ClusterHealth("west", True, False, "", NOW - 200), **healthy("central")}
    assert compute(exported_by_east_and_west(), health, ttl=300).next_deadline == NOW - 200 + 300


def test_a_lost_cluster_without_exports_sets_no_deadline() -> None:
    health = {**healthy("east", "west"), "central": ClusterHealth("central", True, False, "", NOW - 10)}
    result = compute(exported_by_east_and_west(), health)
    assert result.next_deadline is None
    assert [(lost.cluster, lost.exports) for lost in result.lost] == [("central", ())]


def test_an_import_whose_only_exporter_is_lost_past_the_ttl_stays_but_is_not_ready() -> None:
    clusters = exported_by_east_and_west()
    clusters["east"] = [namespace()]
    result = compute(clusters, lost_west(NOW - 1000), ttl=300)
    imported = result.clusters["east"].imports[("shop", "cart")]
    assert imported["status"]["clusters"] == []
    assert (imported["status"]["conditions"][0]["status"], imported["status"]["conditions"][0]["reason"]) == (
        "False", "SourceClusterLost")
    assert result.clusters["east"].slices == {}
    assert result.view.services[("shop", "cart")].endpoints_for(80) == ()


def test_a_withdrawn_cluster_no_longer_decides_the_ports() -> None:
    clusters = two_exports(service(ports=[{"name": "http", "port": 80}]), service(ports=[{"name": "http", "port": 81}]))
    health = {"east": ClusterHealth("east", True, False, "", NOW - 1000), **healthy("west")}
    result = compute(clusters, health, ttl=300)
    assert result.view.services[("shop", "cart")].ports == (ImportPort("http", "TCP", 81),)
    assert conditions(result, "west")["Conflict"] == ("False", "NoConflicts")
    assert conditions(result, "east")["Ready"] == ("False", "Pending")


# -- slices ---------------------------------------------------------------------------------------------------

def test_slice_names_are_stable_unambiguous_and_at_most_63_characters() -> None:
    assert slice_name("cart", "west") == "cart.west"
    assert slice_name("cart", "west", 2) == "cart.west.2"
    assert slice_name("a-b", "c") != slice_name("a", "b-c")
    long_one = slice_name("s" * 50, "cluster-with-a-long-name")
    assert len(long_one) == 63
    assert long_one == slice_name("s" * 50, "cluster-with-a-long-name")
    assert long_one != slice_name("s" * 50, "cluster-with-a-long-name-2")
    assert len(slice_name("s" * 63, "c" * 63, 3)) == 63


def test_more_than_1000_endpoints_are_split_into_several_slices() -> None:
    many = [ready(f"10.0.{i // 250}.{i % 250}") for i in range(1500)]
    result = compute({"east": [namespace(), service(), export(), endpoint_slice("cart-1", endpoints=many)]})
    slices = result.clusters["east"].slices
    assert sorted(slices) == [("shop", "cart.east"), ("shop", "cart.east.1")]
    assert [len(s["endpoints"]) for _, s in sorted(slices.items())] == [1000, 500]


def test_endpoints_listed_twice_by_the_source_are_imported_once() -> None:
    result = compute({"east": [namespace(), service(), export(),
                               endpoint_slice("cart-1", endpoints=[ready("10.0.0.1")]),
                               endpoint_slice("cart-2", endpoints=[ready("10.0.0.1"), ready("10.0.0.2")])]})
    assert [e["addresses"] for e in result.clusters["east"].slices[("shop", "cart.east")]["endpoints"]] == [
        ["10.0.0.1"], ["10.0.0.2"]]


def test_ipv6_endpoints_get_a_slice_of_their_own() -> None:
    result = compute({"east": [namespace(), service(), export(),
                               endpoint_slice("cart-4", endpoints=[ready("10.0.0.1")]),
                               endpoint_slice("cart-6", endpoints=[ready("fd00::1")], address_type="IPv6")]})
    slices = result.clusters["east"].slices
    assert [(name, s["addressType"]) for (_, name), s in sorted(slices.items())] == [
        ("cart.east", "IPv4"), ("cart.east.1", "IPv6")]


# -- the cache ------------------------------------------------------------------------------------------------

def test_a_cached_computation_equals_a_fresh_one_through_a_series_of_changes() -> None:
    states = [exported_by_east_and_west()]
    changed = exported_by_east_and_west()
    changed["west"][3] = endpoint_slice("cart-xyz", endpoints=[ready("10.1.0.9")])
    states.append(changed)
    more = copy_clusters(changed)
    more["east"] += [service("shop2"), export("shop2"), endpoint_slice("shop2-1", "shop2", [ready("10.0.9.1")])]
    states.append(more)
    fewer = copy_clusters(more)
    fewer["central"] = []
    states.append(fewer)
    cache = McsCache()
    known: dict[str, AnyObject] = {}  # an unchanged manifest is the very same object, as in the store

    def shared(item: dict[str, Any]) -> AnyObject:
        return known.setdefault(repr(item), parse_object(item, "test"))

    objects = [{name: [shared(item) for item in items] for name, items in state.items()} for state in states]
    health = [healthy("east", "west", "central"), lost_west(NOW - 10), lost_west(NOW - 1000), healthy("east", "west",
                                                                                                        "central")]
    for items in objects:
        for entry in health:
            assert compute_mcs(items, entry, NOW, 300, cache) == compute_mcs(items, entry, NOW, 300)


def test_an_endpoint_change_recomputes_only_its_service() -> None:
    clusters = exported_by_east_and_west()
    clusters["east"] += [service("other"), export("other"), endpoint_slice("other-1", "other", [ready("10.0.8.1")])]
    objects = parsed(clusters)
    cache = McsCache()
    first = compute_mcs(objects, healthy(*objects), NOW, cache=cache)
    west = list(objects["west"])
    west[3] = parse_object(endpoint_slice("cart-xyz", endpoints=[ready("10.1.0.7")]), "test")
    second = compute_mcs({**objects, "west": west}, healthy(*objects), NOW, cache=cache)
    assert second.clusters["east"].imports[("shop", "other")] is first.clusters["east"].imports[("shop", "other")]
    assert second.view.services[("shop", "cart")] != first.view.services[("shop", "cart")]


def copy_clusters(clusters: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {name: list(items) for name, items in clusters.items()}
