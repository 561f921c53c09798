"""A multi-worker cluster as its environment describes it, checked before TensorFlow loads (plain Python).

`cluster_from_environment` reads `TF_CONFIG` (or recognises a Slurm job step) and refuses, in one line, what
TensorFlow would meet with a traceback or a hang: text that is not JSON, a job whose addresses are not a list of
`host:port` (`"worker": "host:2222"`), a task that is not in the cluster, two tasks on one address. `artnet train`
calls it before TensorFlow loads, so that the error is the only line printed; `strategy.make_strategy` calls it
again for the library's callers.

Also here: how long a worker waits for its peers (`PEER_TIMEOUT`), which peers answer on their ports (for the
message when the wait ends without them), and the line each worker logs about what its TensorFlow server exposes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from collections.abc import Mapping

# How long a worker waits for every task of its cluster to start, by default: long enough for a scheduler that
# starts the tasks one after the other, short enough that a task that never comes is noticed the same hour.
PEER_TIMEOUT = 600.0

# The task types artnet's multi-worker training has roles for (the chief writes the workdir; see `is_chief`).
TASK_TYPES = ("chief", "worker")
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})")
SHAPE = '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The tasks of a cluster (job -> addresses) and which of them this process is."""

    jobs: dict[str, list[str]]
    task_type: str
    task_index: int
    source: str  # "TF_CONFIG" or "Slurm": what described it, for messages

    @property
    def task(self) -> str:
        return f"{self.task_type}{self.task_index}"

    @property
    def address(self) -> str:
        return self.jobs[self.task_type][self.task_index]

    @property
    def peers(self) -> dict[str, str]:
        """The other tasks: name (`worker1`) -> address."""
        return {
            f"{job}{index}": address
            for job, addresses in self.jobs.items()
            for index, address in enumerate(addresses)
            if (job, index) != (self.task_type, self.task_index)
        }


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) -> (host, port); ValueError when it is not one."""
    match = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{_short(address)} is not a host:port address")
    return match["host"].strip("[]"), int(match["port"])


def parse_tf_config(text: str) -> Cluster:
    """The cluster that `TF_CONFIG` describes, or ValueError with one line saying what is wrong and its shape."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error.msg} at character {error.pos}); its shape: {SHAPE}") from None
    if not isinstance(value, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {_short(value)}; its shape: {SHAPE}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG has no `cluster` object (got {_short(cluster)}); its shape: {SHAPE}")
    for job, addresses in cluster.items():
        if job not in TASK_TYPES:
            raise ValueError(f"TF_CONFIG cluster has a {job!r} job: artnet's clusters have chief and worker tasks only")
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(
                f'TF_CONFIG cluster.{job} must be a list of "host:port" addresses, got {_short(addresses)} '
                f'(e.g. ["{addresses if isinstance(addresses, str) else "host1:2222"}"])'
            )
        for address in addresses:
            try:
                split_address(address)
            except ValueError as error:
                raise ValueError(f"TF_CONFIG cluster.{job}: {error}") from None
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG cluster.chief lists {len(cluster['chief'])} addresses: a cluster has one chief")
    every = [address for addresses in cluster.values() for address in addresses]
    doubled = sorted({address for address in every if every.count(address) > 1})
    if doubled:
        raise ValueError(f"TF_CONFIG cluster gives two tasks the address {doubled[0]}: each task needs its own port")
    if not isinstance(task, dict):
        raise ValueError(f'TF_CONFIG has no `task` object (got {_short(task)}): e.g. {{"type": "worker", "index": 0}}')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG task.type {_short(kind)} is not a job of its cluster ({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise ValueError(
            f"TF_CONFIG task.index must be an integer from 0 to {len(cluster[kind]) - 1} (its cluster.{kind} has "
            f"{len(cluster[kind])} address(es)), got {_short(index)}"
        )
    rpc_layer = value.get("rpc_layer", "grpc")
    if rpc_layer != "grpc":
        raise ValueError(f"TF_CONFIG rpc_layer {_short(rpc_layer)}: this TensorFlow speaks grpc only")
    return Cluster({job: list(addresses) for job, addresses in cluster.items()}, kind, index, "TF_CONFIG")


def cluster_from_environment(environ: Mapping[str, str]) -> Cluster | None:
    """The cluster of `TF_CONFIG` when it is set (checked: ValueError), None for a Slurm job step (Slurm's own
    variables describe it; TensorFlow's Slurm resolver reads them), else ValueError saying what to set."""
    if "TF_CONFIG" in environ:
        return parse_tf_config(environ["TF_CONFIG"])
    if "SLURM_PROCID" in environ and "SLURM_STEP_NODELIST" in environ:
        return None
    raise ValueError(
        "strategy multi_worker needs its cluster: TF_CONFIG describing the cluster and this worker's task, or a "
        "Slurm job step (srun) with one task per node"
    )


def answering(address: str, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection at `address` (a peer whose TensorFlow server has started)."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_peers_message(cluster: Cluster, timeout: float) -> str:
    """What to say when the peers did not all arrive within `timeout` seconds: who never answered, what to do."""
    silent = [f"{name} ({address})" for name, address in cluster.peers.items() if not answering(address)]
    who = (
        f"no answer from {', '.join(silent)}"
        if silent
        else "every peer answers on its port but not all joined (a peer started with another cluster or task?)"
    )
    return (
        f"[{cluster.task}] the cluster did not gather within {timeout:g} s: {who}. Start every task of "
        f"{cluster.source} (each with its own task), or give them longer with --peer-timeout"
    )


def exposure_note(cluster: Cluster, tensorflow_version: str) -> str:
    """The line each worker logs at start: what its TensorFlow server listens on, which TF_CONFIG cannot narrow."""
    host, port = split_address(cluster.address)
    return (
        f"[{cluster.task}] TensorFlow {tensorflow_version} listens on port {port} of every network interface, not "
        f"only on {host} as {cluster.source} names it, and authenticates no peer (it has no setting for either): "
        f"let only the cluster's hosts reach port {port} (docs/multi-worker.md)"
    )
