"""Access logs: what a Gateway's parameters ask for (merged over its class's, refused with a reason), and
the access loggers every kind of Envoy listener gets from it, accepted by real Envoy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from mcgw import ir
from mcgw.ir.gateway import access_log
from mcgw.objects.model import EnvoyProxy, ManifestError, parse_object
from mcgw.runtime.pipeline import translate_cluster
from mcgw.semantics.gateway.parameters import gateway_parameters, spec_problem
from mcgw.translate import GatewayResources, translate
from tests.envoy_validate import validate

STREAMS = Path(__file__).parent / "testdata" / "ir" / "stream-listeners.in.yaml"


def _proxy(name: str, spec: dict[str, Any]) -> EnvoyProxy:
    proxy = parse_object({"apiVersion": "mcgw.io/v1alpha1", "kind": "EnvoyProxy",
                          "metadata": {"name": name, "namespace": "infra"}, "spec": spec}, name)
    assert isinstance(proxy, EnvoyProxy)
    return proxy


def _objects(class_log: dict[str, Any] | None, gateway_log: dict[str, Any] | None) -> list[Any]:
    """A GatewayClass and a Gateway (HTTP on 80), each naming an EnvoyProxy with that ``accessLog`` if given."""
    documents: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller",
                  **({"parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "defaults",
                                        "namespace": "infra"}} if class_log is not None else {})}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "infra", "generation": 1},
         "spec": {"gatewayClassName": "mcgw", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                  **({"infrastructure": {"parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "own"}}}
                     if gateway_log is not None else {})}},
    ]
    objects = [parse_object(document, document["kind"]) for document in documents]
    if class_log is not None:
        objects.append(_proxy("defaults", {"accessLog": class_log}))
    if gateway_log is not None:
        objects.append(_proxy("own", {"accessLog": gateway_log}))
    return objects


def _translated(class_log: dict[str, Any] | None, gateway_log: dict[str, Any] | None) -> Any:
    return translate_cluster("east", _objects(class_log, gateway_log), {("infra", "gw"): ["198.18.0.10"]})


def _loggers(message: Message) -> list[dict[str, Any]]:
    """Every access logger anywhere in an Envoy resource, as plain data (nested Anys unpacked)."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("name") == "envoy.access_loggers.stdout":
                found.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json_format.MessageToDict(message, preserving_proto_field_name=True))
    return found


def _format(logger: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = logger["typed_config"]["log_format"]
    return result


def test_every_gateway_logs_json_for_every_request_unless_its_parameters_say_otherwise() -> None:
    assert access_log(None) == ir.AccessLogIR("json", 1_000_000) == ir.DEFAULT_ACCESS_LOG
    (gateway,) = _translated(None, None).gateways
    assert gateway.access_log == ir.DEFAULT_ACCESS_LOG


def test_the_gateway_overrides_its_class_field_by_field() -> None:
    (gateway,) = _translated({"format": "text", "sampling": 50}, {"sampling": 12.5}).gateways
    assert gateway.access_log == ir.AccessLogIR("text", 125_000)
    (off,) = _translated({"format": "text"}, {"enabled": False}).gateways
    assert off.access_log is None
    (back_on,) = _translated({"enabled": False, "sampling": 1}, {"enabled": True}).gateways
    assert back_on.access_log == ir.AccessLogIR("json", 10_000)


def test_a_disabled_log_leaves_every_listener_without_access_loggers() -> None:
    output = _translated({"enabled": False}, None)
    messages = [m for ms in output.resources.values() for m in ms]
    assert messages
    assert not [logger for m in messages for logger in _loggers(m)]


def test_the_translated_listener_writes_what_the_parameters_ask_for() -> None:
    output = _translated(None, {"format": "text", "sampling": 0.5})
    (listener,) = [m for ms in output.resources.values() for m in ms if m.DESCRIPTOR.name == "Listener"]
    (logger,) = _loggers(listener)
    line = _format(logger)["text_format_source"]["inline_string"]
    assert line.startswith("start_time=%START_TIME% listener=infra/gw/80 ")
    assert " response_code=%RESPONSE_CODE% " in line
    assert " upstream_host=%UPSTREAM_HOST% source_cluster=%CEL(upstream.locality.sub_zone)% " in line
    assert " upstream_attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% " in line
    assert line.endswith(" duration_ms=%DURATION% response_duration_ms=%RESPONSE_DURATION%\n")
    assert logger["filter"]["runtime_filter"]["percent_sampled"] == {"numerator": 5000, "denominator": "MILLION"}
    assert logger["filter"]["runtime_filter"]["use_independent_randomness"]


@pytest.mark.parametrize(("log", "reason"), [
    ({"sampling": 150}, "accessLog.sampling: Input should be less than or equal to 100"),
    ({"sampling": -1}, "accessLog.sampling: Input should be greater than or equal to 0"),
    ({"format": "yaml"}, "accessLog.format: Input should be 'json' or 'text'"),
    ({"enabled": "sometimes"}, "accessLog.enabled: Input should be a valid boolean"),
])
def test_values_outside_the_schema_are_refused_naming_the_field(log: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestError, match=reason):
        _proxy("bad", {"accessLog": log})


def test_a_share_finer_than_envoy_samples_makes_the_parameters_invalid() -> None:
    problem = spec_problem(_proxy("fine", {"accessLog": {"sampling": 0.00005}}).spec)
    assert problem == ("spec.accessLog.sampling (5e-05) is finer than Envoy samples: give the percentage in steps "
                       "of 0.0001 (for example 0.0001)")
    assert spec_problem(_proxy("ok", {"accessLog": {"sampling": 33.3333}}).spec) is None
    assert spec_problem(_proxy("ok", {"accessLog": {"sampling": 0}}).spec) is None
    gateway = next(o for o in _objects(None, {"sampling": 12.34567}) if o.kind == "Gateway")
    _, reason = gateway_parameters(gateway, None, {("infra", "own"): _proxy("own", {"accessLog": {
        "sampling": 12.34567}})})
    assert reason == ("spec.infrastructure.parametersRef: EnvoyProxy infra/own: spec.accessLog.sampling (12.3457) "
                      "is finer than Envoy samples: give the percentage in steps of 0.0001 (for example 12.3457)")
    status = _translated(None, {"sampling": 12.34567}).statuses()["Gateway"]["infra/gw"]
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidParameters")
    assert "spec.accessLog.sampling (12.3457) is finer than Envoy samples" in accepted["message"]


def _every_kind(log: ir.AccessLogIR | None) -> ir.GatewayIR:
    """HTTP on 80, TCP on 5432, UDP on 80, and a TLS passthrough port 443."""
    gateway = ir.from_data(ir.GatewayIR, yaml.safe_load(STREAMS.read_text()))
    backend = gateway.tcp[0].backends[0]
    passthrough = ir.TLSPassthroughListenerIR("infra/public/443/passthrough", 443, (
        ir.TLSRouteIR("tlsroute/db/secure", ("db.example",), (backend,)),))
    gateway = gateway._replace(tls_passthrough=(passthrough,), access_log=log)
    ir.validate(gateway)
    return gateway


def _listener_fields(gateway: ir.GatewayIR) -> dict[str, list[dict[str, Any]]]:
    listeners = [built.message for built in translate(gateway) if built.message.DESCRIPTOR.name == "Listener"]
    return {listener.name: [_format(logger)["json_format"] for logger in _loggers(listener)]  # type: ignore[attr-defined]
            for listener in listeners}


def test_every_kind_of_listener_logs_the_upstream_host_and_its_source_cluster() -> None:
    logged = _listener_fields(_every_kind(ir.DEFAULT_ACCESS_LOG))
    assert sorted(logged) == ["infra/public/443", "infra/public/5432", "infra/public/80", "infra/public/80/udp"]
    (http,) = logged["infra/public/80"]
    (tcp,) = logged["infra/public/5432"]
    (udp,) = logged["infra/public/80/udp"]
    chain, unmatched = logged["infra/public/443"]  # the filter chain's tcp_proxy, the listener's own
    for fields in (http, tcp, udp, chain):
        assert fields["upstream_host"] == "%UPSTREAM_HOST%"
        assert fields["source_cluster"] == "%CEL(upstream.locality.sub_zone)%"
        assert fields["response_flags"] == "%RESPONSE_FLAGS%"
        assert fields["duration_ms"] == "%DURATION%"
    assert (http["method"], http["path"], http["response_code"]) == ("%REQ(:METHOD)%", "%PATH(NQ)%",
                                                                     "%RESPONSE_CODE%")
    assert http["upstream_attempts"] == tcp["upstream_attempts"] == "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"
    assert (http["listener"], tcp["listener"], udp["listener"]) == ("infra/public/80", "infra/public/5432",
                                                                    "infra/public/80/udp")
    assert not {"method", "path", "response_code", "authority"} & (set(tcp) | set(udp) | set(chain))
    assert "upstream_attempts" not in udp  # a UDP session is never retried
    assert (chain["route_name"], chain["requested_server_name"]) == ("tlsroute/db/secure", "%REQUESTED_SERVER_NAME%")
    assert "upstream_host" not in unmatched
    assert unmatched["requested_server_name"] == "%REQUESTED_SERVER_NAME%"
    assert not [fields for fields in _listener_fields(_every_kind(None)).values() if fields]


@pytest.mark.parametrize("log", [ir.DEFAULT_ACCESS_LOG, ir.AccessLogIR("text", 250_000), ir.AccessLogIR("json", 0)],
                         ids=["json", "text-sampled", "none-sampled"])
def test_envoy_accepts_the_access_logs_of_every_kind_of_listener(log: ir.AccessLogIR) -> None:
    checked = validate([built.message for built in translate(_every_kind(log))])
    assert checked.returncode == 0, checked.stderr


def test_a_changed_access_log_rebuilds_the_cached_listeners() -> None:
    resources = GatewayResources()
    before = _every_kind(ir.DEFAULT_ACCESS_LOG)
    resources.update(before)
    after = before._replace(access_log=ir.AccessLogIR("text"))
    cached = {built.name: built.message for built in resources.update(after)}
    fresh = {built.name: built.message for built in translate(after)}
    assert cached == fresh
    logger = _loggers(cached["infra/public/5432"])[0]["typed_config"]
    assert "text_format_source" in logger["log_format"]


_VERSIONS = """
import yaml
from mcgw import ir
from mcgw.translate import translate
gateway = ir.from_data(ir.GatewayIR, yaml.safe_load(open({path!r})))
print(*[built.resource.version for built in translate(gateway)])
"""


def test_the_json_format_serialises_the_same_in_every_process() -> None:
    """A resource's version is a hash of its bytes, and a JSON format is a protobuf map, whose iteration
    order changes from one process to the next: only a deterministic encoding keeps versions (and so
    pushes) from changing when the controller restarts."""
    runs = {subprocess.run([sys.executable, "-c", _VERSIONS.format(path=str(STREAMS))], capture_output=True,
                           text=True, check=True, cwd=Path(__file__).parents[2]).stdout for _ in range(3)}
    assert len(runs) == 1, runs


@pytest.mark.parametrize("share", [-1, ir.PER_MILLION + 1])
def test_the_ir_refuses_a_share_outside_none_to_all(share: int) -> None:
    with pytest.raises(ir.InvalidIRError, match=f"access log samples {share} per million"):
        ir.validate(_every_kind(ir.AccessLogIR("json", share)))
