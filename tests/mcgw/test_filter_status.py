"""Filters the CRD would refuse drop their rule with a message saying what to change; none is coerced."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from mcgw.objects.model import RouteRule
from mcgw.semantics.gateway.httproute import rule_problem

_RULE: TypeAdapter[RouteRule] = TypeAdapter(RouteRule)
BACKENDS = [{"name": "cart", "port": 8080}]


def _problem(filters: list[dict[str, Any]], *, backends: bool = True, path_type: str = "PathPrefix",
             matches: int = 1) -> str | None:
    rule = {"matches": [{"path": {"type": path_type, "value": f"/m{i}"}} for i in range(matches)],
            "filters": filters, "backendRefs": BACKENDS if backends else []}
    return rule_problem(_RULE.validate_python(rule))


def _rewrite(**config: Any) -> dict[str, Any]:
    return {"type": "URLRewrite", "urlRewrite": config}


def _redirect(**config: Any) -> dict[str, Any]:
    return {"type": "RequestRedirect", "requestRedirect": config}


@pytest.mark.parametrize(("filters", "backends", "expected"), [
    ([_redirect(statusCode=666)], False, "statusCode 666 is not supported"),
    ([_redirect(scheme="ftp")], False, "scheme 'ftp' is not supported"),
    ([_redirect(hostname="*.example.com")], False, "needs a precise hostname"),
    ([_rewrite(hostname="Bad_Host")], True, "not a valid DNS name"),
    ([_rewrite(path={"type": "ReplacePrefixMatch"})], True, "has no replacePrefixMatch; set replacePrefixMatch"),
    ([_redirect(path={"type": "ReplacePrefixMatch"})], False, "has no replacePrefixMatch"),
    ([_rewrite(path={"type": "ReplaceFullPath"})], True, "has no replaceFullPath"),
    ([_rewrite(path={"type": "ReplaceFullPath", "replacePrefixMatch": "/b"})], True, "has no replaceFullPath"),
    ([_rewrite(path={"type": "ReplaceFullPath", "replaceFullPath": "/a", "replacePrefixMatch": "/b"})], True,
     "also sets replacePrefixMatch"),
    ([_rewrite(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b", "replaceFullPath": "/a"})], True,
     "also sets replaceFullPath"),
    ([_rewrite(hostname="a.example.com"), _rewrite(hostname="b.example.com")], True,
     "more than one URLRewrite filter"),
    ([_redirect(statusCode=301), _redirect(statusCode=302)], False, "more than one RequestRedirect filter"),
    ([_redirect(hostname="a.example.com"), _rewrite(hostname="b.example.com")], False,
     "RequestRedirect and URLRewrite cannot be used in the same rule"),
    ([_redirect(hostname="a.example.com")], True, "RequestRedirect filter cannot have backendRefs"),
    ([{"type": "URLRewrite"}], True, "has no urlRewrite; set urlRewrite"),
    ([{"type": "URLRewrite", "urlRewrite": {}, "requestMirror": {"backendRef": {"name": "m", "port": 80}}}], True,
     "also sets requestMirror"),
    ([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": ""}]}}], True,
     "value of header 'x-a' is empty"),
    ([{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-a", "value": ""}]}}], True,
     "value of header 'x-a' is empty"),
])
def test_an_invalid_filter_drops_its_rule(filters: list[dict[str, Any]], backends: bool, expected: str) -> None:
    problem = _problem(filters, backends=backends)
    assert problem is not None
    assert expected in problem


def test_replace_prefix_match_needs_exactly_one_path_prefix_match() -> None:
    rewrite = [_rewrite(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"})]
    assert _problem(rewrite) is None
    assert "exactly one match, of type PathPrefix" in (_problem(rewrite, path_type="Exact") or "")
    assert "exactly one match, of type PathPrefix" in (_problem(rewrite, matches=2) or "")
    assert _problem([_rewrite(path={"type": "ReplaceFullPath", "replaceFullPath": "/x"})], matches=2) is None


def test_an_empty_header_match_value_drops_its_rule() -> None:
    rule = _RULE.validate_python({"matches": [{"headers": [{"name": "x-a", "value": ""}]}], "backendRefs": BACKENDS})
    assert "header match for 'x-a' has an empty value" in (rule_problem(rule) or "")


@pytest.mark.parametrize("filters", [
    [_redirect(statusCode=301, hostname="a.example.com", scheme="https", port=8443,
               path={"type": "ReplaceFullPath", "replaceFullPath": "/new"})],
    [_rewrite(hostname="a.example.com", path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}),
     {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]}},
     {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}},
     {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "n", "port": 80}}}],
])
def test_valid_filters_are_kept(filters: list[dict[str, Any]]) -> None:
    assert _problem(filters, backends=filters[0]["type"] != "RequestRedirect") is None
