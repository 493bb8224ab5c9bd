"""A small TCP relay on 127.0.0.1 that a test can cut and restore, to make PostgreSQL (or any
server) unreachable on purpose.

    relay = TcpRelay(("127.0.0.1", 5432))   # listens on 127.0.0.1:<relay.port>
    relay.cut()        # open connections reset, new ones refused (ECONNREFUSED)
    relay.restore()    # listening again on the same port
    relay.stall()      # a silent network: nothing forwarded, nothing refused (until resume())
    relay.resume()
    relay.close()

One thread runs a selector loop; ``cut``/``restore``/``stall``/``resume`` are handed to it through a
wake-up socket and return once done, so the loop is the only code touching sockets.
"""

from __future__ import annotations

import queue
import selectors
import socket
import struct
import threading

__all__ = ["TcpRelay"]

_LISTEN, _WAKE = "listen", "wake"


class TcpRelay:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1"):
        self.target = target
        self.host = host
        self.port = 0
        self.accepted = 0
        self._sel = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._listener: socket.socket | None = None
        self._stalled = False
        self._commands: queue.Queue = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._running = True
        self._listen()
        self._thread = threading.Thread(target=self._loop, name=f"tcp-relay:{self.port}", daemon=True)
        self._thread.start()

    # -- control (any thread) ----------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self._do("cut")

    def restore(self) -> None:
        """Accept and forward again, on the same port."""
        self._do("restore")

    def stall(self) -> None:
        """Stop forwarding and accepting without closing anything: the peer sees silence."""
        self._do("stall")

    def resume(self) -> None:
        self._do("resume")

    def close(self) -> None:
        self._do("cut")
        self._running = False
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def open_connections(self) -> int:
        return len(self._peers) // 2

    def _do(self, command: str) -> None:
        done = threading.Event()
        self._commands.put((command, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise RuntimeError(f"tcp relay did not {command} in time")

    # -- the loop (relay thread) ---------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._sel.register(sock, selectors.EVENT_READ, _LISTEN)

    def _loop(self) -> None:
        while self._running:
            for key, _mask in self._sel.select(0.5):
                if key.data == _WAKE:
                    self._run_commands()
                elif key.data == _LISTEN:
                    self._accept()
                else:
                    self._pump(key.fileobj)

    def _run_commands(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                command, done = self._commands.get_nowait()
            except queue.Empty:
                return
            getattr(self, f"_{command}")()
            done.set()

    def _cut(self) -> None:
        if self._listener is not None:
            if not self._stalled:
                self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for sock in list(self._peers):
            self._drop(sock, reset=True)
        self._stalled = False

    def _restore(self) -> None:
        self._resume()
        if self._listener is None:
            self._listen()

    def _stall(self) -> None:
        if self._stalled:
            return
        self._stalled = True
        for sock in self._peers:
            self._sel.unregister(sock)
        if self._listener is not None:
            self._sel.unregister(self._listener)  # new connections wait in the backlog, unanswered

    def _resume(self) -> None:
        if not self._stalled:
            return
        self._stalled = False
        for sock in self._peers:
            self._sel.register(sock, selectors.EVENT_READ, "peer")
        if self._listener is not None:
            self._sel.register(self._listener, selectors.EVENT_READ, _LISTEN)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self.accepted += 1
        for a, b in ((client, upstream), (upstream, client)):
            a.setblocking(True)
            a.settimeout(10)
            self._peers[a] = b
            self._sel.register(a, selectors.EVENT_READ, "peer")

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock, reset=False)

    def _drop(self, sock: socket.socket, *, reset: bool) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            if not self._stalled:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            if reset:  # SO_LINGER 0: close sends RST, like a dropped network path
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            s.close()
