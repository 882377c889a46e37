"""A loopback TCP proxy that withholds the answer to the first request it carries.

It stands in for a server that applies a request and answers too late (a busy or just-started
sidecar): the request reaches the real server, the server's answer is held back on that
connection until the client gives up and closes it, and every other connection is forwarded
untouched (``cut``: the first answer is lost with its connection). "The request was sent" is known
by bytes: on the first connection where more than ``request_bytes`` have gone upstream, nothing
more is forwarded downstream (gRPC's and HTTP's connection set-up is a few hundred bytes, an export
request carrying rows is more; a connection that only checks the server answers, as the gRPC
exporter's handshake does, is forwarded untouched).
"""

from __future__ import annotations

import selectors
import socket
import threading

__all__ = ["HoldFirstAnswer"]


class HoldFirstAnswer:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``; withholds the first request's answer.

    ``held`` is set once answer bytes were withheld (the server did answer, too late for the
    client); ``withheld`` counts them. With ``cut`` the connection is closed as the answer
    comes instead (the answer is lost, the client learns at once). Use as a context manager; stops by itself on exit.
    """

    def __init__(self, target: int, request_bytes: int = 1024, cut: bool = False):
        self.target = target
        self.cut = cut
        self.request_bytes = request_bytes
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = threading.Event()
        self.withheld = 0
        self.connections = 0
        self._claimed = False  # a connection holds the answer (the first to carry a request)
        self._claim_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _claim(self) -> bool:
        with self._claim_lock:
            first, self._claimed = not self._claimed, True
        return first

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        sent_up = 0
        hold = None  # decided once this connection has carried a request
        with client, upstream, selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    src, dst = key.fileobj, key.data
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return  # either side closed: close both
                    if src is client:
                        sent_up += len(data)
                        if hold is None and sent_up > self.request_bytes:
                            hold = self._claim()
                    elif hold:
                        self.withheld += len(data)
                        self.held.set()
                        if self.cut:
                            return  # the answer is lost with the connection
                        continue
                    try:
                        dst.sendall(data)
                    except OSError:
                        return

    def __enter__(self) -> "HoldFirstAnswer":
        self._accepter.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
        self.sock.close()
