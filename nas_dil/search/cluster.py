"""Connecting to Ray: a local instance on 127.0.0.1, or a cluster (``--address`` /
``RAY_ADDRESS``).

A local Ray binds to the loopback address only. Ray resolves "127.0.0.1" to the host's
routable address whenever multi-node clusters are enabled, so for local instances and
loopback addresses we switch that off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the switch
Ray itself uses on laptops); a real cluster address is left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from nas_dil.errors import UserError, first_line

__all__ = ["RayAddressError", "connect", "disconnect", "loopback_only"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROBE_TIMEOUT_S = 3.0


class RayAddressError(UserError, ConnectionError):
    """A Ray address that cannot be reached."""


def loopback_only() -> None:
    """Keep Ray on 127.0.0.1 in this process and the processes it starts."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray._private.ray_constants as rc

    rc.ENABLE_RAY_CLUSTER = False  # read at call time by Ray's address resolution


def _host_port(address: str) -> tuple[str, int] | None:
    text = address.split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect(address: str | None, *, num_cpus: int | None = None,
            num_gpus: int | None = None) -> bool:
    """Connect this process to Ray; True when this call connected (then `disconnect` leaves,
    and stops a local instance started here).

    ``address``: None (``RAY_ADDRESS`` if set, else local), "local", "auto", host:port or
    ray://host:port.
    """
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) connected already
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                             "include_dashboard": False}
    if address == "local":
        loopback_only()
        ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=num_cpus,
                 num_gpus=num_gpus, **quiet)
        return True
    if address != "auto":
        hp = _host_port(address)
        if hp is None:
            raise RayAddressError(f"Ray address {address!r}: expected host:port, "
                                  "ray://host:port, auto or local")
        if hp[0] in _LOOPBACK:
            loopback_only()
        try:
            with socket.create_connection(hp, timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as e:
            raise RayAddressError(f"Ray address {address}: cannot connect "
                                  f"({e.strerror or e})") from None
    quiet.pop("include_dashboard")  # only for a new instance
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        text = first_line(e, 200)
        raise RayAddressError(f"Ray address {address}: {text}") from None
    return True


def disconnect(connected_here: bool) -> None:
    """Leave Ray if `connect` joined it; a local instance started there stops with it."""
    import ray

    if connected_here and ray.is_initialized():
        ray.shutdown()
