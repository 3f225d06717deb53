"""Which URLs and addresses an endpoint may have (SSRF): checked at registration and again at
each delivery."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from shared.webhooks.models import MAX_URL_LENGTH

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` to the addresses it resolves to (IPv4/IPv6 text); ``OSError`` if none."""


def system_resolver(host: str, port: int) -> list[str]:
    """What the system's resolver answers for ``host`` (every address, in its order)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Refused(Exception):
    """A URL or address webhooks may not be sent to; the message says why (for people)."""


def address_problem(address: str, allow_loopback: bool) -> str | None:
    """Why ``address`` may not receive webhooks, or ``None`` when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global:  # private, link-local, shared (100.64/10), reserved, unspecified, ...
        return "a private, link-local or reserved address"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def checked_addresses(host: str, port: int, resolver: Resolver, allow_loopback: bool) -> list[str]:
    """Every address ``host`` resolves to, if all of them may receive webhooks; else ``Refused``.

    All, not any: a name with one public and one private address must not be a way in."""
    if host.rstrip(".").lower() in _METADATA_HOSTS:
        raise Refused("the host is a cloud metadata server")
    try:
        addresses = [host] if _is_ip(host) else list(resolver(host, port))
    except (OSError, UnicodeError):
        raise Refused("the host does not resolve") from None
    if not addresses:
        raise Refused("the host does not resolve")
    for address in addresses:
        problem = address_problem(address, allow_loopback)
        if problem is not None:
            raise Refused(f"the host resolves to {problem}")
    return addresses


def check_url(url: str, resolver: Resolver, *, local: bool) -> tuple[str, int]:
    """``(host, port)`` of an acceptable endpoint URL, else ``Refused``. ``local`` (the local
    stack) also takes ``http`` and loopback addresses."""
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise Refused("the URL must be ASCII without spaces (punycode for other names)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("the URL is not valid") from None
    if parts.scheme not in (("https", "http") if local else ("https",)):
        raise Refused("the URL must be https://" + (" (or http:// locally)" if local else ""))
    host = parts.hostname
    if not host:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not carry credentials")
    if parts.fragment:
        raise Refused("the URL must not have a fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    checked_addresses(host, port, resolver, allow_loopback=local)
    return host, port
