"""A small TCP proxy on 127.0.0.1 for injecting network faults between a client and a
server: refusing connections (as a server that is down), dropping every open
connection, and cutting a connection right after a chosen request was forwarded,
before the server's answer reaches the client (a lost acknowledgement).

Threads are daemons and every socket has a timeout, so a test that forgets to stop
the proxy cannot hang.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

IO_TIMEOUT = 300.0  # seconds a pump waits for bytes before giving up on a connection


class _Pair:
    """One proxied connection: the client's socket and the server's."""

    def __init__(self, client: socket.socket, server: socket.socket):
        self.client = client
        self.server = server
        self.swallow_next_answer = False  # set once a request to cut after is forwarded

    def close(self) -> None:
        for sock in (self.client, self.server):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()


class TCPProxy:
    """Forwards connections to ``127.0.0.1:port`` (``port`` chosen at start) to the target."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._cut_marker: bytes | None = None
        self._cut_forwards = True
        self.cuts = 0  # connections cut on a marker so far
        self.accepted = 0  # connections accepted so far

    # -- control ---------------------------------------------------------------

    def start(self) -> TCPProxy:
        self._listen()
        return self

    def refuse(self) -> None:
        """Act as a server that is down: drop every connection, refuse new ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave
            # the socket listening until that accept() returned (one more connection).
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.drop_all()

    def accept_again(self) -> None:
        """Act as a server that is back: accept connections on the same port."""
        if self._listener is None:
            self._listen()

    def drop_all(self) -> None:
        """Close every open connection (both sides), as a network failure or a
        restarted server does."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def cut_after(self, marker: bytes, *, forward: bool = True) -> None:
        """Cut the next connection whose request contains ``marker`` (once): with
        ``forward``, after the request reached the server and the server answered
        (the answer is dropped); without, before the request is forwarded at all."""
        with self._lock:
            self._cut_marker = marker
            self._cut_forwards = forward

    def stop(self) -> None:
        self.refuse()

    # -- inside ----------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by refuse()
                return
            try:
                server = socket.create_connection(self.target, timeout=IO_TIMEOUT)
            except OSError:
                client.close()
                continue
            client.settimeout(IO_TIMEOUT)
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
                self.accepted += 1
            threading.Thread(target=self._client_to_server, args=(pair,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(pair,), daemon=True).start()

    def _take_cut(self, chunk: bytes) -> bool | None:
        """If ``chunk`` has the armed marker: disarm, and say whether to forward it."""
        with self._lock:
            marker = self._cut_marker
            if marker is None or marker not in chunk:
                return None
            self._cut_marker = None
            self.cuts += 1
            return self._cut_forwards

    def _client_to_server(self, pair: _Pair) -> None:
        try:
            while chunk := pair.client.recv(65536):
                forward = self._take_cut(chunk)
                if forward is False:
                    break  # cut before the server sees the request
                if forward:
                    pair.swallow_next_answer = True
                pair.server.sendall(chunk)
        except OSError:
            pass
        if not pair.swallow_next_answer:
            pair.close()

    def _server_to_client(self, pair: _Pair) -> None:
        try:
            while chunk := pair.server.recv(65536):
                if pair.swallow_next_answer:
                    break  # the server answered (committed): the client never hears it
                pair.client.sendall(chunk)
        except OSError:
            pass
        pair.close()


@contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TCPProxy]:
    proxy = TCPProxy(host, port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
