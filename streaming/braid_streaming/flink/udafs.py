"""braid's Flink UDAFs (and the event-time UDFs): Java sources shipped with braid, compiled once
per machine with javac.

The UDAFs replace built-ins that break DESIGN §4.3 (STACK.md): ``Latest`` (LAST_VALUE follows
arrival order), ``Welford`` (VAR_POP is a sum of squares) and ``ExactSum`` (SUM(BIGINT) wraps
around on overflow; ``braid_exact_sum`` fails the job with ``braid overflow: ...`` instead).

Why Java, not Python UDAFs: a Python UDAF works on PyFlink 2.0.0 but starts a Python worker
(13.7 s for a tiny bounded job, STACK.md); the Java classes run inside the JVM. The sources
(``java/dev/braid/flink/*.java``) are compiled against the jars PyFlink ships in
``pyflink/lib`` and packed into a jar cached under ``~/.cache/braid/flink/<hash>/`` (the hash
covers the sources and the PyFlink version), so the first run pays ~1-2 s and later runs none.

Registration: the jar goes on ``pipeline.jars`` and the job's
``CREATE TEMPORARY FUNCTION braid_latest AS 'dev.braid.flink.Latest' LANGUAGE JAVA``
statements (emitted by :mod:`braid.compile.flink`) name the classes. ``braid_event_time`` and
``braid_event_time_error`` (``EventTime``, ``EventTimeError``) read event times as the embedded
runner does (:mod:`braid.compile.flink_source`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from braid.errors import BraidError

SOURCES = Path(__file__).parent / "java"
_CLASSPATH_JARS = ("flink-table-common.jar", "flink-core.jar", "flink-core-api.jar",
                   "flink-annotations.jar")


class UdafBuildError(BraidError):
    """The UDAF jar could not be built (no javac, or a compile error)."""


def pyflink_lib() -> Path:
    """The ``pyflink/lib`` folder of the installed PyFlink."""
    import pyflink

    return Path(pyflink.__file__).parent / "lib"


def _fingerprint(sources: list[Path], lib: Path) -> str:
    h = hashlib.sha256()
    for src in sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    for jar in _CLASSPATH_JARS:
        stat = (lib / jar).stat()
        h.update(f"{jar}:{stat.st_size}".encode())
    return h.hexdigest()[:16]


def build_udaf_jar(cache_dir: Path | None = None) -> Path:
    """Compile the UDAF sources (if not cached) and return the jar's path.

    Raises:
        UdafBuildError: javac is missing or the sources do not compile.
    """
    lib = pyflink_lib()
    sources = sorted(SOURCES.rglob("*.java"))
    cache = cache_dir or Path(os.environ.get("BRAID_CACHE", Path.home() / ".cache" / "braid"))
    jar = cache / "flink" / _fingerprint(sources, lib) / "braid-flink-udafs.jar"
    if jar.exists():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise UdafBuildError("javac not found: install a JDK 17 (apt install openjdk-17-jdk-headless)")
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        classpath = os.pathsep.join(str(lib / j) for j in _CLASSPATH_JARS)
        proc = subprocess.run(
            [javac, "-nowarn", "--release", "17", "-d", tmp, "-cp", classpath,
             *map(str, sources)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise UdafBuildError(f"javac failed on braid's UDAFs: {proc.stderr.strip()[:500]}")
        partial = jar.with_suffix(".tmp")
        with zipfile.ZipFile(partial, "w") as z:
            for cls in sorted(Path(tmp).rglob("*.class")):
                z.write(cls, cls.relative_to(tmp).as_posix())
        partial.replace(jar)  # atomic: a concurrent build never sees half a jar
    return jar
