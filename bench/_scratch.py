"""Scratch folders of the benchmarks: gone when the benchmark ends, fails or is stopped.

The benchmarks write stores and checkpoints of hundreds of MB (``bench_train.py``: 643 MB after one default
run). They go into a :func:`scratch_dir`, removed on a normal end, on an exception, on Ctrl-C
(``KeyboardInterrupt``) and on SIGTERM / SIGHUP (a scheduler's ``timeout`` or ``scancel``, a closed
terminal), which Python would otherwise obey by dying on the spot and leaving the folder behind. Only
``kill -9`` cannot be caught.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` in the main thread, so
    ``finally`` blocks and context managers run; a repeated signal during that cleanup is ignored (a second
    ``timeout`` signal must not cut the removal short). The previous handlers are put back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def stop(signum, frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def scratch_dir(prefix: str, dir: str | Path | None = None) -> Iterator[Path]:
    """A new temporary folder ``<dir or $TMPDIR>/<prefix>*``, removed with its content when the block ends in
    any way but ``kill -9`` (see the module docstring)."""
    with stop_signals_raise(), tempfile.TemporaryDirectory(prefix=prefix, dir=dir) as tmp:
        yield Path(tmp)
