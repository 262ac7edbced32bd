"""A file writer that hashes and writes on a second core.

Committing a container writes thousands of small files into one layer tar.
The caller fills large buffers (headers by ``write``, file data read straight
into the buffer by ``copy_from``); one thread hashes each full buffer, another
writes it with one syscall (hashlib and os.write release the GIL), while the
caller goes on filling the next one.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading

PIECE = 4 << 20
_BUFFERS = 4


class HashedWriter:
    """Write-only, sequential: ``write``/``copy_from``, then ``finish()`` for
    (sha256 hex, length) or ``abandon()``. It writes to ``fd`` (not closed here,
    not synced here) and has no ``fileno()``, so tar writers use ``copy_from``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(_BUFFERS - 1):
            self._free.put(bytearray(PIECE))
        self._full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._hashed: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._buf = bytearray(PIECE)
        self._view = memoryview(self._buf)
        self._used = 0
        self._hash = hashlib.sha256()
        self.size = 0
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._hash_all, name="hashed-writer-hash", daemon=True),
            threading.Thread(target=self._write_all, name="hashed-writer-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        done = 0
        while done < n:
            if self._used == PIECE:
                self._hand_off()
            k = min(n - done, PIECE - self._used)
            self._view[self._used : self._used + k] = data[done : done + k]
            self._used += k
            done += k
        return n

    def copy_from(self, fd: int, size: int) -> None:
        """Append ``size`` bytes read from the start of ``fd``."""
        offset = 0
        while offset < size:
            if self._used == PIECE:
                self._hand_off()
            want = min(size - offset, PIECE - self._used)
            got = os.preadv(fd, [self._view[self._used : self._used + want]], offset)
            if got == 0:
                raise OSError(f"file shrank while being written ({offset} of {size})")
            self._used += got
            offset += got

    def flush(self) -> None:
        """Nothing to do: buffers go out when full, and at ``finish``."""

    def finish(self) -> tuple[str, int]:
        if self._used:
            self._hand_off(last=True)
        self._join()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest(), self.size

    def abandon(self) -> None:
        self._join()

    def _join(self) -> None:
        self._full.put(None)
        for thread in self._threads:
            thread.join()

    def _hand_off(self, last: bool = False) -> None:
        if self._error is not None:
            raise self._error
        self._full.put((self._buf, self._used))
        if last:
            return
        self._buf = self._free.get()
        self._view = memoryview(self._buf)
        self._used = 0

    def _hash_all(self) -> None:
        while True:
            item = self._full.get()
            if item is not None:
                self._hash.update(memoryview(item[0])[: item[1]])
            self._hashed.put(item)  # only now may the buffer be written and reused
            if item is None:
                return

    def _write_all(self) -> None:
        while True:
            item = self._hashed.get()
            if item is None:
                return
            buf, used = item
            if self._error is None:
                try:
                    view = memoryview(buf)[:used]
                    while view:
                        view = view[os.write(self._fd, view) :]
                    self.size += used
                except BaseException as e:  # handed to the writer
                    self._error = e
            self._free.put(buf)
