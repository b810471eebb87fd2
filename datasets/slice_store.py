"""The on-disk slice cache: one memory-mapped .npy per volume and array kind, built once, shared.

Layout of a complete cache, ``CACHE_DIR/NAME-FINGERPRINT/``::

    manifest.json            version, fingerprint, what it was built from, one record per
                             volume (name, slices, shapes, dtypes, file sizes), the index's sha256
    images/00000.npy ...     (Z, C, H, W) float16 or float32, one file per volume
    labels/00000.npy ...     (Z, H, W) uint8 or uint16

One file per volume lets slices differ in (H, W) from volume to volume (resampled patch
sources) and lets several threads write at once. A build writes into ``NAME-FINGERPRINT.tmp-*``
under an exclusive lock, verifies every file, writes the manifest last and renames the folder:
a killed build leaves only a temporary folder, which the next build removes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Sequence
from typing import Callable, Optional

import numpy as np

from swin_unet.errors import InputError

__all__ = ["CACHE_VERSION", "CACHE_ENV", "resolve_cache_dir", "fingerprint", "SliceStore",
           "StoreBuilder", "CacheLock"]

logger = logging.getLogger(__name__)

# Raise when what a cache holds for the same inputs changes (resize, label rules, file layout).
CACHE_VERSION = 1
CACHE_ENV = "SWIN_UNET_CACHE"
MANIFEST = "manifest.json"
GIB = 1024 ** 3


def resolve_cache_dir(configured: Optional[str]) -> Path:
    """``data.cache_dir`` when set, else ``$SWIN_UNET_CACHE``, else ``cache/`` in the working
    folder."""
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get(CACHE_ENV) or "cache").expanduser()


def fingerprint(key: dict) -> str:
    """A short hash of everything that changes a cache's content (``key`` is JSON-able)."""
    text = json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_stamp(path: Path) -> list:
    """(absolute path, size, modification time in ns) of a source file, for the fingerprint."""
    status = Path(path).stat()
    return [str(Path(path).resolve()), status.st_size, status.st_mtime_ns]


def _index_checksum(volumes: list[dict]) -> str:
    return hashlib.sha256(json.dumps(volumes, sort_keys=True).encode()).hexdigest()


class SliceStore:
    """A complete cache opened read-only: ``len(store)`` slices, ``store.slice(i)``.

    Arrays are NumPy memory maps opened on first use; their pages belong to the operating
    system's page cache, shared by every process on the machine that maps the same files.
    Pickling (spawned loader workers) sends the folder, not the arrays.
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        volumes = manifest["volumes"]
        self.names = [v["name"] for v in volumes]
        self.lengths = [int(v["slices"]) for v in volumes]
        self.offsets = np.cumsum([0] + self.lengths)
        self._open: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_slices(self) -> int:
        return len(self)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays on disk (headers included)."""
        return sum(v["image_bytes"] + v["label_bytes"] for v in self.manifest["volumes"])

    def locate(self, index: int) -> tuple[int, int]:
        """(volume number, slice number in it) of slice ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"slice index {index} out of range for {len(self)} slices")
        volume = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return volume, int(index - self.offsets[volume])

    @property
    def images(self) -> "_Arrays":
        """``images[v]``: volume ``v``'s (Z, C, H, W) memory map (as :class:`SliceCache`)."""
        return _Arrays(self, 0)

    @property
    def labels(self) -> "_Arrays":
        """``labels[v]``: volume ``v``'s (Z, H, W) memory map."""
        return _Arrays(self, 1)

    def volume(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        """Volume ``v``'s (Z, C, H, W) images and (Z, H, W) labels, memory-mapped."""
        arrays = self._open.get(v)
        if arrays is None:
            arrays = (np.load(self.path / "images" / f"{v:05d}.npy", mmap_mode="r"),
                      np.load(self.path / "labels" / f"{v:05d}.npy", mmap_mode="r"))
            self._open[v] = arrays
        return arrays

    def slice(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``index``'s (C, H, W) image and (H, W) label (read-only views of the maps)."""
        v, z = self.locate(index)
        images, labels = self.volume(v)
        return images[z], labels[z]

    def __getstate__(self) -> dict:
        return {"path": self.path, "manifest": self.manifest}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["manifest"])

    @classmethod
    def open(cls, path: Path, key_fingerprint: str) -> Optional["SliceStore"]:
        """The complete cache at ``path``, or None when it is missing, partial or damaged."""
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            volumes = manifest["volumes"]
            if (manifest.get("version") != CACHE_VERSION
                    or manifest.get("fingerprint") != key_fingerprint
                    or manifest.get("index_sha256") != _index_checksum(volumes)):
                return None
            for v, record in enumerate(volumes):
                for kind in ("image", "label"):
                    file = path / f"{kind}s" / f"{v:05d}.npy"
                    if file.stat().st_size != record[f"{kind}_bytes"]:
                        return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(path, manifest)


class _Arrays(Sequence):
    """One kind of array of every volume of a store, opened when indexed."""

    def __init__(self, store: SliceStore, kind: int):
        self._store, self._kind = store, kind

    def __len__(self) -> int:
        return len(self._store.names)

    def __getitem__(self, v):
        if isinstance(v, slice):
            return [self[i] for i in range(*v.indices(len(self)))]
        if not -len(self) <= v < len(self):
            raise IndexError(f"volume {v} out of range for {len(self)} volumes")
        return self._store.volume(v % len(self))[self._kind]


class CacheLock:
    """An exclusive lock file (``flock``): the kernel drops it when its holder dies.

    The file records the holder's host and pid for the message of a process that waits.
    ``flock`` works across processes of one machine and on NFSv4; on other network file
    systems prefer one builder per node (``data.cache_shared: false``).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; without ``wait``, return False at once when another holds it."""
        import fcntl

        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot create the slice cache's lock file "
                             f"({exc.strerror or exc}); set data.cache_dir or {CACHE_ENV}",
                             path=self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                return False
            holder = self.path.read_text(errors="replace").strip() or "another process"
            logger.info("slice cache: waiting for %s, which is building it (lock %s)",
                        holder, self.path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Let the next process in (the file itself stays: removing it would race a waiter)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreBuilder:
    """Opens the cache of one set of inputs, building it first when no complete one exists.

    Parameters
    ----------
    cache_dir : Path
        Where caches live (:func:`resolve_cache_dir`).
    name : str
        A readable prefix of the folder name (data set, layout, size, dtype).
    key : dict
        Everything that changes the content (source file stamps, settings); hashed into the
        folder name and stored in the manifest.
    entries : sequence
        The volumes, in order; ``entry.name`` names each.
    prepare : callable
        ``prepare(entry)`` -> ((Z, C, H, W) images, (Z, H, W) labels), as stored.
    workers : int
        Threads reading and preparing volumes.
    estimate_bytes : int, optional
        The cache's expected size, checked against the free disk before anything is read;
        without it the check extrapolates from the first volume.
    """

    def __init__(self, cache_dir: Path, name: str, key: dict, entries: Sequence,
                 prepare: Callable, workers: int = 1, estimate_bytes: Optional[int] = None):
        self.cache_dir = Path(cache_dir)
        self.key = key
        self.fingerprint = fingerprint(key)
        self.path = self.cache_dir / f"{name}-{self.fingerprint}"
        self.entries = list(entries)
        self.prepare = prepare
        self.workers = max(1, int(workers))
        self.estimate_bytes = estimate_bytes
        self.lock = CacheLock(self.cache_dir / f"{self.path.name}.lock")

    def complete(self) -> Optional[SliceStore]:
        """The complete cache, if there is one (no lock needed: it appears by a rename)."""
        return SliceStore.open(self.path, self.fingerprint)

    def claim(self) -> bool:
        """Take the build lock without waiting, unless the cache is complete already.

        A builder rank claims before its peers start waiting, so that they wait for it.
        """
        if self.complete() is not None:
            return False
        self._make_dir()
        return self.lock.acquire(wait=False)

    def open(self) -> SliceStore:
        """The cache, reused or built (waiting while another process builds it).

        Raises
        ------
        InputError
            The cache folder cannot be written, the disk is too small, or a volume is bad.
        """
        store = self.complete()
        if store is not None and not self.lock.held:
            logger.info("slice cache: reused %d slices at %s", len(store), self.path)
            return store
        self._make_dir()
        try:
            self.lock.acquire(wait=True)
            store = self.complete()
            if store is not None:
                logger.info("slice cache: reused %d slices at %s", len(store), self.path)
                return store
            return self._build()
        finally:
            self.lock.release()

    def _make_dir(self) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.cache_dir}: cannot create the slice cache folder "
                             f"({exc.strerror or exc}); set data.cache_dir or {CACHE_ENV}",
                             path=self.cache_dir) from None

    def _check_disk(self, needed: int) -> None:
        free = shutil.disk_usage(self.cache_dir).free
        if needed > free:
            raise InputError(f"{self.cache_dir}: the slice cache needs about "
                             f"{needed / GIB:.2f} GiB but only {free / GIB:.2f} GiB are free "
                             f"there; set data.cache_dir or {CACHE_ENV} to a larger disk",
                             path=self.cache_dir)

    def _build(self) -> SliceStore:
        start = time.perf_counter()
        for leftover in sorted(self.cache_dir.glob(f"{self.path.name}.tmp-*")):
            logger.warning("slice cache: removing %s, left by a build that did not finish",
                           leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        if self.path.exists():
            logger.warning("slice cache: %s is incomplete or damaged; building it again",
                           self.path)
            shutil.rmtree(self.path)
        if self.estimate_bytes is not None:
            self._check_disk(self.estimate_bytes)
        tmp = self.cache_dir / f"{self.path.name}.tmp-{socket.gethostname()}-{os.getpid()}"
        try:
            for sub in ("images", "labels"):
                (tmp / sub).mkdir(parents=True)
            records = [self._write(tmp, 0)]
            if self.estimate_bytes is None:
                first = records[0]["image_bytes"] + records[0]["label_bytes"]
                self._check_disk(first * (len(self.entries) - 1))
            workers = min(self.workers, max(1, len(self.entries) - 1))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                records += list(pool.map(lambda v: self._write(tmp, v),
                                         range(1, len(self.entries))))
            self._verify(tmp, records)
            manifest = {"version": CACHE_VERSION, "fingerprint": self.fingerprint,
                        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key": self.key,
                        "volumes": records, "index_sha256": _index_checksum(records)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str),
                                        encoding="utf-8")
            _fsync(tmp / MANIFEST)
            os.replace(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        store = SliceStore(self.path, manifest)
        logger.info("slice cache: built %d slices (%.2f GiB) in %.1f s at %s", len(store),
                    store.nbytes / GIB, time.perf_counter() - start, self.path)
        return store

    def _write(self, tmp: Path, v: int) -> dict:
        entry = self.entries[v]
        images, labels = self.prepare(entry)
        if len(images) != len(labels) or images.shape[2:] != labels.shape[1:]:
            raise ValueError(f"{entry.name}: images {images.shape} and labels {labels.shape} "
                             f"do not match")
        record = {"name": entry.name, "slices": int(len(labels)),
                  "image_shape": list(images.shape), "image_dtype": images.dtype.str,
                  "label_shape": list(labels.shape), "label_dtype": labels.dtype.str}
        for kind, array in (("image", images), ("label", labels)):
            file = tmp / f"{kind}s" / f"{v:05d}.npy"
            try:
                np.save(file, np.ascontiguousarray(array))
                _fsync(file)
            except OSError as exc:
                raise InputError(f"{file}: cannot write the slice cache "
                                 f"({exc.strerror or exc})", path=file) from None
            record[f"{kind}_bytes"] = file.stat().st_size
        return record

    @staticmethod
    def _verify(tmp: Path, records: list[dict]) -> None:
        """Every file reads back with the shape and dtype recorded for it."""
        for v, record in enumerate(records):
            for kind in ("image", "label"):
                array = np.load(tmp / f"{kind}s" / f"{v:05d}.npy", mmap_mode="r")
                if (list(array.shape) != record[f"{kind}_shape"]
                        or array.dtype.str != record[f"{kind}_dtype"]):
                    raise OSError(f"{tmp}: {kind} file {v:05d}.npy did not read back as "
                                  f"written")
