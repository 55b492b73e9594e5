"""Structured logging: both formats name the object a line is about, and the flags parse."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import pytest

from mcgw.support.logs import add_logging_arguments, configure_logging, object_fields


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("kubernetes", "grpc", "aiohttp.access")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, previous in quiet.items():
        logging.getLogger(name).setLevel(previous)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_names_the_object_and_time_is_utc() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logging.getLogger("mcgw.test").info("gateway %s programmed", "public",
                                        extra=object_fields("east", "Gateway", "infra", "public"))
    (entry,) = _json_lines(out)
    assert entry["message"] == "gateway public programmed"
    assert (entry["level"], entry["logger"]) == ("info", "mcgw.test")
    assert (entry["cluster"], entry["kind"], entry["object"]) == ("east", "Gateway", "infra/public")
    when = dt.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
    assert when.utcoffset() == dt.timedelta(0)
    assert str(entry["time"]).endswith("Z")


def test_json_without_object_fields_omits_them_and_carries_the_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("mcgw.test").exception("translation failed")
    (entry,) = _json_lines(out)
    assert "cluster" not in entry
    assert "object" not in entry
    assert entry["level"] == "error"
    assert "RuntimeError: boom" in str(entry["exception"])


def test_cluster_scoped_object_is_named_without_namespace() -> None:
    assert object_fields("west", "GatewayClass", "", "mcgw") == {"cluster": "west", "kind": "GatewayClass",
                                                                 "object": "mcgw"}


def test_text_line_shows_fields_and_quotes_values_with_spaces() -> None:
    out = io.StringIO()
    configure_logging("debug", "text", stream=out)
    logging.getLogger("mcgw.test").warning("status conflict", extra={"cluster": "east", "kind": "HTTPRoute",
                                                                     "object": "shop/my route"})
    line = out.getvalue().strip()
    assert " WARNING " in line
    assert " mcgw.test: status conflict " in line
    assert line.endswith('cluster=east kind=HTTPRoute object="shop/my route"')


def test_level_filters_and_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("warning", "text", stream=first)
    configure_logging("warning", "json", stream=second)
    log = logging.getLogger("mcgw.test")
    log.info("not shown")
    log.warning("shown")
    assert first.getvalue() == ""
    assert [e["message"] for e in _json_lines(second)] == ["shown"]


def test_kubernetes_client_debug_stays_quiet_at_debug_level() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    logging.getLogger("kubernetes.aio.client.rest").debug("response body: {secret data}")
    logging.getLogger("grpc._cython.cygrpc").debug("chatter")
    logging.getLogger("mcgw.test").debug("ours")
    assert [e["logger"] for e in _json_lines(out)] == ["mcgw.test"]


def test_arguments_default_to_info_text_and_reject_unknown_values() -> None:
    parser = argparse.ArgumentParser()
    add_logging_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.log_level, defaults.log_format) == ("info", "text")
    chosen = parser.parse_args(["--log-level", "debug", "--log-format", "json"])
    assert (chosen.log_level, chosen.log_format) == ("debug", "json")
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml"])


def test_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("verbose", "text")
