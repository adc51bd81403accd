"""POSIX shared memory segments: the SharedMemory class, its names and the
resource tracker glue.  Plain Python: none of it is on a hot path."""

import atexit
import functools
import os
import secrets
import stat
import sys
import weakref

from pyshl._mapping import Mapping

try:
    from multiprocessing import shared_memory as _std_shared_memory
except ImportError:              # Python 3.7
    _std_shared_memory = None

__all__ = ["SharedMemory"]

# On Linux a POSIX shared memory object is a file here: opening and unlinking
# it directly is what glibc's shm_open/shm_unlink do, without needing them.
SHM_DIR = "/dev/shm"
# NAME_MAX for the file under SHM_DIR.
_NAME_MAX = 255


def _segment_path(name):
    """Validate a segment name and return its file's path."""
    if not isinstance(name, str):
        raise TypeError("a shared memory name must be a str, not %r" % type(name).__name__)
    stem = name.lstrip("/")
    if not stem:
        raise ValueError("a shared memory name must not be empty")
    if "\0" in name:
        raise ValueError("a shared memory name must not contain NUL characters")
    if "/" in stem:
        raise ValueError("a shared memory name must not contain '/' after its first character")
    encoded = os.fsencode(stem)
    if len(encoded) > _NAME_MAX:
        raise ValueError("shared memory name too long: %d bytes, the limit is %d"
                         % (len(encoded), _NAME_MAX))
    return os.path.join(os.fsencode(SHM_DIR), encoded)


def _identity(status):
    """What tells one segment from another that later takes its name."""
    return (status.st_dev, status.st_ino)


# Handles whose segment this process registered with the resource tracker.
_tracked = weakref.WeakSet()


@atexit.register
def _forget_gone_segments():
    for shm in list(_tracked):
        shm._forget_if_gone()


def _named_error(exc, name):
    """The same OSError, naming the segment rather than its file."""
    return OSError(exc.errno, os.strerror(exc.errno), name)


def open_segment(name, flags):
    """A descriptor for segment `name`, as shm_open(name, flags, 0o600) gives."""
    path = _segment_path(name)
    # O_NONBLOCK: opening a FIFO that someone put in SHM_DIR must not block.
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise _named_error(exc, name) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("%r in %s is not a shared memory segment (not a regular file)"
                         % (name, SHM_DIR))
    return fd


def unlink_segment(name):
    """shm_unlink(name); raises FileNotFoundError when it is already gone."""
    path = _segment_path(name)
    try:
        os.unlink(path)
    except OSError as exc:
        raise _named_error(exc, name) from None


def resource_tracker():
    """The standard resource tracker, or pyshl's own where Python has none (3.7)."""
    try:
        from multiprocessing import resource_tracker as tracker
    except ImportError:
        from pyshl import _tracker as tracker
    return tracker


def _tracker_running():
    """Does this process have (or share, from its parent) a resource tracker?"""
    tracker = resource_tracker()
    running = getattr(tracker, "_resource_tracker", None)     # the stdlib's instance
    if running is not None:
        return getattr(running, "_fd", None) is not None
    return getattr(tracker, "_helper", None) is not None       # pyshl's own (3.7)


class _SharedMemoryInterface:
    """The standard SharedMemory's interface, for Pythons without it (3.7)."""

    _name = None
    _fd = -1
    _mmap = None
    _buf = None
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True
    _readonly = False

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self):
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self):
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self):
        "A memoryview of contents of the shared memory block."
        return self._buf

    @property
    def name(self):
        "Unique name that identifies the shared memory block."
        return self._name[1:] if self._name.startswith("/") else self._name

    @property
    def size(self):
        "Size in bytes."
        return self._size


class SharedMemory(_std_shared_memory.SharedMemory if _std_shared_memory is not None
                   else _SharedMemoryInterface):
    """A POSIX shared memory segment: the standard library's SharedMemory, made safe.

    ``SharedMemory(name=None, create=False, size=0, *, track=None, readonly=False)``

    Differences from the standard library's class:

    * ``track`` (on every Python version): register the segment with the
      resource tracker, which unlinks it when this process exits.  The default
      ``None`` means "only if this handle created it": attaching never
      registers, so a process that only attaches can never unlink a segment.
    * ``readonly=True`` opens an existing segment read-only and maps it
      PROT_READ: ``buf`` is a read-only memoryview.
    * ``close()`` never raises BufferError: memoryviews and NumPy arrays of
      ``buf`` keep the memory mapped until the last of them goes.
    * Bad names (empty, NUL, '/', too long) raise ValueError.
    * Pages are reserved when the segment is created, so a segment larger
      than the free space in /dev/shm fails with OSError instead of a SIGBUS
      on first write.
    """

    def __init__(self, name=None, create=False, size=0, *, track=None, readonly=False):
        # Every argument is converted first: a str subclass's methods or a
        # __bool__ run Python code, which must not run once a segment exists.
        if isinstance(name, str):
            name = str.__str__(name)
        try:
            size = size.__index__()
        except AttributeError:
            raise TypeError("size must be an integer, not %r" % type(size).__name__) from None
        if size < 0:
            raise ValueError("'size' must be a positive integer")
        if size > sys.maxsize:
            raise ValueError("'size' of %d bytes is larger than this platform can map" % size)
        create = bool(create)
        readonly = bool(readonly)
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        if create and readonly:
            raise ValueError("a segment is created read-write: readonly=True only attaches")
        track = create if track is None else bool(track)
        flags = (os.O_CREAT | os.O_EXCL | os.O_RDWR) if create else \
            os.O_RDONLY if readonly else os.O_RDWR
        if name is None:
            while True:
                name = "psm_" + secrets.token_hex(4)
                try:
                    fd = open_segment(name, flags)
                except FileExistsError:
                    continue
                break
        else:
            fd = open_segment(name, flags)
        self._name = "/" + name
        try:
            if create:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)
                else:
                    os.ftruncate(fd, size)
            status = os.fstat(fd)
            size = status.st_size
            mapping = Mapping(fd, size, readonly, name, reserved=create)
        except BaseException:
            os.close(fd)
            if create:
                unlink_segment(name)
            raise
        # The mapping outlives the descriptor; holding no fd lets a process
        # attach to any number of segments.
        self._identity = _identity(status)
        os.close(fd)
        self._fd = -1
        self._flags = flags
        self._size = size
        self._mmap = mapping
        self._buf = memoryview(mapping.export())
        self._readonly = readonly
        self._track = False
        if track:
            try:
                resource_tracker().register(self._name, "shared_memory")
            except BaseException:
                if create:          # a segment nobody tracks would outlive us all
                    self.close()
                    unlink_segment(name)
                raise
            self._track = True
            self._tracker_pid = os.getpid()
            _tracked.add(self)

    @property
    def readonly(self):
        """True if this handle was attached with readonly=True (mapped PROT_READ)."""
        return self._readonly

    def __reduce__(self):
        # Unpickled, it attaches (never tracked, so never unlinked) as this
        # handle is: read-only if this one is.  The inherited reduction drops it.
        args = (self.name, False, self.size)
        if self._readonly:
            return functools.partial(type(self), readonly=True), args
        return type(self), args

    def close(self):
        """Close this handle; views of ``buf`` stay valid until they are dropped."""
        buf = self._buf
        self._buf = None
        if buf is not None:
            try:
                buf.release()
            except BufferError:
                pass  # views of it own Exports: they keep the memory mapped
        mapping = self._mmap
        if mapping is not None:
            mapping.close()     # unmapped now, or when its last user goes
        self._mmap = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._forget_if_gone()

    def unlink(self):
        """Remove the segment's name; the memory goes when the last mapping does.

        Raises FileNotFoundError if the name is gone already.  Either way the
        resource tracker this process shares (with its parent, say) forgets
        the name, so it never warns about it or unlinks it again at exit.
        """
        if not self._name:
            return
        try:
            unlink_segment(self.name)
        finally:
            self._untrack(gone=True)

    def _forget_if_gone(self):
        """Stop this process's tracker from warning at exit about a segment
        it registered that another process has unlinked.

        A child made by a plain os.fork() on Python 3.13.18+ and 3.14+ gets
        a tracker of its own (gh-146313): its unlink cannot reach ours.
        Checked on close() and at exit: the name is gone, or names another
        segment now.
        """
        # (getattr: close() also runs from __del__ of a half-made handle)
        if not getattr(self, "_track", False):
            return
        try:
            if self._tracker_pid != os.getpid():
                return
            try:
                still_ours = _identity(os.stat(_segment_path(self.name))) == self._identity
            except OSError:
                still_ours = False
        except (AttributeError, TypeError):
            # __del__ during interpreter teardown, this module's globals gone:
            # the atexit hook (_forget_gone_segments) has done this already.
            return
        if not still_ours:
            self._untrack(gone=True)    # whether or not the unlinker reached our tracker

    def _untrack(self, gone=False):
        """Stop the resource tracker from unlinking this segment at exit.

        With gone=True the name was just removed, so any registration of it is
        stale, possibly one made by another process sharing the tracker (a
        forked child holds its parent's handle, and either may unlink first).
        The tracker keeps a set and fails on removing a name it lacks, so the
        name is registered again first: the pair leaves it consistent
        whatever it held.
        """
        track, self._track = self._track, False
        if track or (gone and _tracker_running()):
            tracker = resource_tracker()
            if gone:
                tracker.register(self._name, "shared_memory")
            tracker.unregister(self._name, "shared_memory")
