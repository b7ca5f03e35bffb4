"""HTTP serving benchmark: `braid serve` against the SDK call and a raw HMGET, same Redis.

Starts a private ``redis-server`` and a temporary repository (3 projections and 4 windowed
aggregations of one user), writes N entities, starts ``braid serve`` as a subprocess, then:

1. latency of one entity, interleaved: raw pipelined HMGET (the floor), the SDK's
   ``get_online_features``, and ``POST /get-online-features`` over a keep-alive connection;
2. throughput under a bounded local load: C client processes, each sending requests
   back to back for D seconds, against 1 and more server workers.

Not a test: nothing asserts on time. Example:

    .venv/bin/python bench/bench_http.py --entities 10000 --iters 2000 --clients 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa

from braid.store import FeatureStore

HOP = 600_000

DEFINITIONS = '''
from braid import Aggregation, BatchSource, Entity, Feature, FeatureService, FeatureView

user = Entity(name="user", join_keys={"user_id": "int64"})
src = BatchSource(name="src", path="data/*.parquet", timestamp_field="ts",
                  schema={"user_id": "int64", "ts": "timestamp", "a": "float64",
                          "b": "int64", "c": "string"})
profile = FeatureView(name="profile", entities=[user], source=src, ttl="30d",
                      features=[Feature(name="a", dtype="float64"),
                                Feature(name="b", dtype="int64"),
                                Feature(name="c", dtype="string")])
txn = FeatureView(name="txn", entities=[user], source=src,
                  aggregations=[Aggregation(function="count", window=w, hop="10m")
                                for w in ("1h", "4h")]
                  + [Aggregation(column="a", function="sum", window=w, hop="10m")
                     for w in ("1h", "4h")])
svc = FeatureService(name="svc", features=[profile, txn])
'''

THREE = ["profile:a", "profile:b", "profile:c"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"process on port {port} exited") from None
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def make_repo(root: Path, url: str, n: int, now: int) -> FeatureStore:
    (root / "braid.yaml").write_text(f"project: bench\nregistry: sqlite:///data/registry.db\n"
                                     f"online_store:\n  type: redis\n  url: {url}\n")
    (root / "defs.py").write_text(textwrap.dedent(DEFINITIONS))
    fs = FeatureStore(root)
    rng = np.random.default_rng(0)
    fs.online.write_rows(fs.repo.plan("profile"), pa.table({
        "user_id": np.arange(n), "_ts": now - rng.integers(0, 10**6, n),
        "a": rng.standard_normal(n) * 100, "b": rng.integers(0, 10**9, n),
        "c": [f"city{i % 97}" for i in range(n)]}))
    k = now // HOP * HOP
    ids = np.repeat(np.arange(n), 6)
    starts = np.tile(np.arange(k - 5 * HOP, k + 1, HOP), n)
    fs.online.write_tiles(fs.repo.plan("txn"), HOP, pa.table({
        "user_id": ids, "tile_start": starts, "_rows__count__n": rng.integers(1, 9, len(ids)),
        "a__sum__s": rng.standard_normal(len(ids))}))
    return fs


def start_server(root: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from braid.cli import main; main()",
                             "--repo", str(root), "serve", "--port", str(port),
                             "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):  # workers > 1: wait until every worker has loaded the repo
        if httpx.get(url + "/health").status_code == 200:
            break
        time.sleep(0.05)
    return proc, url


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client on a socket, so client cost does not hide the
    server's (httpx spends ~0.3-0.5 ms of Python per request)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        header, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(header.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return int(header[9:12]), rest[:length]

    def close(self) -> None:
        self.sock.close()


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000


def latency(fs: FeatureStore, url: str, n: int, iters: int, features: list[str] | None,
            service: str | None) -> None:
    redis = fs.online.client  # type: ignore[attr-defined]
    rng = random.Random(1)
    sdk_features = features
    fields_ = ["_ts", "f:a", "f:b", "f:c"]
    prefix = f"braid:bench:{fs.repo.plan('profile').namespace}:" + "{"
    http = httpx.Client(base_url=url)
    raw_http = RawHttp(url)
    body = {"entities": {"user_id": [0]}}
    body.update({"features": features} if features else {"feature_service": service})
    what_json = orjson.dumps({"features": features} if features else
                             {"feature_service": service})[1:-1]

    def raw(uid: int) -> None:
        redis.execute_command("HMGET", f"{prefix}{uid}}}", *fields_)

    def sdk(uid: int) -> None:
        fs.get_online_features([{"user_id": uid}], features=sdk_features, service=service)

    def over_http(uid: int) -> None:
        body["entities"] = {"user_id": [uid]}
        r = http.post("/get-online-features", json=body)
        if r.status_code != 200:
            raise SystemExit(r.text)

    def over_raw_http(uid: int) -> None:
        status, _ = raw_http.post("/get-online-features", b'{"entities":{"user_id":[%d]},%s}'
                                  % (uid, what_json))
        if status != 200:
            raise SystemExit(f"HTTP {status}")

    runs: dict[str, tuple[Callable[[int], None], list[float]]] = {
        "raw HMGET (3 fields)": (raw, []), "SDK": (sdk, []),
        "HTTP (socket client)": (over_raw_http, []), "HTTP (httpx client)": (over_http, [])}
    for _ in range(200):  # warm-up: connections, read plans
        for f, _ in runs.values():
            f(rng.randrange(n))
    for _ in range(iters):
        for f, times in runs.values():
            uid = rng.randrange(n)
            t = time.perf_counter()
            f(uid)
            times.append(time.perf_counter() - t)
    what = ", ".join(features) if features else f"service {service}"
    print(f"\nlatency, 1 entity, {what} ({iters} interleaved iterations)")
    base = statistics.median(runs["raw HMGET (3 fields)"][1])
    for name, (_, times) in runs.items():
        print(f"  {name:22} p50 {pct(times, .5):6.3f} ms  p99 {pct(times, .99):6.3f} ms  "
              f"(p50 x{statistics.median(times) / base:4.1f} raw)")
    http.close()
    raw_http.close()


def _client(url: str, n: int, seconds: float, out: mp.Queue) -> None:
    rng = random.Random(os.getpid())
    done = errors = 0
    http = RawHttp(url)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        body = b'{"entities":{"user_id":[%d]},"feature_service":"svc"}' % rng.randrange(n)
        if http.post("/get-online-features", body)[0] == 200:
            done += 1
        else:
            errors += 1
    http.close()
    out.put((done, errors))


def throughput(url: str, n: int, clients: int, seconds: float, workers: int) -> None:
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(url, n, seconds, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    results = [out.get() for _ in procs]
    done, errors = sum(r[0] for r in results), sum(r[1] for r in results)
    print(f"  {workers} worker(s), {clients} client processes, {seconds:.0f}s: "
          f"{done / seconds:8,.0f} req/s  ({errors} errors)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="braid-bench-http-"))
    redis_proc, redis_url = start_redis(str(tmp))
    procs: list[subprocess.Popen[bytes]] = [redis_proc]
    try:
        now = int(time.time() * 1000)
        fs = make_repo(tmp, redis_url, args.entities, now)
        print(f"{args.entities:,} entities on a private redis-server; "
              f"{os.cpu_count()} CPUs; uvicorn; keep-alive clients")
        server, url = start_server(tmp, 1)
        procs.append(server)
        latency(fs, url, args.entities, args.iters, THREE, None)
        latency(fs, url, args.entities, args.iters, None, "svc")
        print("\nthroughput, service svc (7 features, 2 views), 1 entity per request")
        throughput(url, args.entities, args.clients, args.seconds, 1)
        server.terminate()
        server.wait()
        for w in args.workers:
            if w == 1:
                continue
            server, url = start_server(tmp, w)
            procs.append(server)
            throughput(url, args.entities, args.clients, args.seconds, w)
            server.terminate()
            server.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
