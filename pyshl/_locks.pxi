# Lock: a cross-process mutex whose whole state is one int item, taken over when its holder dies.

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint32_t
from posix.types cimport dev_t, ino_t

import errno
import os
import threading
import warnings

cdef extern from "_lock.h":
    int claims_setup "pyshl_claims_setup"() nogil
    long claims_register "pyshl_claims_register"(dev_t dev, ino_t ino) nogil
    void claims_unregister "pyshl_claims_unregister"(long serial) nogil
    uint32_t claim_cached "pyshl_claim_cached"(long serial) nogil
    uint32_t claim_lookup "pyshl_claim_lookup"(long serial, int* fd) nogil
    long claim_take "pyshl_claim_take"(long serial, const char* path) nogil
    const void* thread_now "pyshl_thread_now"() nogil
    void claims_thread_gone "pyshl_claims_thread_gone"(const void* thread) nogil
    uint32_t* lock_word "pyshl_lock_word"(char* slot) nogil
    uint32_t lock_holder "pyshl_lock_holder"(uint32_t* word) nogil
    int lock_try "pyshl_lock_try"(uint32_t* word, uint32_t id) nogil
    int lock_acquire "pyshl_lock_acquire"(uint32_t* word, uint32_t id, int fd, double timeout,
                                          const pyshl_region* region, double slice) nogil
    double now "pyshl_now"() nogil
    int lock_release "pyshl_lock_release"(uint32_t* word, uint32_t id) nogil

if claims_setup() != 0:
    raise OSError("pyshl could not set up its lock claims (pthread_atfork)")


@cython.final
cdef class _ThreadClaims:
    """Kept in a threading.local by each thread that made a claim: it goes
    when the thread ends, and its claims with it (a lock the thread still
    held is then taken over).  (A pthread key's destructor would need glibc
    2.34's symbols in a manylinux2014 wheel.)"""
    cdef const void* _thread

    def __cinit__(self):
        self._thread = thread_now()

    def __dealloc__(self):
        claims_thread_gone(self._thread)


_thread_claims = threading.local()

# How long a waiter waits without the GIL before it runs signal handlers
# (Ctrl-C), as threading.Lock's wait is interrupted at once.
cdef double WAIT_SLICE = 0.02
# threading.TIMEOUT_MAX on Linux: longer timeouts raise OverflowError there.
cdef double TIMEOUT_MAX = 9223372036.0


class LockRecoveredWarning(RuntimeWarning):
    """A Lock was taken over from a holder that died holding it: what the lock
    protected may be half-updated."""

    def __init__(self, *args):      # a signature for inspect and help()
        RuntimeWarning.__init__(self, *args)


@cython.final
@cython.no_gc_clear
cdef class Lock:
    """Lock(sl, index)
--

    A mutex whose whole state is one int item of a ShareableList.

    ``Lock(sl, index)``, or ``sl.lock(index)``.  The item holds 0 while the
    lock is free and the holder's claim id while it is held, so the lock
    needs no other segment or semaphore: it attaches and pickles with its list,
    by name.  The API is ``threading.Lock``'s.  Waiters sleep in the kernel (a
    futex on the item).  The holder is named by its claim id, which means the
    same thread in every PID namespace; a waiter looks every 20 ms, and if it
    finds the holder's claim gone (its thread or process ended) it takes the
    lock over, sets ``recovered`` and warns with LockRecoveredWarning.  The
    item must not be written by other code.

    Attributes: ``list`` and ``index``, the item; ``recovered``, whether the
    last acquire() took the lock over from a dead holder.

    A Lock keeps its list's memory mapped while it exists (as a view of the
    list does): a thread that holds it when the list is closed can still
    release() it.
    """
    cdef readonly ShareableList list
    cdef readonly Py_ssize_t index
    cdef readonly bint recovered     # the last acquire took over from a dead holder
    # The item's slot (not its futex word: lock_word() finds that, once),
    # checked when the lock was made, as Cell's.  The Lock is a user of the
    # list's mapping for its whole life (_user), so the slot stays mapped.
    cdef char* _slot
    cdef bint _user
    cdef long _serial                # the list's file among lock claims (_claims.h)

    def __cinit__(self, ShareableList sl not None, index):
        self.index = _position(sl, index, "index out of range")
        self.list = sl
        self._serial = _claims_serial(sl)
        cdef pyshl_region* r = _enter(sl)
        try:
            self._slot = _lock_slot(self)     # an int item, or TypeError now
        except BaseException:
            region_leave(r)
            raise
        self._user = True                     # left in __dealloc__

    def __dealloc__(self):
        if self._user:
            region_leave(&self.list._map.region)

    cdef inline uint32_t* _word_if_int(self) noexcept:
        """The fast paths' lock word if the item is still an int (checked as
        Cell's are), else NULL.  Always mapped: the Lock is a user."""
        cdef ShareableList sl = self.list
        cdef Py_ssize_t k = self.index
        if (load_u64(sl._layout.formats + 8 * k) != KIND_FORMAT[KIND_INT]
                or load_code(sl._layout.codes + k) != CODE_NUMBER):
            return NULL
        return lock_word(self._slot)

    cdef inline bint _usable(self) noexcept:
        """The list is open and writable: acquire() may take the fast path."""
        return not self.list._map.readonly and not region_closed(&self.list._map.region)

    def acquire(self, blocking=True, timeout=-1):
        """Acquire the lock; with ``blocking`` or a ``timeout`` (seconds), wait
        for it.  Returns whether it was acquired."""
        cdef uint32_t* fast
        cdef uint32_t me = claim_cached(self._serial)
        if timeout is -1 and me != 0 and self._usable():   # (a free lock is taken at once)
            fast = self._word_if_int()
            if fast != NULL and lock_try(fast, me):
                self.recovered = False
                return True
        return self._acquire(blocking, timeout)

    cdef object _acquire(self, object blocking, object timeout):
        cdef double seconds = timeout
        cdef bint block = blocking
        cdef uint32_t* word
        cdef int fd
        cdef uint32_t me
        cdef int taken
        cdef double deadline
        if seconds != seconds:
            raise ValueError("Invalid value NaN (not a number)")
        if not block and seconds != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if seconds < 0 and seconds != -1:
            raise ValueError("timeout value must be a non-negative number")
        if seconds > TIMEOUT_MAX:
            raise OverflowError("timeout value is too large (threading.TIMEOUT_MAX is %.0f)"
                                % TIMEOUT_MAX)
        if self.list._map.readonly or region_closed(&self.list._map.region):
            _enter_writable(self.list)           # its ValueError or TypeError, first
        me = _claim(self, &fd)                   # (Python code may run: before entering)
        cdef pyshl_region* r = _enter_writable(self.list)     # mapped while we wait
        try:
            word = _lock_word(self)
            if lock_try(word, me):
                self.recovered = False
                return True
            if not block:
                seconds = 0
            deadline = now() + seconds
            while True:
                with nogil:
                    taken = lock_acquire(word, me, fd, seconds, r, WAIT_SLICE)
                if taken != 3:
                    break
                # Signal handlers run here; one that raises (KeyboardInterrupt)
                # leaves the lock not taken, as threading.Lock's does.
                PyErr_CheckSignals()
                if seconds >= 0:
                    seconds = max(deadline - now(), 0.0)
            if taken > 0 and region_closed(r):    # closed while we waited: not ours
                lock_release(word, me)
                taken = -2
        finally:
            region_leave(r)
        if taken == -2:
            raise _closed_error()
        if taken < 0:
            raise RuntimeError("this thread holds the lock on item %d already: waiting "
                               "for it would never end" % self.index)
        self.recovered = taken == 2
        if self.recovered:
            warnings.warn("the lock on item %d of ShareableList %r was taken over from a "
                          "holder that died holding it: what it protects may be "
                          "half-updated" % (self.index, self.list.shm.name),
                          LockRecoveredWarning, stacklevel=1)
        return taken > 0

    def release(self):
        """Release the lock, which this thread must hold (RuntimeError otherwise).
        It works on a closed list too: the Lock keeps the memory mapped."""
        cdef uint32_t me = claim_cached(self._serial)
        cdef uint32_t* fast
        if me != 0 and not self.list._map.readonly:    # (the same file's claim)
            fast = self._word_if_int()
            if fast != NULL and lock_release(fast, me) == 0:
                return
        self._release_slow()

    cdef int _release_slow(self) except -1:
        cdef ShareableList sl = self.list
        cdef int fd
        cdef uint32_t me = claim_lookup(self._serial, &fd)   # 0: never locked here
        if sl._map.readonly:
            _enter_writable(sl)                 # its ValueError or TypeError
        cdef uint32_t* word = _lock_word(self)  # (mapped: the Lock is a user)
        if me != 0 and lock_release(word, me) == 0:
            return 0                            # closed or not: the holder may release
        if region_closed(&sl._map.region):
            raise _closed_error()
        raise RuntimeError("release of the lock on item %d, which this thread does "
                           "not hold" % self.index)

    def locked(self):
        """Whether some thread, in any process, holds the lock."""
        cdef pyshl_region* r = _enter(self.list)
        try:
            return lock_holder(_lock_word(self)) != 0
        finally:
            region_leave(r)

    def __enter__(self):
        cdef uint32_t me = claim_cached(self._serial)
        cdef uint32_t* fast
        if me != 0 and self._usable():
            fast = self._word_if_int()
            if fast != NULL and lock_try(fast, me):
                self.recovered = False
                return self
        self._acquire(True, -1)
        return self

    def __exit__(self, exc_type, exc, tb):
        cdef uint32_t me = claim_cached(self._serial)
        cdef uint32_t* fast
        if me != 0 and not self.list._map.readonly:
            fast = self._word_if_int()
            if fast != NULL and lock_release(fast, me) == 0:
                return
        self._release_slow()

    def __reduce__(self):
        return Lock, (self.list, self.index)

    def _claim_id(self):
        """This thread's claim id on the list's file: what the item holds while
        this thread holds the lock (made now if this thread has none)."""
        cdef int fd
        return _claim(self, &fd)

    def __repr__(self):
        name = self.list.shm.name if self.list.shm is not None else None
        return "<Lock on item %d of ShareableList %r>" % (self.index, name)


cdef uint32_t* _lock_word(Lock lock) except NULL:
    """The lock item's futex word (the mapping entered by the caller)."""
    return lock_word(_lock_slot(lock))


cdef char* _lock_slot(Lock lock) except NULL:
    """The lock item's slot, an aligned int (the mapping entered by the caller).

    The futex word is lock_word() of it, applied once: on a big-endian
    machine it is the slot's second half.  (Applied twice, it would be the
    next item's: tests/test_locks.py checks that a held lock's item holds the
    holder's claim id and that its neighbour stays untouched.)
    """
    cdef Slot s
    cdef char* p = int_slot(&lock.list._layout, lock.index, KIND_FORMAT[KIND_INT])
    if p == NULL:
        _slot(lock.list, lock.index, &s)          # a corrupt slot: ValueError
        if s.kind != KIND_INT:
            raise TypeError("a lock needs an int item; item %d is %s"
                            % (lock.index, _describe(lock.list, lock.index)))
        _atomic_slot(lock.list, lock.index, &p, "lock")   # misaligned: ValueError
    return p


cdef long _claims_serial(ShareableList sl) except 0:
    """The list's file's serial among lock claims, the list counted among the
    file's users on its first Lock (once per list, whatever threads race)."""
    cdef long serial = load_long(&sl._claims)
    cdef long other
    if serial != 0:
        return serial
    dev, ino = sl._map.identity
    serial = claims_register(dev, ino)
    if serial == 0:
        raise MemoryError()
    other = exchange_long(&sl._claims, serial)
    if other != 0:
        claims_unregister(other)       # another thread registered it meanwhile (the same file)
    return serial


cdef uint32_t _claim(Lock lock, int* fd) except 0:
    """This thread's claim id on the lock's file and its descriptor, the claim
    made on this thread's first lock there: the file is opened by name and
    must be the one mapped."""
    cdef uint32_t me = claim_lookup(lock._serial, fd)
    cdef long made
    if me != 0:
        return me
    from pyshl._shm import _segment_path
    name = lock.list.shm.name
    cdef bytes path = os.fsencode(_segment_path(name))
    made = claim_take(lock._serial, path)
    if made == -errno.ESTALE or made == -errno.ENOENT:
        raise RuntimeError("the lock cannot name its holder: the segment %r was unlinked "
                           "or replaced since this list attached to it, and a lock claims "
                           "its file by name" % name)
    if made < 0:
        raise OSError(-made, "cannot claim a lock on segment %r: %s"
                      % (name, os.strerror(-made)))
    if getattr(_thread_claims, "guard", None) is None:
        _thread_claims.guard = _ThreadClaims()
    return claim_lookup(lock._serial, fd)
