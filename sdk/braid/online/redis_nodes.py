"""The Redis server(s) behind an online store URL: one server, or a Redis Cluster.

``redis://host:port/db`` (or ``rediss://``, ``unix://``) is one server. ``redis+cluster://host:
port`` (``rediss+cluster://`` with TLS) is a Redis Cluster reached through any of its nodes;
the client discovers the others. Keys are hash-tagged on the entity (DESIGN §6), so every key
of one entity lives in one slot, and a multi-key script call is valid on a cluster as long as
its keys share a slot: :meth:`RedisNodes.chunks` cuts calls that way (on one server it only
bounds their size). :meth:`RedisNodes.execute` sends pre-packed commands pipelined, one write
and one read per node, all nodes written before any is read, so a batch costs one round trip.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from braid.errors import StoreError

#: URL schemes of a Redis Cluster, mapped to the scheme redis-py expects.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: Attempts for commands a cluster redirects (MOVED, ASK, TRYAGAIN, CLUSTERDOWN).
REDIRECT_ATTEMPTS = 5


class Script:
    """A Lua script called by its SHA1; loaded on a node the first time the node lacks it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


#: (hash slot, packed bytes, how many replies they get: several commands may be packed as one)
Command = tuple[int, Sequence[bytes | memoryview], int]


class RedisNodes:
    """Routes packed commands to the node that serves their keys' slot and runs them."""

    def __init__(self, url: str, **client_options: Any) -> None:
        import redis  # imported here so `import braid` never needs redis

        self.url = url
        self.errors = redis.exceptions
        e = redis.exceptions
        self._redirects = (e.MovedError, e.AskError, e.TryAgainError, e.ClusterDownError)
        #: What a failed call raises (a cluster client's own errors are not RedisErrors).
        self.failures = (e.RedisError, e.RedisClusterException)
        scheme, _, rest = url.partition("://")
        self.cluster = scheme in CLUSTER_SCHEMES
        self.client: Any
        try:
            if self.cluster:
                from redis.cluster import RedisCluster

                self.client = RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}",
                                                    **client_options)
            else:
                self.client = redis.Redis.from_url(url, **client_options)
        except ValueError as err:  # redis-py's message names the schemes it knows
            raise StoreError(f"online store url {url!r}: {err}; for a Redis Cluster use "
                             "redis+cluster://host:port") from err
        except (redis.RedisError, redis.exceptions.RedisClusterException) as err:
            # a cluster client reads the slot map at once
            raise StoreError(f"cannot reach the Redis Cluster at {url}: {err}") from err

    def slots(self, keys: Sequence[str]) -> np.ndarray:
        """The cluster hash slot of every key (all 0 on one server)."""
        if not self.cluster:
            return np.zeros(len(keys), np.int64)
        from redis.crc import key_slot

        return np.fromiter((key_slot(k.encode()) for k in keys), np.int64, len(keys))

    def chunks(self, slots: np.ndarray | None, n: int, size: int) -> list[tuple[int, int, int]]:
        """Cut ``n`` consecutive units (grouped by slot beforehand) into ``(slot, lo, hi)``
        runs of at most ``size`` units, each within one slot."""
        if slots is None or not self.cluster:
            return [(0, lo, min(lo + size, n)) for lo in range(0, n, size)]
        edges = [0, *(np.flatnonzero(slots[1:] != slots[:-1]) + 1).tolist(), n]
        out = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            out += [(int(slots[a]), lo, min(lo + size, b)) for lo in range(a, b, size)]
        return out

    # ------------------------------------------------------------------ execution

    def _target(self, slot: int) -> Any:
        """The redis-py client of the node serving ``slot`` (the client itself on one server)."""
        if not self.cluster:
            return self.client
        node = self.client.nodes_manager.get_node_from_slot(slot)
        return self.client.get_redis_connection(node)

    def execute(self, batches: Iterable[Sequence[Command]],
                script: Script | None = None) -> list[Any]:
        """Run packed commands, pipelined per node; returns the replies in order, a
        ``ResponseError`` standing in for a failed command.

        ``batches`` may be a generator: each batch is sent as soon as it is produced and the
        replies are read after the last one, so the server runs a batch while the next is
        being packed. A command refused because the node lacks ``script`` (NOSCRIPT) or
        because the cluster moved its slot is sent again after the script is loaded or the
        slot map refreshed; either refusal leaves the command unapplied.
        """
        commands: list[Command] = []
        out: list[Any] = []

        def feed() -> Iterator[range]:
            for batch in batches:
                lo = len(commands)
                commands.extend(batch)
                out.extend([None] * len(batch))
                yield range(lo, len(commands))

        redo, moved = self._round(feed(), commands, out, script)
        for attempt in range(1, REDIRECT_ATTEMPTS):
            if not redo:
                return out
            if moved:
                time.sleep(0.05 * attempt)
                self.client.nodes_manager.initialize()
            redo, moved = self._round([redo], commands, out, script)
        for i in redo:
            out[i] = self.errors.ResponseError(
                f"the cluster kept redirecting a command after {REDIRECT_ATTEMPTS} attempts")
        return out

    def _round(self, batches: Iterable[Sequence[int]], commands: list[Command], out: list[Any],
               script: Script | None) -> tuple[list[int], bool]:
        conns: dict[int, tuple[Any, Any, list[int]]] = {}
        redo: list[int] = []
        moved = False
        e = self.errors
        try:
            for idx in batches:
                per_node: dict[int, tuple[Any, list[int]]] = {}
                for i in idx:
                    target = self._target(commands[i][0])
                    per_node.setdefault(id(target), (target, []))[1].append(i)
                for node, (target, part) in per_node.items():
                    if node not in conns:
                        conns[node] = (target, _connection(target.connection_pool), [])
                    conn, order = conns[node][1], conns[node][2]
                    order.extend(part)
                    conn.send_packed_command([b"".join(p for i in part for p in commands[i][1])])
            for target, conn, order in conns.values():
                missing = False
                for i in order:
                    replies = [self.read_reply(conn) for _ in range(commands[i][2])]
                    if any(isinstance(r, e.NoScriptError) for r in replies):
                        redo.append(i)
                        missing = True
                    elif any(isinstance(r, self._redirects) for r in replies):
                        redo.append(i)
                        moved = True
                    else:
                        out[i] = replies[0] if len(replies) == 1 else replies
                if missing and script is not None:
                    target.script_load(script.text)
        except BaseException:
            for _, conn, _ in conns.values():
                conn.disconnect()  # replies may be pending: never reuse this connection
            raise
        finally:
            for target, conn, _ in conns.values():
                target.connection_pool.release(conn)
        return sorted(redo), moved

    def read_reply(self, conn: Any) -> Any:
        """One reply from ``conn``; an error reply is returned, not raised."""
        try:
            return conn.read_response()
        except self.errors.ResponseError as err:  # the reply was read in full: go on
            return err

    def close(self) -> None:
        self.client.close()


def _connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        return pool.get_connection("EVALSHA")


class Deferred:
    """Writes sent at once whose replies are read at the end of a batch (one server only):
    the server runs them while the client computes the next ones.

    Each :meth:`send` gets a ``done`` callback with its replies in order; :meth:`finish`
    reads every reply, sends again (synchronously) what met NOSCRIPT, then calls the
    callbacks. A failure anywhere disconnects the held connection, since replies may be
    pending on it."""

    def __init__(self, nodes: RedisNodes) -> None:
        self.nodes = nodes
        self._conn: Any = None
        self._sent: list[tuple[list[Command], Script | None, Callable[[list[Any]], None]]] = []

    def send(self, commands: list[Command], script: Script | None,
             done: Callable[[list[Any]], None]) -> None:
        if not commands:
            done([])
            return
        if self._conn is None:
            self._conn = _connection(self.nodes.client.connection_pool)
        try:
            self._conn.send_packed_command([b"".join(p for c in commands for p in c[1])])
        except BaseException:
            self.abort()
            raise
        self._sent.append((commands, script, done))

    def finish(self) -> None:
        conn, sent = self._conn, self._sent
        self._conn, self._sent = None, []
        if conn is None:
            return
        got: list[list[Any]] = []
        try:
            for commands, _, _ in sent:
                replies = []
                for c in commands:
                    rs = [self.nodes.read_reply(conn) for _ in range(c[2])]
                    replies.append(rs[0] if len(rs) == 1 else rs)
                got.append(replies)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self.nodes.client.connection_pool.release(conn)
        noscript = self.nodes.errors.NoScriptError
        for (commands, script, done), replies in zip(sent, got, strict=True):
            redo = [i for i, r in enumerate(replies) if isinstance(r, noscript)]
            if redo:  # refused unapplied: load the script and send those again
                again = self.nodes.execute([[commands[i] for i in redo]], script)
                for i, r in zip(redo, again, strict=True):
                    replies[i] = r
            done(replies)

    def abort(self) -> None:
        """Drop the held connection without reading (the batch failed)."""
        if self._conn is not None:
            self._conn.disconnect()
            self.nodes.client.connection_pool.release(self._conn)
        self._conn, self._sent = None, []
