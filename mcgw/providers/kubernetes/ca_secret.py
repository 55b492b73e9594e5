"""The Secret that holds mcgw's xDS CA (``tls.crt``, ``tls.key``, and optionally ``ca.crt``, other CA
certificates to trust while rotating to a new CA): read it, or create it when it is missing.

Every replica and every restart must sign with the same CA, or Envoys connected to one replica could not
verify another. Creation is a plain create: when two replicas race, the loser gets 409 and reads the
winner's CA. The Secret is ``Opaque`` so that the informers (which list only ``kubernetes.io/tls``
Secrets, the kind a Gateway may reference) never hold the CA's key; a CA the user provides may be either
type. Errors name the Secret, never its content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.providers.kubernetes.lister import api_json, read_json
from mcgw.providers.kubernetes.retry import with_retries

CERT_KEY, KEY_KEY, TRUST_KEY = "tls.crt", "tls.key", "ca.crt"
# Created by mcgw, not managed: provisioning (which owns what carries managed-by: mcgw) never touches it.
CA_LABELS = {"app.kubernetes.io/created-by": "mcgw", "app.kubernetes.io/component": "xds-ca"}


class CaSecretError(Exception):
    """The CA Secret cannot be used; the message says which and why, never what it holds."""


async def _get(api: client.ApiClient, path: str) -> dict[str, Any] | None:
    try:
        return await read_json(api, path)
    except ApiException as error:
        raise CaSecretError(f"reading Secret {path.rsplit('/', 3)[-3]}/{path.rsplit('/', 1)[-1]}: "
                            f"API answered {error.status} {error.reason}") from None


@dataclass(frozen=True, repr=False)
class CaMaterial:
    """What the CA Secret holds (PEM): the signing certificate and key, and the extra trust bundle (empty
    when the Secret has no ``ca.crt``). ``repr`` leaves the key out."""

    cert: bytes
    key: bytes
    trust: bytes = b""

    def __repr__(self) -> str:
        return "CaMaterial(...)"


def _material(secret: dict[str, Any], where: str) -> CaMaterial:
    data = secret.get("data") or {}
    try:
        cert, key = base64.b64decode(data[CERT_KEY]), base64.b64decode(data[KEY_KEY])
        trust = base64.b64decode(data.get(TRUST_KEY) or "")
    except KeyError:
        raise CaSecretError(f"Secret {where} needs the keys {CERT_KEY} and {KEY_KEY}") from None
    except (binascii.Error, TypeError):
        raise CaSecretError(f"Secret {where}: {CERT_KEY}, {KEY_KEY} or {TRUST_KEY} is not base64") from None
    return CaMaterial(cert, key, trust)


async def read_ca(api: client.ApiClient, namespace: str, name: str) -> CaMaterial | None:
    """The CA Secret's content now, or None when it does not exist."""
    found = await _get(api, f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return None if found is None else _material(found, f"{namespace}/{name}")


async def load_or_create(api: client.ApiClient, namespace: str, name: str, *, create: bool,
                         generate: Callable[[], tuple[bytes, bytes]]) -> tuple[CaMaterial, bool]:
    """The CA from Secret ``namespace/name``, and whether this call created it (from ``generate()``, only
    when missing and ``create``)."""
    where = f"{namespace}/{name}"
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    found = await _get(api, path)
    if found is not None:
        return _material(found, where), False
    if not create:
        raise CaSecretError(f"Secret {where} with the xDS CA does not exist: create it with {CERT_KEY} and "
                            f"{KEY_KEY} (bring your own CA), or set xds.ca.create: true")
    cert, key = generate()
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": CA_LABELS},
            "data": {CERT_KEY: base64.b64encode(cert).decode(), KEY_KEY: base64.b64encode(key).decode()}}
    try:
        await with_retries(partial(api_json, api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body),
                           f"create Secret {where}")
    except ApiException as error:
        if error.status != 409:
            raise CaSecretError(f"creating Secret {where}: API answered {error.status} {error.reason}") from None
        found = await _get(api, path)  # another replica created it first: use its CA
        if found is None:
            raise CaSecretError(f"Secret {where} was created and deleted again meanwhile; start again") from None
        return _material(found, where), False
    return CaMaterial(cert, key), True
