"""Which hosts only this machine can reach: the one rule the dashboard's bind address, the proxy's
upstream check and the management-key guard of ``reconcile --from-upstream`` share."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1, bracketed or not);
    any other name or address counts as reachable from the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
