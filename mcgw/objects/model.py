"""Typed, minimal views of the Kubernetes objects mcgw reads, parsed once at the provider edge.

Only the fields the semantics need are modelled; unknown fields are ignored, so a newer CRD never
breaks parsing. A malformed object raises :class:`ManifestError` naming the object and the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from mcgw.support.durations import GATEWAY_DURATION_PATTERN

GATEWAY_GROUP = "gateway.networking.k8s.io"
MCS_GROUP = "multicluster.x-k8s.io"
CORE_GROUP = ""


class ManifestError(ValueError):
    """An object that cannot be read, with where it came from and which field is wrong."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


# Kubernetes field names (camelCase), immutable, unknown fields ignored. Pydantic dataclasses with slots
# rather than BaseModels: they validate the same way, but their attributes are plain slots, which the
# interpreter reads about four times faster (a BaseModel's __getattr__ hook defeats CPython's attribute
# caches), and the translator reads tens of attributes per route rule.
_spec = dataclass(frozen=True, kw_only=True, slots=True,
                  config=ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore"))


class _Spec:
    """Base of every parsed Kubernetes view (each is also decorated with ``@_spec``)."""

    __slots__ = ()


@_spec
class ObjectMeta(_Spec):
    name: str
    namespace: str = ""
    generation: int = 0
    creation_timestamp: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    uid: str = ""
    resource_version: str = ""


# The annotation on every object mcgw generates: a hash of what mcgw asked for, so that an object stored
# can be compared with a desired one without the fields the API server fills in.
DESIRED_HASH_ANNOTATION = "mcgw.io/desired-hash"


@_spec
class GeneratedMeta(ObjectMeta):
    """Metadata of the kinds mcgw generates: also its desired-hash annotation (the other annotations, such as
    a large last-applied-configuration, are not kept)."""

    desired_hash: str = ""

    @model_validator(mode="before")
    @classmethod
    def _desired_hash(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(annotations := data.get("annotations"), dict):
            value = annotations.get(DESIRED_HASH_ANNOTATION)
            if isinstance(value, str):
                return {**data, "desiredHash": value}
        return data


@_spec
class LabelSelectorRequirement(_Spec):
    key: str
    # An unknown operator fails the object's parse (reported, and the object left out): the CRD takes any string.
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


@_spec
class LabelSelector(_Spec):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for requirement in self.match_expressions:
            present = requirement.key in labels
            value = labels.get(requirement.key)
            if requirement.operator == "In" and value not in requirement.values:
                return False
            if requirement.operator == "NotIn" and present and value in requirement.values:
                return False
            if requirement.operator == "Exists" and not present:
                return False
            if requirement.operator == "DoesNotExist" and present:
                return False
            if requirement.operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
                return False
        return True


# -- Gateway API ----------------------------------------------------------------------------------

@_spec
class ParametersReference(_Spec):
    group: str
    kind: str
    name: str
    namespace: str | None = None


@_spec
class GatewayClassSpec(_Spec):
    controller_name: str
    parameters_ref: ParametersReference | None = None


@_spec
class RouteGroupKind(_Spec):
    group: str = GATEWAY_GROUP
    kind: str


@_spec
class RouteNamespaces(_Spec):
    from_: Literal["All", "Same", "Selector"] = Field("Same", alias="from")
    selector: LabelSelector | None = None


@_spec
class AllowedRoutes(_Spec):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: tuple[RouteGroupKind, ...] = ()


@_spec
class SecretObjectReference(_Spec):
    group: str = CORE_GROUP
    kind: str = "Secret"
    name: str
    namespace: str | None = None


@_spec
class GatewayTLSConfig(_Spec):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: tuple[SecretObjectReference, ...] = ()


@_spec
class Listener(_Spec):
    name: str
    hostname: str | None = None
    port: int
    protocol: str
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()


@_spec
class GatewayAddress(_Spec):
    type: str = "IPAddress"
    value: str


@_spec
class LocalParametersReference(_Spec):
    group: str
    kind: str
    name: str


@_spec
class GatewayInfrastructure(_Spec):
    """What a Gateway asks of the objects generated for it: labels and annotations on every one of them,
    and parameters (``parametersRef``) that override its GatewayClass's."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    parameters_ref: LocalParametersReference | None = None


@_spec
class CACertificateReference(_Spec):
    """A Gateway's frontend CA bundle: a ConfigMap or Secret, in any namespace a ReferenceGrant opens."""

    group: str = Field(max_length=253)
    kind: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(None, max_length=63)


@_spec
class FrontendTLSValidation(_Spec):
    ca_certificate_refs: tuple[CACertificateReference, ...] = Field(min_length=1, max_length=16)
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] = "AllowValidOnly"


@_spec
class FrontendTLS(_Spec):
    validation: FrontendTLSValidation | None = None


@_spec
class FrontendTLSPort(_Spec):
    port: int
    tls: FrontendTLS


@_spec
class FrontendTLSConfig(_Spec):
    """How the Gateway's HTTPS listeners verify client certificates: per port, else the default."""

    default: FrontendTLS
    per_port: tuple[FrontendTLSPort, ...] = Field((), max_length=64)


@_spec
class GatewayBackendTLS(_Spec):
    """The Gateway as a TLS client of its backends: the certificate it presents to them."""

    client_certificate_ref: SecretObjectReference | None = None


@_spec
class GatewaySpecTLS(_Spec):
    """``Gateway.spec.tls``: TLS settings of the whole Gateway rather than of one listener."""

    frontend: FrontendTLSConfig | None = None
    backend: GatewayBackendTLS | None = None


@_spec
class GatewaySpec(_Spec):
    gateway_class_name: str
    listeners: tuple[Listener, ...]
    addresses: tuple[GatewayAddress, ...] = ()
    infrastructure: GatewayInfrastructure | None = None
    tls: GatewaySpecTLS | None = None


@_spec
class ParentReference(_Spec):
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: int | None = None


@_spec
class PathMatch(_Spec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


@_spec
class HeaderMatch(_Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str
    value: str


@_spec
class QueryParamMatch(_Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str
    value: str


@_spec
class RouteMatch(_Spec):
    path: PathMatch = PathMatch()
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = None


@_spec
class HeaderValue(_Spec):
    name: str
    value: str


@_spec
class HeaderModifier(_Spec):
    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()
    remove: tuple[str, ...] = ()


@_spec
class PathModifier(_Spec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


@_spec
class RequestRedirect(_Spec):
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


@_spec
class URLRewrite(_Spec):
    hostname: str | None = None
    path: PathModifier | None = None


@_spec
class BackendObjectReference(_Spec):
    group: str = CORE_GROUP
    kind: str = "Service"
    name: str
    namespace: str | None = None
    port: int | None = None


@_spec
class Fraction(_Spec):
    numerator: int
    denominator: int = 100


@_spec
class RequestMirror(_Spec):
    backend_ref: BackendObjectReference
    percent: int | None = None  # neither this nor fraction: every request is mirrored
    fraction: Fraction | None = None


@_spec
class CORS(_Spec):
    allow_origins: tuple[str, ...] = ()
    allow_credentials: bool | None = None
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int = 5  # seconds; the CRD's default


@_spec
class RouteFilter(_Spec):
    type: str
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None
    request_mirror: RequestMirror | None = None
    cors: CORS | None = None


@_spec
class BackendRef(BackendObjectReference):
    weight: int = 1
    filters: tuple[RouteFilter, ...] = ()


@_spec
class RouteTimeouts(_Spec):
    request: str | None = None
    backend_request: str | None = None


@_spec
class RouteRetry(_Spec):
    codes: tuple[int, ...] = ()
    attempts: int | None = None
    backoff: str | None = None


@_spec
class RouteRule(_Spec):
    name: str | None = None
    matches: tuple[RouteMatch, ...] = (RouteMatch(),)
    filters: tuple[RouteFilter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()
    timeouts: RouteTimeouts | None = None
    retry: RouteRetry | None = None


@_spec
class HTTPRouteSpec(_Spec):
    parent_refs: tuple[ParentReference, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = (RouteRule(),)


@_spec
class GRPCMethodMatch(_Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = None
    method: str | None = None


@_spec
class GRPCRouteMatch(_Spec):
    method: GRPCMethodMatch | None = None  # None: every service and method
    headers: tuple[HeaderMatch, ...] = ()


@_spec
class GRPCRouteRule(_Spec):
    """A GRPCRoute rule: its filters and backendRefs have HTTPRoute's shape (RequestMirror, header modifiers,
    ExtensionRef by type), so they are read with the same classes."""

    name: str | None = None
    matches: tuple[GRPCRouteMatch, ...] = (GRPCRouteMatch(),)
    filters: tuple[RouteFilter, ...] = ()
    backend_refs: tuple[BackendRef, ...] = ()


@_spec
class GRPCRouteSpec(_Spec):
    parent_refs: tuple[ParentReference, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[GRPCRouteRule, ...] = (GRPCRouteRule(),)


@_spec
class StreamRouteRule(_Spec):
    """A TLSRoute, TCPRoute or UDPRoute rule: backendRefs alone (no matches: every connection or datagram;
    a TLSRoute's hostnames choose by SNI)."""

    name: str | None = None
    backend_refs: tuple[BackendRef, ...] = ()


@_spec
class StreamRouteSpec(_Spec):
    """TCPRoute's and UDPRoute's spec: parentRefs and one rule; no hostnames (read as none)."""

    parent_refs: tuple[ParentReference, ...] = ()
    rules: tuple[StreamRouteRule, ...] = (StreamRouteRule(),)

    @property
    def hostnames(self) -> tuple[str, ...]:
        return ()


@_spec
class TLSRouteSpec(_Spec):
    parent_refs: tuple[ParentReference, ...] = ()
    hostnames: tuple[str, ...] = ()  # SNI names; the CRD requires at least one
    rules: tuple[StreamRouteRule, ...] = (StreamRouteRule(),)


@_spec
class ReferenceGrantFrom(_Spec):
    group: str
    kind: str
    namespace: str


@_spec
class ReferenceGrantTo(_Spec):
    group: str
    kind: str
    name: str | None = None


@_spec
class ReferenceGrantSpec(_Spec):
    from_: tuple[ReferenceGrantFrom, ...] = Field(alias="from")
    to: tuple[ReferenceGrantTo, ...]


# -- core -----------------------------------------------------------------------------------------

@_spec
class ServicePort(_Spec):
    name: str = ""
    port: int
    protocol: str = "TCP"
    app_protocol: str | None = None


@_spec
class ClientIPConfig(_Spec):
    timeout_seconds: int | None = None


@_spec
class SessionAffinityConfig(_Spec):
    client_ip: ClientIPConfig | None = Field(None, alias="clientIP")


@_spec
class ServiceSpec(_Spec):
    type: str = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    session_affinity: str = "None"
    cluster_ip: str | None = Field(None, alias="clusterIP")
    # Read for the Services mcgw generates: what they select and which addresses they ask for.
    selector: dict[str, str] = Field(default_factory=dict)
    load_balancer_ip: str | None = Field(None, alias="loadBalancerIP")
    external_ips: tuple[str, ...] = Field((), alias="externalIPs")
    # Read by the MCS controller: exports of one service must agree on these (KEP-1645 conflicts).
    session_affinity_config: SessionAffinityConfig | None = None
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None
    ip_families: tuple[str, ...] = ()

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@_spec
class ServiceImportSpec(_Spec):
    type: Literal["ClusterSetIP", "Headless"] = "ClusterSetIP"
    ports: tuple[ServicePort, ...] = ()
    ips: tuple[str, ...] = ()
    ip_families: tuple[str, ...] = ()
    session_affinity: str | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None


@_spec
class ClusterStatus(_Spec):
    cluster: str


@_spec
class ServiceImportStatus(_Spec):
    clusters: tuple[ClusterStatus, ...] = ()


@_spec
class ServiceExportSpec(_Spec):
    exported_labels: dict[str, str] = Field(default_factory=dict)
    exported_annotations: dict[str, str] = Field(default_factory=dict)


@_spec
class _Object(_Spec):
    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name): unique within one member cluster."""
        return self.kind, self.metadata.namespace, self.metadata.name


@_spec
class GatewayClass(_Object):
    kind: Literal["GatewayClass"]
    spec: GatewayClassSpec


@_spec
class Gateway(_Object):
    kind: Literal["Gateway"]
    spec: GatewaySpec


@_spec
class HTTPRoute(_Object):
    kind: Literal["HTTPRoute"]
    spec: HTTPRouteSpec = HTTPRouteSpec()


@_spec
class GRPCRoute(_Object):
    kind: Literal["GRPCRoute"]
    spec: GRPCRouteSpec = GRPCRouteSpec()


@_spec
class TCPRoute(_Object):
    kind: Literal["TCPRoute"]
    spec: StreamRouteSpec = StreamRouteSpec()


@_spec
class UDPRoute(_Object):
    kind: Literal["UDPRoute"]
    spec: StreamRouteSpec = StreamRouteSpec()


@_spec
class TLSRoute(_Object):
    kind: Literal["TLSRoute"]
    spec: TLSRouteSpec = TLSRouteSpec()


@_spec
class ReferenceGrant(_Object):
    kind: Literal["ReferenceGrant"]
    spec: ReferenceGrantSpec


@_spec
class Namespace(_Object):
    kind: Literal["Namespace"]


@_spec
class Secret(_Object):
    kind: Literal["Secret"]
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)


@_spec
class LoadBalancerIngress(_Spec):
    ip: str | None = None
    hostname: str | None = None


@_spec
class LoadBalancerStatus(_Spec):
    ingress: tuple[LoadBalancerIngress, ...] = ()


@_spec
class ServiceStatus(_Spec):
    load_balancer: LoadBalancerStatus = LoadBalancerStatus()


@_spec
class Service(_Object):
    kind: Literal["Service"]
    metadata: GeneratedMeta
    spec: ServiceSpec = ServiceSpec()
    status: ServiceStatus = ServiceStatus()


# -- generated for a Gateway's Envoys (read back only to compare, delete, and see readiness) -------------

@_spec
class ServiceAccount(_Object):
    kind: Literal["ServiceAccount"]
    metadata: GeneratedMeta


CA_CERTIFICATE_KEY = "ca.crt"


@_spec
class ConfigMap(_Object):
    """The metadata and the ``ca.crt`` key only (a CA bundle of a BackendTLSPolicy or of a Gateway's frontend
    validation): every other key is dropped at parse time, so a cluster's large ConfigMaps cost mcgw no memory.
    A generated bootstrap's content is compared through the desired-hash annotation."""

    kind: Literal["ConfigMap"]
    metadata: GeneratedMeta
    ca_crt: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _ca_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(values := data.get("data"), dict):
            value = values.get(CA_CERTIFICATE_KEY)
            return {**data, "caCrt": value if isinstance(value, str) else None}
        return data


@_spec
class DeploymentSpec(_Spec):
    replicas: int | None = None


@_spec
class DeploymentStatus(_Spec):
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0


@_spec
class Deployment(_Object):
    kind: Literal["Deployment"]
    metadata: GeneratedMeta
    spec: DeploymentSpec = DeploymentSpec()
    status: DeploymentStatus = DeploymentStatus()


@_spec
class HorizontalPodAutoscaler(_Object):
    kind: Literal["HorizontalPodAutoscaler"]
    metadata: GeneratedMeta


@_spec
class PodDisruptionBudget(_Object):
    kind: Literal["PodDisruptionBudget"]
    metadata: GeneratedMeta


@_spec
class EndpointConditions(_Spec):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


@_spec
class ObjectReference(_Spec):
    kind: str = ""
    namespace: str = ""
    name: str = ""


@_spec
class ForZone(_Spec):
    name: str


@_spec
class EndpointHints(_Spec):
    for_zones: tuple[ForZone, ...] = ()


@_spec
class Endpoint(_Spec):
    addresses: tuple[str, ...]
    conditions: EndpointConditions = EndpointConditions()
    zone: str | None = None
    hints: EndpointHints | None = None
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


@_spec
class EndpointPort(_Spec):
    name: str = ""
    port: int | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


@_spec
class EndpointSlice(_Object):
    kind: Literal["EndpointSlice"]
    address_type: str = "IPv4"
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get("kubernetes.io/service-name")


@_spec
class ServiceImport(_Object):
    kind: Literal["ServiceImport"]
    spec: ServiceImportSpec = ServiceImportSpec()
    status: ServiceImportStatus = ServiceImportStatus()


@_spec
class ServiceExport(_Object):
    """Marks the Service of the same namespace/name for export to the ClusterSet."""

    kind: Literal["ServiceExport"]
    spec: ServiceExportSpec = ServiceExportSpec()


# -- mcgw.io ----------------------------------------------------------------------------------------

POLICY_GROUP = "mcgw.io"
Duration = Annotated[str, Field(pattern=GATEWAY_DURATION_PATTERN)]


@_spec
class PolicyTargetRef(_Spec):
    group: Literal["multicluster.x-k8s.io", "gateway.networking.k8s.io"]
    kind: Literal["ServiceImport", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"]
    name: str = Field(min_length=1, max_length=253)


@_spec
class HealthCheckPolicy(_Spec):
    enabled: bool = True
    path: str | None = Field(None, pattern=r"^/", max_length=1024)
    interval: Duration | None = None
    timeout: Duration | None = None
    no_traffic_interval: Duration | None = None
    unhealthy_threshold: int | None = Field(None, ge=1, le=100)
    healthy_threshold: int | None = Field(None, ge=1, le=100)


@_spec
class OutlierDetectionPolicy(_Spec):
    enabled: bool = True
    consecutive_failures: int | None = Field(None, ge=1, le=1000)
    interval: Duration | None = None
    base_ejection_time: Duration | None = None


@_spec
class RetryPolicy(_Spec):
    enabled: bool = True
    attempts: int | None = Field(None, ge=1, le=10)
    per_try_timeout: Duration | None = None
    retry_on: tuple[Literal["connect-failure", "refused-stream", "reset", "5xx", "gateway-error", "retriable-4xx"],
                    ...] | None = None


ClusterName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


@_spec
class ClusterMatch(_Spec):
    """Member clusters by one criterion: a name, a region, a label selector, or the gateway's own cluster
    (``local``). Exactly one is set (the CRD's rule; mcgw says ``Invalid`` otherwise)."""

    name: ClusterName | None = None
    region: str | None = Field(None, min_length=1, max_length=253)
    selector: LabelSelector | None = None
    local: bool | None = None

    def criteria(self) -> int:
        return sum(x is not None for x in (self.name, self.region, self.selector)) + bool(self.local)


@_spec
class LevelMember(ClusterMatch):
    """Clusters sharing a level; ``weight`` is their share of it, relative to the level's other members."""

    weight: int | None = Field(None, ge=1, le=10_000)


@_spec
class FailoverLevel(_Spec):
    clusters: tuple[LevelMember, ...] = Field(min_length=1, max_length=64)


@_spec
class SpilloverPolicy(_Spec):
    """AllOrNothing: a level keeps all its traffic while it has one healthy endpoint. Gradual: a level keeps
    all of it while ``minHealthyPercent`` of its endpoints are healthy, then sends the next level the share
    of capacity it lost below that."""

    mode: Literal["AllOrNothing", "Gradual"] = "AllOrNothing"
    min_healthy_percent: int | None = Field(None, ge=1, le=100)


@_spec
class CapacityPolicy(_Spec):
    """What the first level serves before the excess goes to the next: per healthy endpoint, or in all."""

    max_requests_per_second_per_endpoint: int | None = Field(None, ge=1, le=1_000_000)
    max_requests_per_second: int | None = Field(None, ge=1, le=100_000_000)


@_spec
class FallbackRef(_Spec):
    """A backend whose endpoints follow every level of the target's own, as further levels."""

    group: Literal["", "multicluster.x-k8s.io"] = ""
    kind: Literal["Service", "ServiceImport"] = "Service"
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(None, min_length=1, max_length=63)
    port: int | None = Field(None, ge=1, le=65535)


@_spec
class FailoverPolicySpec(_Spec):
    target_refs: tuple[PolicyTargetRef, ...] = Field(min_length=1, max_length=16)
    # v1alpha1's: the clusters after the gateway's own, one level each (``levels`` says it in full).
    preference: tuple[str, ...] = ()
    # v1alpha1's: WeightedSpillover is Envoy's overprovisioning factor 1.4 (``spillover`` says it in full).
    mode: Literal["AllOrNothing", "WeightedSpillover"] | None = None
    levels: tuple[FailoverLevel, ...] | None = Field(None, min_length=1, max_length=16)
    exclude: tuple[ClusterMatch, ...] = Field((), max_length=64)
    max_levels: int | None = Field(None, ge=1, le=16)
    spillover: SpilloverPolicy | None = None
    capacity: CapacityPolicy | None = None
    fallback: tuple[FallbackRef, ...] = Field((), max_length=4)
    health_check: HealthCheckPolicy | None = None
    outlier_detection: OutlierDetectionPolicy | None = None
    retry: RetryPolicy | None = None


@_spec
class FailoverPolicy(_Object):
    """mcgw's own policy: how a ServiceImport, or one HTTPRoute's backends, fail over between clusters."""

    kind: Literal["FailoverPolicy"]
    spec: FailoverPolicySpec


# -- BackendTLSPolicy (gateway.networking.k8s.io/v1) ------------------------------------------------

@_spec
class BackendTLSTargetRef(_Spec):
    group: str = Field(max_length=253)
    kind: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    section_name: str | None = Field(None, max_length=253)


@_spec
class LocalObjectReference(_Spec):
    group: str = Field(max_length=253)
    kind: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)


@_spec
class SubjectAltName(_Spec):
    type: Literal["Hostname", "URI"]
    hostname: str | None = Field(None, max_length=253)
    uri: str | None = Field(None, max_length=253)


@_spec
class BackendTLSValidation(_Spec):
    ca_certificate_refs: tuple[LocalObjectReference, ...] = Field((), max_length=8)
    well_known_ca_certificates: str | None = Field(None, alias="wellKnownCACertificates")
    hostname: str = Field(min_length=1, max_length=253)
    subject_alt_names: tuple[SubjectAltName, ...] = Field((), max_length=5)


@_spec
class BackendTLSPolicySpec(_Spec):
    target_refs: tuple[BackendTLSTargetRef, ...] = Field(min_length=1, max_length=16)
    validation: BackendTLSValidation
    options: dict[str, str] = Field(default_factory=dict)


@_spec
class BackendTLSPolicy(_Object):
    """How the Gateway connects to a backend Service over TLS (Gateway API v1, standard channel)."""

    kind: Literal["BackendTLSPolicy"]
    spec: BackendTLSPolicySpec


# A Kubernetes resource quantity ("100m", "128Mi", "1.5", 2), as resources.requests and limits take them.
Quantity = Annotated[int, Field(ge=0)] | Annotated[
    str, Field(pattern=r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$", max_length=64)]
IntOrPercent = Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=r"^[0-9]{1,3}%$")]


@_spec
class EnvoyResources(_Spec):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


@_spec
class EnvoyServiceSettings(_Spec):
    type: Literal["LoadBalancer", "NodePort", "ClusterIP"] | None = None
    annotations: dict[str, str] | None = None
    external_traffic_policy: Literal["Cluster", "Local"] | None = None


@_spec
class Toleration(_Spec):
    key: str | None = Field(None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


@_spec
class EnvoyAutoscaling(_Spec):
    min_replicas: int | None = Field(None, ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    target_cpu_utilization_percentage: int | None = Field(None, ge=1, le=100,
                                                          alias="targetCPUUtilizationPercentage")


@_spec
class EnvoyDisruptionBudget(_Spec):
    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None


@_spec
class EnvoyAccessLog(_Spec):
    """Each Envoy's access log on its stdout: one line per HTTP request, TCP or TLS connection and UDP session."""

    enabled: bool | None = None
    format: Literal["json", "text"] | None = None
    sampling: float | None = Field(None, ge=0, le=100)  # percent of requests, connections and sessions logged


@_spec
class EnvoyProxySpec(_Spec):
    """How a Gateway's Envoys are run. Every field is optional: what a GatewayClass's EnvoyProxy leaves
    out keeps mcgw's default, what a Gateway's leaves out keeps its class's."""

    image: str | None = Field(None, min_length=1, max_length=512)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    replicas: int | None = Field(None, ge=1, le=1000)
    resources: EnvoyResources | None = None
    service: EnvoyServiceSettings | None = None
    node_selector: dict[str, str] | None = None
    tolerations: tuple[Toleration, ...] | None = Field(None, max_length=32)
    log_level: Literal["trace", "debug", "info", "warning", "error", "critical", "off"] | None = None
    concurrency: int | None = Field(None, ge=1, le=256)
    drain_seconds: int | None = Field(None, ge=0, le=3600)
    bootstrap: dict[str, Any] | None = None  # extra top-level fields of Envoy's bootstrap
    autoscaling: EnvoyAutoscaling | None = None
    pod_disruption_budget: EnvoyDisruptionBudget | None = None
    access_log: EnvoyAccessLog | None = None


@_spec
class EnvoyProxy(_Object):
    """mcgw's Gateway parameters: a GatewayClass's parametersRef gives the defaults, a Gateway's
    ``spec.infrastructure.parametersRef`` overrides them."""

    kind: Literal["EnvoyProxy"]
    spec: EnvoyProxySpec = EnvoyProxySpec()


AnyObject = (GatewayClass | Gateway | HTTPRoute | GRPCRoute | TLSRoute | TCPRoute | UDPRoute | ReferenceGrant
             | Namespace | Secret | Service | ServiceImport | ServiceExport | EndpointSlice | FailoverPolicy
             | EnvoyProxy | ServiceAccount | ConfigMap | Deployment | HorizontalPodAutoscaler | PodDisruptionBudget
             | BackendTLSPolicy)
KubeObject = Annotated[AnyObject, Field(discriminator="kind")]
SUPPORTED_KINDS: tuple[str, ...] = tuple(model.__name__ for model in get_args(AnyObject))


_OBJECT: TypeAdapter[AnyObject] = TypeAdapter(KubeObject)
_RULE: TypeAdapter[RouteRule] = TypeAdapter(RouteRule)
# More rules than the CRD allows (16) are validated one rule per call: a single validation call holds the
# GIL throughout, and one of a route with 1,000 rules x 64 matches took over 100 ms, while the event loop
# (xDS, /healthz) waited. Between calls other threads run.
_RULES_PER_CALL = 16


def _problems(error: ValidationError, prefix: tuple[str | int, ...], skip: int) -> list[str]:
    return [f"{'.'.join(str(part) for part in (*prefix, *issue['loc'][skip:])) or '<object>'}: {issue['msg']}"
            for issue in error.errors()]


def _many_rules(data: dict[str, Any]) -> list[Any] | None:
    spec = data.get("spec")
    rules = spec.get("rules") if isinstance(spec, dict) else None
    return rules if isinstance(rules, list) and len(rules) > _RULES_PER_CALL else None


def _pruned(value: Any) -> Any:
    """``value`` without the mapping keys whose value is null, at any depth, as an API server stores it
    (``field: null`` means "not set"). Copies only the mappings and lists that change, so a manifest without
    nulls (nearly all) is returned as it is."""
    if type(value) is dict:
        out = value
        for key, item in value.items():
            if item is None:
                if out is value:
                    out = dict(value)
                del out[key]
            elif type(item) is dict or type(item) is list:
                new = _pruned(item)
                if new is not item:
                    if out is value:
                        out = dict(value)
                    out[key] = new
        return out
    if type(value) is list:
        items = value
        for index, item in enumerate(value):
            if type(item) is dict or type(item) is list:
                new = _pruned(item)
                if new is not item:
                    if items is value:
                        items = list(value)
                    items[index] = new
        return items
    return value


def parse_object(data: Any, source: str) -> AnyObject:
    """Parse one manifest. ``source`` (file and document) goes into every error message."""
    if not isinstance(data, dict):
        raise ManifestError(source, f"expected a Kubernetes object (a mapping), got {type(data).__name__}")
    try:
        data = _pruned(data)
    except RecursionError:
        raise ManifestError(source, "nested too deeply; refused") from None
    kind = data.get("kind")
    if kind not in SUPPORTED_KINDS:
        raise ManifestError(source, f"unsupported kind {kind!r}; mcgw reads {', '.join(SUPPORTED_KINDS)}")
    name = (data.get("metadata") or {}).get("name", "?") if isinstance(data.get("metadata"), dict) else "?"
    rules = _many_rules(data) if kind == "HTTPRoute" else None
    if rules is None:
        try:
            return _OBJECT.validate_python(data)
        except ValidationError as error:
            raise ManifestError(source, f"{kind} {name!r}: {'; '.join(_problems(error, (), 1))}") from None
    problems: list[str] = []
    parsed: list[RouteRule] = []
    for index, rule in enumerate(rules):
        try:
            parsed.append(_RULE.validate_python(rule))
        except ValidationError as error:
            problems += _problems(error, ("spec", "rules", index), 0)
    try:
        # Validated rules pass through as they are (dataclass instances are not validated again).
        route = _OBJECT.validate_python({**data, "spec": {**data["spec"], "rules": [] if problems else parsed}})
    except ValidationError as error:
        problems = _problems(error, (), 1) + problems
    if problems:
        raise ManifestError(source, f"{kind} {name!r}: {'; '.join(problems)}")
    return route
