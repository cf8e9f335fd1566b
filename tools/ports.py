"""A free TCP port on 127.0.0.1, for the tests and tools that start a server of their own."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
