"""`free_ports`: ports picked together never repeat (picked one by one they can: the kernel
hands a released port out again), and each can be bound."""

from __future__ import annotations

import socket

from dxtalent_infra.servers import free_ports


def test_ports_picked_together_are_distinct_and_free() -> None:
    for _ in range(200):
        ports = free_ports(9)
        assert len(set(ports)) == 9, ports
    for port in free_ports(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
