"""The run's Ray: joined by address, or started for the run (by `ray_keeper`) and stopped at its end.

Also what the pre-flight proves before any agent starts: that every node of
the cluster sees the team's storage folder, and where each child may run.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from supervisor.errors import SupervisorError

if TYPE_CHECKING:
    from supervisor.config import TeamConfig

BOOT_TIMEOUT = 60.0  # seconds a local Ray may take to come up
STOP_TIMEOUT = 10.0  # seconds the keeper may take to stop it
PROBE_TIMEOUT = 60.0  # seconds every node has to write its probe file
# Frames are small (inlined in Ray's calls): the object store is not used, and by default it would take
# 30% of the machine's memory in /dev/shm.
OBJECT_STORE_BYTES = 100 * 1024 * 1024
MAX_TEMP_DIR = 40  # characters: Ray's socket paths below it must fit the 107 of a Unix socket's name
KEEPER_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
               "from supervisor.runtime.ray_keeper import main; sys.exit(main(sys.argv[2:]))")
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


class _Keeper:
    """The local Ray's keeper process: its pid, and the pipe whose end-of-file stops it."""

    def __init__(self, pid: int, pipe: int, address: str) -> None:
        self.pid, self.pipe, self.address = pid, pipe, address


_keeper: Optional[_Keeper] = None


def local_ray_pids() -> set[int]:
    """Our own children that are the run's local Ray (its keeper): never swept as orphans."""
    return {_keeper.pid} if _keeper is not None else set()


def temp_dir_for(storage: Path) -> Path:
    """`<storage>/ray`, when short enough for Ray's sockets; else a private folder under the system's temp."""
    wanted = Path(os.path.abspath(storage)) / "ray"
    if len(str(wanted)) <= MAX_TEMP_DIR:
        wanted.mkdir(mode=0o700, exist_ok=True)
        return wanted
    return Path(tempfile.mkdtemp(prefix="ags-ray-"))


def connect(config: "TeamConfig") -> tuple[Any, str]:
    """Join the config's cluster, or start a local Ray for this run; Ray, and the address joined.

    Ray is imported only here, after its environment is set: it reads its token once.
    """
    global _keeper
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    address = config.ray.address if config.ray is not None else None
    if address is None:
        # A token of the run's own, in the environment of our processes only: no other user joins this Ray,
        # and nothing is written to ~/.ray.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        _keeper = _start_keeper(config)
        address = _keeper.address
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True,
                 namespace=f"agent-supervisor-{config.team}")
    except Exception as exc:  # noqa: BLE001 - Ray's own errors, said in one line
        disconnect(ray)
        raise SupervisorError(f"ray: cannot connect to {address}: {one_line(exc)}", 3) from None
    return ray, address


def disconnect(ray: Any, leaving: bool = False) -> None:
    """Leave the cluster as it was found; a local Ray is stopped, all of it.

    `leaving`: this process ends in a moment (the CLI, once its run is over). Then nothing is waited for:
    the process's exit closes its connection (the cluster ends its actors) and the keeper's pipe (the
    keeper stops the local Ray, in its own session, while the terminal is already back). Waiting took
    0.3 s for `ray.shutdown()` and 1.1 s for the keeper, on every stop.
    """
    global _keeper
    if leaving and ray is not None:
        import atexit

        from ray._private.worker import shutdown

        atexit.unregister(shutdown)  # its hook would make the same wait at exit
        return
    try:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - leaving anyway
        pass
    keeper, _keeper = _keeper, None
    if keeper is not None:
        try:
            os.close(keeper.pipe)  # end-of-file: the keeper stops every Ray process, then exits
        except OSError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(keeper.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.05)


def _start_keeper(config: "TeamConfig") -> _Keeper:
    temp_dir = temp_dir_for(config.storage)
    port = _free_port()
    read_end, write_end = os.pipe()
    # -P and our own import path: a file in the current folder named like a module never runs instead of it.
    argv = [sys.executable, "-P", "-c", KEEPER_BOOT, json.dumps([p for p in sys.path if p]),
            f"--port={port}", f"--temp-dir={temp_dir}",
            "--include-dashboard=false", "--include-log-monitor=false", "--disable-usage-stats", "--log-style=record",
            "--log-color=false",
            f"--object-store-memory={OBJECT_STORE_BYTES}", f"--num-cpus={os.cpu_count() or 1}"]
    env = {**os.environ, **QUIET}
    try:
        pid = os.posix_spawn(sys.executable, argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)],
                             setsid=True)
    finally:
        os.close(read_end)
    keeper = _Keeper(pid, write_end, f"127.0.0.1:{port}")
    deadline = time.monotonic() + BOOT_TIMEOUT
    while not _listening(port):
        if time.monotonic() > deadline or _exited(pid):
            os.close(write_end)
            raise SupervisorError(f"ray: the local Ray did not start within {BOOT_TIMEOUT:g}s "
                                  f"(its logs: {temp_dir})", 3)
        time.sleep(0.1)
    return keeper


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _exited(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return bool(done)


def one_line(exc: BaseException) -> str:
    """A Ray error as one line of at most 300 characters, its kind first (Ray's own run over many lines)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:300] + "..."


# ---- where each child runs --------------------------------------------------------------------


def actor_options(ray: Any, config: "TeamConfig", name: str) -> dict[str, Any]:
    """Ray's options for child `name` (an agent or a group): its placement, and no restarts of Ray's own."""
    placement = config.ray_placement(name)
    options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "num_cpus": placement.num_cpus}
    if placement.num_gpus:
        options["num_gpus"] = placement.num_gpus
    if placement.resources:
        options["resources"] = dict(placement.resources)
    if placement.node is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id(ray, placement.node), soft=False)
    else:
        options["scheduling_strategy"] = "SPREAD"
    return options


def live_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's nodes that are alive now, as Ray describes them."""
    return [node for node in ray.nodes() if node.get("Alive")]


def node_id(ray: Any, wanted: str) -> str:
    """A node named by its id or its IP address, among the live nodes; one line if none matches."""
    for node in live_nodes(ray):
        if wanted in (node.get("NodeID"), node.get("NodeManagerAddress"), node.get("NodeName")):
            return str(node["NodeID"])
    raise SupervisorError(f"ray: no live node {wanted!r} in the cluster", 3)


def probe_storage(ray: Any, storage: Path) -> int:
    """Every live node writes a probe file into `storage`, which must come back here; else exit 3 naming the node.

    Returns how many nodes proved it.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from supervisor.runtime.ray_host import probe_storage as write_probe

    token = secrets.token_hex(8)
    task = ray.remote(write_probe)
    nodes = live_nodes(ray)
    refs = {str(n["NodeID"]): task.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id=n["NodeID"], soft=False)).remote(os.path.abspath(storage), token) for n in nodes}
    names = {str(n["NodeID"]): str(n.get("NodeManagerAddress") or "") for n in nodes}
    for node, ref in refs.items():
        where = f"{node[:12]} ({names[node]})" if names[node] else node[:12]
        try:
            answer = ray.get(ref, timeout=PROBE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            raise SupervisorError(f"ray: node {where} could not write to storage {storage}: {one_line(exc)}", 3) from None
        if answer.get("error"):
            raise SupervisorError(f"ray: node {where} cannot write to storage {storage}: {answer['error']}", 3)
        path = Path(str(answer["path"]))
        if path.parent != Path(os.path.abspath(storage)) or not _holds(path, token):
            raise SupervisorError(f"ray: node {where} does not see storage {storage} "
                                  "(it must be a folder every node shares)", 3)
    return len(refs)


def _holds(path: Path, token: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.read(fd, 64) == token.encode()
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
