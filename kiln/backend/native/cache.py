"""kiln's compilation cache on disk.

    KILN_CACHE_DIR=path    where (default: $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)

Each compiled library lives in a directory of its own named by its key, a SHA-256 of everything
that determines the binary (the C source, the compiler and its flags, the CPU, the kernel
library's sources ...):

    <cache>/native-1/<kind>/<key>/
        lib.so       the shared library
        source.c     the C it was compiled from (for reading; KILN_DUMP_DIR copies it too)
        meta.json    {"sha256": ..., "size": ..., "key": ..., "created": ...}

A builder fills a private temporary directory and renames it into place, which is atomic: when
two processes compile the same graph at once, the first rename wins and the other process uses
the winner's files (its own are discarded). A reader trusts `lib.so` only when its size and
SHA-256 match `meta.json`; a damaged entry (a truncated or garbled file, a missing sidecar) is
moved aside and rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from collections.abc import Callable

__all__ = ["cache_root", "CacheEntry", "lookup_or_build", "lookup_verified", "digest"]

LAYOUT_VERSION = "native-1"
LIB_NAME = "lib.so"


def cache_root() -> Path:
    env = os.environ.get("KILN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kiln"


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CacheEntry:
    """A verified library in the cache."""

    def __init__(self, directory: Path, hit: bool, build_seconds: float = 0.0):
        self.directory = directory
        self.hit = hit
        self.build_seconds = build_seconds

    @property
    def library(self) -> Path:
        return self.directory / LIB_NAME

    @property
    def source(self) -> Path:
        return self.directory / "source.c"


def _verify(directory: Path) -> bool:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        lib = directory / LIB_NAME
        if lib.stat().st_size != meta["size"]:
            return False
        return _file_sha256(lib) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _discard(directory: Path) -> None:
    """Move a damaged entry out of the way (atomically), then delete it."""
    trash = directory.with_name(f".trash-{directory.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(directory, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def lookup_verified(kind: str, key: str) -> CacheEntry | None:
    """The entry for `key` if it is in the cache and sound, else None (nothing is built; a
    damaged entry is left for lookup_or_build to replace)."""
    directory = cache_root() / LAYOUT_VERSION / kind / key
    return CacheEntry(directory, hit=True) if _verify(directory) else None


def lookup_or_build(kind: str, key: str, build: Callable[[Path], None],
                    source: str | None = None) -> CacheEntry:
    """The verified cache entry for `key`, built by `build(tmpdir)` when missing or damaged.

    `build` must write `lib.so` into the directory it is given (and may write other files).
    """
    directory = cache_root() / LAYOUT_VERSION / kind / key
    if directory.is_dir():
        if _verify(directory):
            return CacheEntry(directory, hit=True)
        _discard(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.perf_counter()
    try:
        if source is not None:
            (tmp / "source.c").write_text(source)
        build(tmp)
        lib = tmp / LIB_NAME
        meta = {"sha256": _file_sha256(lib), "size": lib.stat().st_size, "key": key,
                "kind": kind, "created": time.time(), "pid": os.getpid()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        elapsed = time.perf_counter() - started
        for _attempt in range(3):
            try:
                os.rename(tmp, directory)
                return CacheEntry(directory, hit=False, build_seconds=elapsed)
            except OSError:
                # Another process got there first: use its entry if it is sound.
                if _verify(directory):
                    return CacheEntry(directory, hit=False, build_seconds=elapsed)
                _discard(directory)
        raise OSError(f"could not install {tmp} as {directory}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
