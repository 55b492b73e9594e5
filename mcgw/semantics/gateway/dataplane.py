"""A provisioned Gateway's addresses and whether it is programmed, from what the runtime observed.

Pure: the runtime passes in the generated Service and Deployment as the informers show them, how the
Gateway's Envoys stand with the xDS server, and which generated names someone else's objects hold; the
Gateway's status follows from those facts alone.

- **Addresses** (``status.addresses``): a LoadBalancer Service's ``status.loadBalancer.ingress`` (IP or
  hostname, as the load balancer reports them); a ClusterIP or NodePort Service's ``externalIPs`` when the
  Gateway asked for static addresses, else its cluster IPs. None yet: ``Programmed=False
  AddressNotAssigned``.
- **Static addresses** the Service cannot carry, that are outside the address pools, or that the load
  balancer did not give: ``Programmed=False AddressNotUsable``, naming each and why.
- **Programmed=True** only once the Deployment has a ready replica (ready means "has its configuration":
  see ``mcgw.provisioning.render``) and at least one Envoy of the Gateway is current with the xDS server
  (it ACKed what it was last sent, LDS and RDS); otherwise ``Programmed=False Pending``, saying what it
  waits for. Where other mcgw replicas serve xDS too, a ready Envoy connected to none of this replica's
  streams is taken as current (it may be another replica's; a rejection seen here still counts).
"""

from __future__ import annotations

from dataclasses import dataclass

from mcgw.objects.model import Deployment, Gateway, Service
from mcgw.semantics.gateway.addresses import IPNetwork, plan_addresses


@dataclass(frozen=True)
class EnvoyAcks:
    """How the connected Envoys of one Gateway stand with the xDS server."""

    connected: int = 0
    current: int = 0  # ACKed what they were last sent (LDS and RDS), or are within the grace for a new push
    rejected: int = 0  # NACKed the latest LDS or RDS they were sent


@dataclass(frozen=True)
class Dataplane:
    """What the runtime observed of one Gateway's provisioned Envoys."""

    service: Service | None = None  # the generated Service (None: not there, or not ours)
    deployment: Deployment | None = None  # the generated Deployment (None: not there, or not ours)
    envoys: EnvoyAcks = EnvoyAcks()
    blocked: tuple[str, ...] = ()  # generated objects whose names someone else's objects hold ("Kind ns/name")
    pools: tuple[IPNetwork, ...] = ()
    name: str = ""  # the generated objects' name
    reserved_ports: frozenset[int] = frozenset()  # ports the provisioned Envoy uses itself (readiness, admin)
    # Other mcgw replicas serve xDS too: the Gateway's Envoys may be connected to one of them.
    other_xds_servers: bool = False


@dataclass(frozen=True)
class DataplaneOutcome:
    addresses: tuple[str, ...]
    unusable: tuple[tuple[str, str], ...]  # (address, why it cannot be used)
    unassigned: str  # why there is no address yet ("" when there is one)
    pending: str  # what the Envoys still wait for ("" when ready and current)


def _where(obj: Service | Deployment | None, kind: str, gateway: Gateway, name: str) -> str:
    return f"{kind} {gateway.metadata.namespace}/{obj.metadata.name if obj else name}"


def dataplane_outcome(gateway: Gateway, service_type: str, observed: Dataplane) -> DataplaneOutcome:
    """The Gateway's addresses and what it waits for."""
    object_name = observed.name
    plan = plan_addresses(gateway, service_type, observed.pools)
    unusable = list(plan.refused)
    service = observed.service
    addresses: tuple[str, ...] = ()
    unassigned = ""
    where = _where(service, "Service", gateway, object_name)
    if service is None:
        unassigned = f"waiting for {where} to be created"
    elif service.spec.type == "LoadBalancer":
        addresses = tuple(dict.fromkeys(a for i in service.status.load_balancer.ingress for a in (i.ip or i.hostname,)
                                        if a))
        requested = plan.load_balancer_ip
        if not addresses:
            unassigned = (f"waiting for the load balancer to assign {requested} to {where}" if requested
                          else f"waiting for the load balancer to assign an address to {where}")
        elif requested and requested not in addresses:
            unusable.append((requested, f"the load balancer gave {where} {', '.join(addresses)}, not this address"))
    elif plan.external_ips:
        addresses = tuple(a for a in service.spec.external_ips if a in plan.external_ips)
        if not addresses:
            unassigned = f"waiting for {where} to carry {', '.join(plan.external_ips)}"
    else:
        cluster_ip = service.spec.cluster_ip
        addresses = (cluster_ip,) if cluster_ip and cluster_ip != "None" else ()
        if not addresses:
            unassigned = f"waiting for {where} to get a cluster IP"
    return DataplaneOutcome(addresses, tuple(unusable), unassigned, _pending(gateway, object_name, observed))


def _pending(gateway: Gateway, object_name: str, observed: Dataplane) -> str:
    if observed.blocked:
        exist, them = ("exists", "it") if len(observed.blocked) == 1 else ("exist", "them")
        return (f"{', '.join(observed.blocked)} {exist} and {'is' if them == 'it' else 'are'} not managed by mcgw: "
                f"rename or delete {them}, so that mcgw can run this Gateway's Envoys")
    deployment = observed.deployment
    where = _where(deployment, "Deployment", gateway, object_name)
    if deployment is None:
        return f"waiting for {where} to be created"
    if deployment.status.ready_replicas < 1:
        wanted = deployment.spec.replicas if deployment.spec.replicas is not None else deployment.status.replicas
        return f"waiting for an Envoy pod of {where} to be ready (0 of {wanted} ready)"
    envoys = observed.envoys
    if envoys.current >= 1:
        return ""
    if envoys.rejected:
        return (f"{envoys.rejected} of {envoys.connected} connected Envoys rejected the current configuration "
                "(see /api/status for why)")
    if not envoys.connected:
        if observed.other_xds_servers:  # a ready Envoy has its configuration, from whichever replica it dials
            return ""
        return "waiting for an Envoy of this Gateway to connect to the xDS server"
    return f"waiting for an Envoy of this Gateway to ACK the current configuration ({envoys.connected} connected)"
