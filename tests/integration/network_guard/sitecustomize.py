"""A network guard that Python loads at start-up when this folder is on PYTHONPATH.

It records and refuses every connection, datagram and name lookup that would leave the machine, so a
test can run the real app in a subprocess and prove it never reaches out. Attempts are appended, one
per line, to the file named by $NETWORK_GUARD_LOG. Only Python's socket module is guarded: native
code that opens its own sockets (none of our dependencies does at run time) would not be seen.
"""

import errno
import ipaddress
import os
import socket

LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
INTERNET_FAMILIES = (socket.AF_INET, socket.AF_INET6)

_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
_getaddrinfo, _gethostbyname, _gethostbyname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex


def is_local(host) -> bool:
    if host is None:
        return True
    host = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").lower()
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False  # a name other than localhost: resolving it would ask a DNS server
    return address.is_loopback or address.is_unspecified


def record(attempt: str) -> None:
    if os.environ.get("NETWORK_GUARD_LOG"):
        with open(os.environ["NETWORK_GUARD_LOG"], "a") as log:
            log.write(attempt + "\n")


def _leaves(sock, address) -> bool:
    return sock.family in INTERNET_FAMILIES and isinstance(address, tuple) and not is_local(address[0])


def connect(self, address):
    if _leaves(self, address):
        record(f"connect {address[0]}:{address[1]}")
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"network guard: no connection to {address[0]}")
    return _connect(self, address)


def connect_ex(self, address):
    if _leaves(self, address):
        record(f"connect {address[0]}:{address[1]}")
        return errno.ECONNREFUSED
    return _connect_ex(self, address)


def sendto(self, data, *args):
    address = args[-1]
    if _leaves(self, address):
        record(f"sendto {address[0]}:{address[1]}")
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"network guard: no datagram to {address[0]}")
    return _sendto(self, data, *args)


def _lookup(original):
    def lookup(host, *args, **kwargs):
        if not is_local(host):
            record(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: no lookup of {host}")
        return original(host, *args, **kwargs)

    return lookup


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.getaddrinfo = _lookup(_getaddrinfo)
socket.gethostbyname = _lookup(_gethostbyname)
socket.gethostbyname_ex = _lookup(_gethostbyname_ex)
