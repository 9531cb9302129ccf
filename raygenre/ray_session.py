"""The one way raygenre starts or attaches to Ray.

A run starts a local Ray of its own (``address="local"``) unless it is asked to attach: ``--address``
(a CLI flag) or ``RAY_ADDRESS`` (set by ``ray job submit``). Ray's default, with no address, would
attach to whatever head the last ``ray start`` on this machine recorded, alive or dead. Before
attaching, the address must answer within seconds, so a dead or wrong address is one sentence instead
of Ray's minutes of retries. A Ray already initialised in this process (tests) is used as it is and
left running. With ``CI`` set, Ray's own log lines and progress bars are kept off the console so the
output reads as raygenre's progress.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from raygenre.errors import RaygenreError, one_line

ADDRESS_ENV = "RAY_ADDRESS"
ADDRESS_HELP = ("attach to a running Ray: auto (the head the last `ray start` on this machine recorded) or "
                "HOST:PORT (default: RAY_ADDRESS if set, else a local Ray of this run's own)")
CONNECT_TIMEOUT_S = 5.0  # per step of the probe: TCP connect, then the server's first HTTP/2 frame
# Ray's own connect loop (ray/_private/node.py: _init_gcs_client) tries this many times, ~12 s each, when
# the probe passed but the GCS still does not take the driver; Ray's default is 20 (120 with RocksDB).
RAY_CONNECT_TRIES_ENV = "RAY_gcs_server_port_wait_time_s"
RAY_CONNECT_TRIES = "3"
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
HTTP2_SETTINGS = 4

_requested: ContextVar[str | None] = ContextVar("raygenre_ray_address", default=None)


class RayAddressError(RaygenreError, ConnectionError):
    """A Ray cluster that was asked for (``--address`` / ``RAY_ADDRESS``) and cannot be used."""


def quiet_console() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("RAYGENRE_QUIET"))


@contextmanager
def requested_address(address: str | None) -> Iterator[None]:
    """``--address`` for every :func:`ray_session` opened inside (stages that start Ray only when needed)."""
    token = _requested.set(address)
    try:
        yield
    finally:
        _requested.reset(token)


def say(line: str) -> None:
    """A progress line on stderr: stdout may carry a CLI's data (predict's CSV/JSON)."""
    print(f"[ray] {line}", file=sys.stderr, flush=True)


def plural(n: float, word: str) -> str:
    n = int(n) if float(n).is_integer() else n
    return f"{n} {word}{'' if n == 1 else 's'}"


def chosen_address(address: str | None) -> tuple[str | None, str]:
    """(address or None for a local Ray, where it came from): the flag, then ``RAY_ADDRESS``."""
    address = address or _requested.get()
    if address:
        return address.strip(), "--address"
    if os.environ.get(ADDRESS_ENV, "").strip():
        return os.environ[ADDRESS_ENV].strip(), ADDRESS_ENV
    return None, ""


def ray_address_file() -> Path:
    """Where ``ray start`` records its head (``$RAY_TMPDIR|$TMPDIR|/tmp``/ray/ray_current_cluster)."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def resolve_auto(source: str) -> tuple[str, str]:
    """``auto``: the head the last ``ray start`` on this machine recorded, as Ray itself finds it.

    Ray's further fallback (any GCS process found with ``ps``) is left out on purpose: those are
    mostly other programs' private local Rays, which nobody meant to share.
    """
    path = ray_address_file()
    recorded = path.read_text().strip() if path.is_file() else ""
    if not recorded:
        raise RayAddressError(
            f"{source} auto found no running Ray head on this machine ({path} does not name one; `ray start "
            f"--head` writes it): start a head, give its HOST:PORT, or set neither --address nor {ADDRESS_ENV} "
            f"to run on a Ray of this process's own.")
    return recorded, f"{source} auto, from {path}"


def split_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT``, ``[v6]:PORT`` or ``ray://HOST:PORT``; None when it is not one."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def unreachable(address: str, source: str, why: str, port: int | None) -> RayAddressError:
    start = f"`ray start --head --port {port}`" if port else "`ray start --head`"
    return RayAddressError(
        f"no Ray cluster answers at {address} (from {source}: {why}): start its head ({start}) or give the "
        f"right HOST:PORT, or set neither --address nor {ADDRESS_ENV} to run on a Ray of this process's own.")


def probe(address: str, source: str) -> None:
    """Fail within seconds unless ``address`` accepts a TCP connection and speaks HTTP/2 (gRPC), as a GCS does.

    Ray itself would retry a dead address for minutes (issue 21: 830 s); a port that accepts but is
    not a GCS (the dashboard's 8265, say) would cost Ray's whole retry budget too.
    """
    if address.split("://", 1)[0].lower() in ("http", "https"):
        raise RayAddressError(
            f"{address} (from {source}) is a dashboard / job API address, which `ray job submit` takes; a "
            f"driver attaches to the head's GCS address HOST:PORT (port 6379 unless `ray start --port` said "
            f"otherwise), or set neither --address nor {ADDRESS_ENV} to run on a Ray of this process's own.")
    parsed = split_host_port(address)
    if parsed is None:
        raise RayAddressError(f"{address} (from {source}) is not a Ray address: give HOST:PORT, "
                              f"ray://HOST:PORT or auto.")
    host, port = parsed
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS server waits for our handshake; the TCP connect is all we check
            conn.settimeout(CONNECT_TIMEOUT_S)
            conn.sendall(HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise unreachable(address, source, f"no answer within {CONNECT_TIMEOUT_S:g} s", port) from None
    except OSError as exc:
        raise unreachable(address, source, (exc.strerror or one_line(exc)).lower(), port) from None
    if len(head) < 9 or head[3] != HTTP2_SETTINGS:
        raise unreachable(address, source, "the port is open but does not speak gRPC, so it is no Ray GCS", port)


@contextmanager
def env_default(name: str, value: str) -> Iterator[None]:
    """``name`` set to ``value`` for the block unless the user set it."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None,
                log_to_driver: bool | None = None) -> Iterator[bool]:
    """Yield True when this call started or attached Ray (and will disconnect), False when it was running.

    ``address``: ``auto``, ``HOST:PORT``, ``ray://HOST:PORT`` or ``local``; None falls back to the
    surrounding :func:`requested_address`, then ``RAY_ADDRESS``, then a local Ray. ``num_cpus`` sizes a
    local Ray only: attached, a run has the cluster's CPUs. ``log_to_driver`` (default: not quiet) shows
    the workers' output here.
    """
    import ray
    from ray.data import DataContext

    quiet = quiet_console()
    if quiet:  # Tune's legacy console output honours verbose=0 (the new one still prints a box per study)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = not ray.is_initialized()
    if started:
        kwargs = {"log_to_driver": not quiet if log_to_driver is None else log_to_driver,
                  "logging_level": logging.ERROR if quiet else logging.INFO}
        target, source = chosen_address(address)
        if target and target.lower() != "local":
            if target.lower() == "auto":
                target, source = resolve_auto(source)
            probe(target, source)
            try:
                with env_default(RAY_CONNECT_TRIES_ENV, RAY_CONNECT_TRIES):
                    ray.init(address=target, **kwargs)
            except Exception as exc:  # the probe passed: the GCS refused this driver (auth, versions)
                if ray.is_initialized():
                    ray.shutdown()
                raise RayAddressError(f"the Ray cluster at {target} (from {source}) did not take this driver "
                                      f"({one_line(exc)}): check the address and its token, or set neither "
                                      f"--address nor {ADDRESS_ENV} to run on a Ray of this process's own.") from exc
            hw = cluster_hardware()
            say(f"attached to {target} ({plural(hw['cluster_cpus'], 'CPU')}, {plural(hw['nodes'], 'node')}; "
                f"from {source})")
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
            say(f"local Ray, {plural(ray.cluster_resources().get('CPU', 0), 'CPU')}")
    if quiet:  # quiet first: switching the bars off logs a warning of its own
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        DataContext.get_current().enable_progress_bars = False
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def cluster_hardware() -> dict:
    """CPUs, GPUs and live nodes of the cluster this process is attached to."""
    import ray

    res = ray.cluster_resources()
    return {"cluster_cpus": res.get("CPU", 0), "cluster_gpus": res.get("GPU", 0),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")])}
