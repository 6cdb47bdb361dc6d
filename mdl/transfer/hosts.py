"""Which hosts plain ``http://`` may go to: loopback, private or link-local ones, told by their name
or address alone (no DNS lookup). Standard library only: a get's early request asks it too."""

from __future__ import annotations

import ipaddress

# Plain http is for hosts that cannot be on the public internet: a presigned link over http to
# anywhere else would hand its signature (and the bytes) to every hop on the way. Decided by name
# only: no DNS.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")
# Loopback, private (RFC 1918, RFC 4193) and link-local networks.
_LOCAL_NETS = (
    "127.0.0.0/8 ::1/128 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7 169.254.0.0/16 fe80::/10"
)
_LOCAL_NETWORKS = tuple(ipaddress.ip_network(net) for net in _LOCAL_NETS.split())


def is_local_host(host: str) -> bool:
    """Whether ``host`` is loopback, private or link-local by its name or address alone (no DNS
    lookup).
    """
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        return False
    try:
        # without an IPv6 zone ("fe80::1%eth0")
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # Single-label names ("minio") resolve only through local search domains.
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in _LOCAL_NETWORKS)
