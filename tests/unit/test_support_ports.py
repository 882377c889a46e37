"""The tests' port picker: a port it handed out is never handed out again in the same process."""

import socket

from tests.support.waiting import free_port


def test_free_port_never_repeats_a_port_even_once_it_is_closed_again():
    given = [free_port() for _ in range(300)]  # each closed at once: the kernel would offer it again
    assert len(set(given)) == len(given)


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
