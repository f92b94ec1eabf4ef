"""Which client addresses count as one sender, for the page's connection caps and login pauses."""

from __future__ import annotations

import ipaddress


def address_group(host: str) -> str:
    """An IPv4 address as is, an IPv6 address as its /64: one host may pick any address in it."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # "unknown", a Unix socket path ...
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
