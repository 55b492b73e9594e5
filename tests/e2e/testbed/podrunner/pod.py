"""One pod on the runner's node, from sandbox to deletion, as a kubelet runs it.

Sandbox (network namespace, address, /etc/hosts, shared /dev/shm), volumes, init containers in order,
then every container under its own supervisor: image, env and mounts resolved, process started, probes
run, exits restarted by ``restartPolicy`` with the kubelet's back-off. A status writer patches
``pods/status`` whenever what the pod would report changes. On ``deletionTimestamp`` each running
container has its preStop hook run, then SIGTERM, and SIGKILL at the end of the grace period
(``lifecycle.py``); meanwhile nothing restarts, readiness probes go on and liveness and startup probes
pass, as the kubelet's do. Then the sandbox goes, and the pod is deleted with grace 0. When the runner
itself stops, hooks are skipped: SIGTERM at once, SIGKILL after the runner's shutdown grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .. import network
from . import netns
from .container import ContainerProcess, StartError
from .images import Image, find_image
from .kubeapi import ApiError, KubeApi
from .lifecycle import MIN_GRACE, Deadline, HookError, pre_stop, run_hook, stop_container
from .logs import LogSource
from .probes import Probe, ProbeError, Tracker, check, parse_probe
from .spec import (
    ConfigError,
    Mount,
    Objects,
    PodAddresses,
    image_env,
    launch_plan,
    referenced_objects,
    resolve_env,
    service_env,
)
from .state import ContainerRecord, Running, Terminated, Waiting, rfc3339, terminated_from_exit
from .status import PodView, build_status, is_terminal
from .volumes import (
    EmptyDir,
    FileSet,
    HostPath,
    TokenRequest,
    prepare_host_path,
    read_only,
    resolve_volume,
    token_requests,
    write_file_set,
)

Json = dict[str, Any]
BACKOFF_RESET_SECONDS = 600


@dataclass
class Settings:
    """What every pod of the runner shares."""

    api: KubeApi
    node: str
    cluster: str
    host_ip: str
    bridge: str
    prefixlen: int
    pool: netns.AddressPool
    state_dir: Path
    images: list[Image]
    owner: int
    root_ca: bytes
    api_host: str
    api_port: int
    allocatable: dict[str, str]
    probe_session: aiohttp.ClientSession
    crash_backoff: float = 10.0
    max_backoff: float = 300.0
    pull_backoff: float = 5.0
    volume_resync: float = 10.0
    now: Callable[[], float] = field(default=time.time)
    # Other member clusters' API servers (host, port), relayed into every pod like its own (netns.py).
    peer_apis: tuple[tuple[str, int], ...] = ()


class _Retry(Exception):
    """The attempt set a Waiting state; try again after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


def grace_seconds(pod: Json) -> float:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    if meta.get("deletionGracePeriodSeconds") is not None:
        return float(meta["deletionGracePeriodSeconds"])
    value = spec.get("terminationGracePeriodSeconds")
    return 30.0 if value is None else float(value)


def deletion_deadline(pod: Json, wall: float, monotonic: float) -> float:
    """When (on the ``monotonic`` clock) a deleting pod's containers get SIGKILL at the latest: the grace
    period from now, but never past ``metadata.deletionTimestamp`` (the deletion plus its grace period; it
    has seconds precision, so one second is added), so a deletion seen late still ends on time."""
    at = monotonic + grace_seconds(pod)
    stamp = pod.get("metadata", {}).get("deletionTimestamp")
    if stamp:
        with contextlib.suppress(ValueError):
            ends = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() + 1
            at = min(at, monotonic + ends - wall)
    return at


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def hosts_file(pod_ip: str, hostname: str) -> str:
    return ("# Kubernetes-managed hosts file (mcgw test bed pod runner).\n127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n" f"{pod_ip}\t{hostname}\n")


class PodWorker:
    def __init__(self, settings: Settings, pod: Json) -> None:
        self.s = settings
        self.pod = pod
        meta = pod["metadata"]
        self.uid, self.namespace, self.name = meta["uid"], meta.get("namespace", "default"), meta["name"]
        self.dir = settings.state_dir / "pods" / self.uid
        self.logs_dir = settings.state_dir / "logs" / f"{self.namespace}_{self.name}_{self.uid}"
        spec = pod.get("spec", {})
        self.records = {c["name"]: ContainerRecord(c["name"], c.get("image", ""), Waiting("ContainerCreating"))
                        for c in spec.get("containers", [])}
        self.init_records = {c["name"]: ContainerRecord(c["name"], c.get("image", ""), Waiting("PodInitializing"))
                             for c in spec.get("initContainers", []) or []}
        self.instances: dict[str, ContainerProcess] = {}
        self.pod_ip = ""
        self.netns: str | None = None
        self.sandbox_ready = False
        self.initialized = not self.init_records
        self.start_time = rfc3339(settings.now())
        self.volume_paths: dict[str, str] = {}
        self.read_only_volumes: list[str] = []
        self._tokens: dict[tuple[str, int], tuple[str, float]] = {}
        self._relays: list[netns.ApiRelay] = []
        self._dirty = asyncio.Event()
        self._deleting = asyncio.Event()
        self._sent: Json | None = None
        self._gone = False
        self._shutdown_grace: float | None = None
        self._deadline: Deadline | None = None
        self.terminating = False
        self._background: set[asyncio.Task[Any]] = set()
        self.task: asyncio.Task[None] | None = None

    # Events from the runner.

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")
        return self.task

    def update(self, pod: Json) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            # The grace period runs from the first sight of the deletion; a later, shorter one cuts it.
            at = deletion_deadline(pod, self.s.now(), time.monotonic())
            if self._deadline is None:
                self._deadline = Deadline(at)
            else:
                self._deadline.shorten(at)
            self._deleting.set()

    def vanished(self) -> None:
        """The pod is gone from the API (force-deleted): stop without hooks or writing to it."""
        self._gone = True
        self._cut(MIN_GRACE)
        self._deleting.set()

    async def shutdown(self, grace: float) -> None:
        """The runner stops: end the containers within ``grace`` seconds, without hooks (nothing is left
        to drain for when the whole bed goes), and leave the API object alone."""
        self._shutdown_grace = grace
        self._cut(grace)
        self._deleting.set()
        if self.task is not None:
            await asyncio.shield(self.task)

    def _cut(self, grace: float) -> None:
        """A termination in progress ends within ``grace`` seconds, its hooks at once."""
        if self._deadline is not None:
            self._deadline.shorten(time.monotonic() + grace, hooks=False, floor=0.0)

    def dirty(self) -> None:
        self._dirty.set()

    # The pod's life.

    async def _run(self) -> None:
        writer = asyncio.create_task(self._status_writer())
        life = asyncio.create_task(self._lifecycle())
        deleting = asyncio.create_task(self._deleting.wait())
        try:
            await asyncio.wait({life, deleting}, return_when=asyncio.FIRST_COMPLETED)
            if not self._deleting.is_set():
                if not life.cancelled() and life.exception() is not None:
                    error = life.exception()
                    print(f"podrunner: {self.namespace}/{self.name} failed: {type(error).__name__}: {error}",
                          flush=True)
                await self._deleting.wait()
        finally:
            deleting.cancel()
            try:
                await self._terminate(life)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

    async def _lifecycle(self) -> None:
        self.dirty()
        await self._until_ok(self._setup_sandbox, "sandbox")
        await self._until_ok(self._prepare_volumes, "volumes")
        refresher = asyncio.create_task(self._refresh_volumes())
        try:
            spec = self.pod.get("spec", {})
            policy = spec.get("restartPolicy", "Always")
            for container in spec.get("initContainers", []) or []:
                if not await self._run_init(container, policy):
                    self.dirty()
                    if not self.terminating:  # else termination tears it down once every hook is done
                        await self._teardown_sandbox()
                    return
            self.initialized = True
            for record in self.records.values():
                if isinstance(record.state, Waiting) and record.state.reason == "PodInitializing":
                    record.state = Waiting("ContainerCreating")
            self.dirty()
            await asyncio.gather(*(self._supervise(c, policy) for c in spec.get("containers", [])))
            # Every container is done for good: the pod is terminal, its sandbox (and address) released.
            self.dirty()
            if not self.terminating:
                await self._teardown_sandbox()
        finally:
            refresher.cancel()

    async def _until_ok(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        delay = 1.0
        while True:
            try:
                await step()
                return
            except ConfigError as error:
                self._all_waiting(error.reason, error.message)
            except (ApiError, OSError, RuntimeError, aiohttp.ClientError) as error:
                self._all_waiting("ContainerCreating", f"{what}: {error}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _all_waiting(self, reason: str, message: str) -> None:
        for record in [*self.init_records.values(), *self.records.values()]:
            if isinstance(record.state, Waiting):
                record.state = Waiting(reason, message)
        self.dirty()

    # Sandbox.

    async def _setup_sandbox(self) -> None:
        if self.sandbox_ready:
            return
        spec = self.pod.get("spec", {})
        if spec.get("hostNetwork"):
            self.pod_ip = self.s.host_ip
        else:
            preferred = (self.pod.get("status") or {}).get("podIP")
            address = self.s.pool.allocate(preferred)
            name = network.pod_netns_name(self.s.owner, self.s.cluster, self.namespace, self.name, self.uid)
            try:
                await netns.create(name, self.s.bridge, address, self.s.prefixlen)
            except BaseException:
                self.s.pool.release(address)
                raise
            self.pod_ip, self.netns = address, name
            for host, port in ((self.s.api_host, self.s.api_port), *self.s.peer_apis):
                relay = netns.ApiRelay(host, port)
                with contextlib.suppress(OSError):
                    await relay.start(name)
                    self._relays.append(relay)
        self.dir.mkdir(parents=True, exist_ok=True)
        hostname = str(spec.get("hostname") or self.name)[:63]
        (self.dir / "etc-hosts").write_text(hosts_file(self.pod_ip, hostname))
        shm = self.dir / "shm"
        shm.mkdir(exist_ok=True)
        shm.chmod(0o1777)
        self.sandbox_ready = True
        self.dirty()

    async def _teardown_sandbox(self) -> None:
        for relay in self._relays:
            await relay.stop()
        self._relays = []
        if self.netns is not None:
            await netns.delete(self.netns, self.pod_ip)
            self.s.pool.release(self.pod_ip)
            self.netns = None
        self.sandbox_ready = False

    # Volumes.

    async def _fetch_objects(self) -> Objects:
        config_maps, secrets = referenced_objects(self.pod)
        base = f"/api/v1/namespaces/{self.namespace}"
        found_maps = {name: await self.s.api.get_or_none(f"{base}/configmaps/{name}") for name in config_maps if name}
        found_secrets = {name: await self.s.api.get_or_none(f"{base}/secrets/{name}") for name in secrets if name}
        return Objects(found_maps, found_secrets)

    async def _token(self, request: TokenRequest) -> str:
        key = (request.audience, request.expiration_seconds)
        cached = self._tokens.get(key)
        if cached and self.s.now() < cached[1]:
            return cached[0]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [request.audience] if request.audience else [],
                         "expirationSeconds": request.expiration_seconds,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}}}
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{request.service_account}/token"
        try:
            answer = await self.s.api.post(path, body)
        except ApiError as error:
            if error.status == 404:
                raise ConfigError(f'serviceaccount "{request.service_account}" not found', "ContainerCreating") \
                    from error
            raise
        # Refreshed at 80% of its life, as the kubelet does.
        self._tokens[key] = (answer["status"]["token"], self.s.now() + 0.8 * request.expiration_seconds)
        return str(answer["status"]["token"])

    async def _prepare_volumes(self) -> None:
        objects = await self._fetch_objects()
        tokens = {(r.audience, r.expiration_seconds): await self._token(r) for r in token_requests(self.pod)}
        addresses = PodAddresses(self.pod_ip, self.s.host_ip)
        paths, read_only_names = {}, []
        for volume in self.pod.get("spec", {}).get("volumes", []) or []:
            content = resolve_volume(volume, self.pod, objects, addresses, tokens, self.s.root_ca, self.s.allocatable)
            directory = self.dir / "volumes" / volume["name"]
            if isinstance(content, FileSet):
                await asyncio.to_thread(write_file_set, directory, content.files)
            elif isinstance(content, EmptyDir):
                directory.mkdir(parents=True, exist_ok=True)
                directory.chmod(0o777)
            elif isinstance(content, HostPath):
                prepare_host_path(content)
                directory = Path(content.path)
            paths[volume["name"]] = str(directory)
            if read_only(volume):
                read_only_names.append(volume["name"])
        self.volume_paths, self.read_only_volumes = paths, read_only_names

    async def _refresh_volumes(self) -> None:
        """ConfigMap, Secret and token changes reach running containers, as the kubelet's resync does."""
        while True:
            await asyncio.sleep(self.s.volume_resync)
            with contextlib.suppress(ConfigError, ApiError, OSError, aiohttp.ClientError, TimeoutError):
                await self._prepare_volumes()

    # Containers.

    def _container_spec(self, name: str) -> Json:
        spec = self.pod.get("spec", {})
        for container in [*(spec.get("initContainers") or []), *spec.get("containers", [])]:
            if container["name"] == name:
                return dict(container)
        raise KeyError(name)

    async def _plan_and_start(self, container: Json, record: ContainerRecord, pull_delay: float) -> ContainerProcess:
        """Resolve the image, env and mounts and start one instance; raises _Retry after a Waiting state."""
        image = find_image(self.s.images, record.image)
        if image is None:
            record.state = Waiting("ErrImagePull", f'Failed to pull image "{record.image}": the test bed has no '
                                                   "local executable for this image")
            self.dirty()
            await asyncio.sleep(pull_delay)
            record.state = Waiting("ImagePullBackOff", f'Back-off pulling image "{record.image}"')
            self.dirty()
            raise _Retry(pull_delay)
        try:
            objects = await self._fetch_objects()
            base = {**image_env(image, self.pod), **service_env("127.0.0.1", self.s.api_port)}
            env = resolve_env(self.pod, container, objects, PodAddresses(self.pod_ip, self.s.host_ip), base,
                              self.s.allocatable)
            targets = {m.get("mountPath") for m in container.get("volumeMounts", []) or []}
            extra = [m for m in (Mount(str(self.dir / "etc-hosts"), "/etc/hosts"),
                                 Mount(str(self.dir / "shm"), "/dev/shm")) if m.target not in targets]
            plan = launch_plan(self.pod, container, image, env, self.volume_paths, self.read_only_volumes, extra)
        except ConfigError as error:
            record.state = Waiting(error.reason, error.message)
            self.dirty()
            raise _Retry(2.0) from error
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as error:
            record.state = Waiting("CreateContainerConfigError", str(error))
            self.dirty()
            raise _Retry(2.0) from error
        instance = ContainerProcess(record.name, self._log_path(record.name, record.restart_count))
        try:
            await instance.start(plan, netns.netns_path(self.netns) if self.netns else None,
                                 self.dir / "containers" / record.name)
        except OSError as error:  # the runtime's own failure (a missing nsenter, say) is the container's too
            raise StartError(f"{type(error).__name__}: {error}") from error
        return instance

    async def _attempt(self, container: Json, record: ContainerRecord, pull_delay: float,
                       probes: bool) -> Terminated:
        """One instance from start to exit."""
        started_at = rfc3339(self.s.now())
        try:
            instance = await self._plan_and_start(container, record, pull_delay)
        except StartError as error:
            return Terminated(128, "StartError", started_at, rfc3339(self.s.now()), None, str(error))
        self.instances[record.name] = instance
        record.state = Running(rfc3339(self.s.now()))
        record.container_id = f"mcgw://{self.uid[:8]}-{record.name}-{record.restart_count}-{instance.pid}"
        started_at = record.state.started_at
        record.ready = record.started = False
        self.dirty()
        prober = asyncio.create_task(self._probe(container, record, instance)) if probes else None
        try:
            code = await instance.wait()
        finally:
            if prober is not None:
                prober.cancel()
        self.instances.pop(record.name, None)
        record.ready = record.started = False
        return terminated_from_exit(code, started_at, rfc3339(self.s.now()))

    async def _supervise(self, container: Json, policy: str) -> None:
        record = self.records[container["name"]]
        pull_delay, crashes = self.s.pull_backoff, 0
        while not self.terminating:
            try:
                began = time.monotonic()
                result = await self._attempt(container, record, pull_delay, probes=True)
            except _Retry as retry:
                await asyncio.sleep(retry.delay)
                pull_delay = min(pull_delay * 2, self.s.max_backoff)
                continue
            record.state = result
            self.dirty()
            if self.terminating or not should_restart(policy, result.exit_code):
                return
            if time.monotonic() - began > BACKOFF_RESET_SECONDS:
                crashes = 0
            # The first restart is immediate; then 10 s, 20 s, ... up to five minutes.
            delay = 0.0 if crashes == 0 else min(self.s.crash_backoff * 2 ** (crashes - 1), self.s.max_backoff)
            crashes += 1
            record.last_terminated = result
            if delay:
                record.state = Waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container="
                                                           f"{record.name} pod={self.name}_{self.namespace}"
                                                           f"({self.uid})")
                self.dirty()
                await asyncio.sleep(delay)
            record.restart_count += 1

    async def _run_init(self, container: Json, policy: str) -> bool:
        """Run an init container until it succeeds; False when it failed and may not be retried."""
        record = self.init_records[container["name"]]
        pull_delay, crashes = self.s.pull_backoff, 0
        while not self.terminating:
            try:
                result = await self._attempt(container, record, pull_delay, probes=False)
            except _Retry as retry:
                await asyncio.sleep(retry.delay)
                pull_delay = min(pull_delay * 2, self.s.max_backoff)
                continue
            record.state = result
            self.dirty()
            if result.exit_code == 0 and not self.terminating:
                return True
            if policy == "Never" or self.terminating:
                return False
            delay = min(self.s.crash_backoff * 2 ** crashes, self.s.max_backoff) if crashes else 0.0
            crashes += 1
            record.last_terminated = result
            if delay:
                record.state = Waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed init "
                                                           f"container={record.name}")
                self.dirty()
                await asyncio.sleep(delay)
            record.restart_count += 1
        return False

    # Probes.

    def _parse(self, container: Json, key: str) -> Probe | ProbeError | None:
        spec = container.get(key)
        if not spec:
            return None
        try:
            return parse_probe(spec, container)
        except (ProbeError, KeyError, ValueError) as error:
            return ProbeError(str(error))

    async def _check(self, probe: Probe | ProbeError, instance: ContainerProcess) -> bool:
        if isinstance(probe, ProbeError):
            return False
        ok, _ = await check(probe.action, self.pod_ip, probe.timeout, self.s.probe_session, instance.exec)
        return ok

    async def _probe(self, container: Json, record: ContainerRecord, instance: ContainerProcess) -> None:
        startup = self._parse(container, "startupProbe")
        readiness = self._parse(container, "readinessProbe")
        liveness = self._parse(container, "livenessProbe")
        began = time.monotonic()
        if startup is not None and not await self._startup(startup, instance, began):
            await self._kill(instance, "startup")
            return
        record.started = True
        if readiness is None:
            record.ready = True
        self.dirty()
        loops = []
        if readiness is not None:
            loops.append(self._readiness(readiness, record, instance, began))
        if liveness is not None:
            loops.append(self._liveness(liveness, instance, began))
        await asyncio.gather(*loops)

    @staticmethod
    def _timing(probe: Probe | ProbeError) -> tuple[float, float, int, int]:
        if isinstance(probe, ProbeError):
            return 0.0, 10.0, 1, 3
        return probe.initial_delay, probe.period, probe.success_threshold, probe.failure_threshold

    async def _startup(self, probe: Probe | ProbeError, instance: ContainerProcess, began: float) -> bool:
        """Check until the startup probe succeeds (True) or fails ``failureThreshold`` times in a row (False)."""
        delay, period, successes, failures = self._timing(probe)
        tracker = Tracker(False, successes, failures)
        await asyncio.sleep(max(0.0, began + delay - time.monotonic()))
        misses = 0
        while True:
            if self.terminating:  # a terminating pod's startup probes pass, as the kubelet's do
                return True
            ok = await self._check(probe, instance)
            if tracker.observe(ok):
                return True
            misses = 0 if ok else misses + 1
            if misses >= failures:
                return False
            await asyncio.sleep(period)

    async def _readiness(self, probe: Probe | ProbeError, record: ContainerRecord, instance: ContainerProcess,
                         began: float) -> None:
        delay, period, successes, failures = self._timing(probe)
        tracker = Tracker(False, successes, failures)
        await asyncio.sleep(max(0.0, began + delay - time.monotonic()))
        while True:
            if tracker.observe(await self._check(probe, instance)):
                record.ready = tracker.result
                self.dirty()
            await asyncio.sleep(period)

    async def _liveness(self, probe: Probe | ProbeError, instance: ContainerProcess, began: float) -> None:
        delay, period, successes, failures = self._timing(probe)
        tracker = Tracker(True, successes, failures)
        await asyncio.sleep(max(0.0, began + delay - time.monotonic()))
        while True:
            # A terminating pod's liveness probes pass: its hooks and SIGTERM stop it, not a restart.
            if not self.terminating and tracker.observe(await self._check(probe, instance)) and not tracker.result:
                await self._kill(instance, "liveness")
                return
            await asyncio.sleep(period)

    async def _kill(self, instance: ContainerProcess, why: str) -> None:
        print(f"podrunner: {self.namespace}/{self.name}/{instance.name}: {why} probe failed, restarting", flush=True)
        await self._stop(instance, Deadline.after(grace_seconds(self.pod)))

    # Stopping a container.

    async def _stop(self, instance: ContainerProcess, deadline: Deadline) -> int:
        """preStop hook, SIGTERM, SIGKILL by ``deadline``, as the kubelet kills a container."""
        hook = pre_stop(self._container_spec(instance.name))

        async def run(seconds: float) -> None:
            if isinstance(hook, HookError):
                raise hook
            assert hook is not None
            await run_hook(hook, instance, self.pod_ip, self.s.probe_session, seconds)

        def failed(why: str) -> None:
            print(f"podrunner: {self.namespace}/{self.name}/{instance.name}: PreStopHook failed: {why}", flush=True)
            self._spawn(self._event(instance.name, "FailedPreStopHook", "PreStopHook failed"))

        return await stop_container(instance, deadline, run if hook is not None else None, failed)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _event(self, container: str, reason: str, message: str) -> None:
        """A Warning Event on the pod, as the kubelet records it (the message says no more, so that what the
        hook printed, Secrets maybe, stays on the node)."""
        now = self.s.now()
        body = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": f"{self.name}."},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": self.namespace, "name": self.name,
                                   "uid": self.uid, "fieldPath": f"spec.containers{{{container}}}"},
                "reason": reason, "message": message, "type": "Warning", "count": 1,
                "source": {"component": "kubelet", "host": self.s.node},
                "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now), "eventTime": None,
                "reportingComponent": "kubelet", "reportingInstance": self.s.node}
        with contextlib.suppress(ApiError, OSError, aiohttp.ClientError, TimeoutError):
            await self.s.api.post(f"/api/v1/namespaces/{self.namespace}/events", body)

    # Status.

    def view(self) -> PodView:
        order = [c["name"] for c in self.pod.get("spec", {}).get("containers", [])]
        init_order = [c["name"] for c in self.pod.get("spec", {}).get("initContainers", []) or []]
        return PodView(self.s.host_ip, self.pod_ip, self.start_time, self.sandbox_ready, self.initialized,
                       [self.init_records[n] for n in init_order], [self.records[n] for n in order],
                       rfc3339(self.s.now()), self.terminating and self._shutdown_grace is None)

    def phase(self) -> str:
        return str(build_status(self.pod, self.view())["phase"])

    async def _write_status(self) -> None:
        status = build_status(self.pod, self.view())
        if status == self._sent:
            return
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        answer = await self.s.api.patch(path, {"metadata": {"uid": self.uid}, "status": status})
        self._sent = status
        if answer and answer.get("metadata", {}).get("uid") == self.uid:
            self.pod = {**self.pod, "status": answer.get("status", {})}

    async def _status_writer(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.02)  # one patch for a burst of changes
            self._dirty.clear()
            if self._gone:
                continue
            try:
                await self._write_status()
            except ApiError as error:
                if error.status in (404, 409):
                    continue
                await asyncio.sleep(1)
                self._dirty.set()
            except (OSError, aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(1)
                self._dirty.set()

    # Termination.

    async def _terminate(self, life: asyncio.Task[None]) -> None:
        deadline = self._deadline
        self.terminating = True  # nothing restarts from here on
        self.dirty()
        if deadline is not None and self._shutdown_grace is None and not self._gone:
            # Deleted through the API: every running container's hook, SIGTERM and SIGKILL, side by side.
            # The supervisors record each exit; the pod's readiness is still probed meanwhile.
            await asyncio.gather(*(self._stop(i, deadline) for i in list(self.instances.values())))
        life.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await life
        # What still runs: every container when the runner stops or the pod vanished, else one that was
        # starting as the deletion came.
        grace = grace_seconds(self.pod)
        if self._shutdown_grace is not None:
            grace = min(grace, self._shutdown_grace)
        elif self._gone:
            grace = min(grace, MIN_GRACE)
        elif deadline is not None:
            grace = max(deadline.remaining(), MIN_GRACE)
        instances = dict(self.instances)
        codes = await asyncio.gather(*(i.stop(grace) for i in instances.values()))
        now = rfc3339(self.s.now())
        for (name, _), code in zip(instances.items(), codes, strict=True):
            record = self.records.get(name) or self.init_records[name]
            started = record.state.started_at if isinstance(record.state, Running) else now
            record.state = terminated_from_exit(code, started, now)
            record.ready = record.started = False
        self.instances.clear()
        with contextlib.suppress(Exception):
            await self._teardown_sandbox()
        if self._shutdown_grace is None and not self._gone:
            with contextlib.suppress(ApiError, OSError, aiohttp.ClientError, TimeoutError):
                await self._write_status()
            path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
            with contextlib.suppress(ApiError, OSError, aiohttp.ClientError, TimeoutError):
                await self.s.api.delete(path, {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                               "preconditions": {"uid": self.uid}})
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.logs_dir, ignore_errors=True)

    # Logs.

    def _log_path(self, container: str, restart: int) -> Path:
        return self.logs_dir / container / f"{restart}.log"

    def log_source(self, container: str, previous: bool) -> LogSource | str:
        record = self.records.get(container) or self.init_records.get(container)
        if record is None:
            return f'container "{container}" in pod "{self.name}" is not valid'
        restart = record.restart_count - (1 if previous else 0)
        if restart < 0:
            return f'previous terminated container "{container}" in pod "{self.name}" not found'
        path = self._log_path(container, restart)
        if not path.exists():
            return f'container "{container}" in pod "{self.name}" is waiting to start'

        def running() -> bool:
            instance = self.instances.get(container)
            return not previous and instance is not None and instance.running()

        return LogSource(path, running)

    def terminal(self) -> bool:
        return is_terminal(self.phase())
