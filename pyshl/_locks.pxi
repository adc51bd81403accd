# Lock: a cross-process mutex whose whole state is one int item, taken over when its holder dies.

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint32_t

import warnings

cdef extern from "_lock.h":
    uint32_t* lock_word "pyshl_lock_word"(char* slot) nogil
    uint32_t current_tid "pyshl_tid"() nogil
    uint32_t lock_holder "pyshl_lock_holder"(uint32_t* word) nogil
    int lock_try "pyshl_lock_try"(uint32_t* word, uint32_t tid) nogil
    int lock_acquire "pyshl_lock_acquire"(uint32_t* word, uint32_t tid, double timeout,
                                          const pyshl_region* region, double slice) nogil
    double now "pyshl_now"() nogil
    int lock_release "pyshl_lock_release"(uint32_t* word, uint32_t tid) nogil

# How long a waiter waits without the GIL before it runs signal handlers
# (Ctrl-C), as threading.Lock's wait is interrupted at once.
cdef double WAIT_SLICE = 0.02
# threading.TIMEOUT_MAX on Linux: longer timeouts raise OverflowError there.
cdef double TIMEOUT_MAX = 9223372036.0


class LockRecoveredWarning(RuntimeWarning):
    """A Lock was taken over from a holder that died holding it: what the lock
    protected may be half-updated."""


@cython.final
@cython.no_gc_clear
cdef class Lock:
    """A mutex whose whole state is one int item of a ShareableList.

    ``Lock(sl, index)``, or ``sl.lock(index)``.  The item holds 0 while the
    lock is free and the holder's thread id while it is held, so the lock
    needs no other segment or semaphore: it attaches and pickles with its list,
    by name.  The API is ``threading.Lock``'s.  Waiters sleep in the kernel (a
    futex on the item).  A waiter that finds the holder's thread gone takes the
    lock over within about 0.1 s, sets ``recovered`` and warns with
    LockRecoveredWarning.  The item must not be written by other code.

    A held lock keeps its list's memory mapped: closing the list while a
    thread holds the lock leaves that thread able to release() it.
    """
    cdef readonly ShareableList list
    cdef readonly Py_ssize_t index
    cdef readonly bint recovered     # the last acquire took over from a dead holder
    # The item's slot (not its futex word: lock_word() finds that, once),
    # checked when the lock was made, as Cell's: used only with the mapping
    # entered.
    cdef char* _slot
    # Acquisitions through this object not yet released through it: each is
    # a user of the list's mapping (region_join), dropped by its release()
    # or, if released through another Lock object, when this one goes.
    cdef Py_ssize_t _holds

    def __cinit__(self, ShareableList sl not None, index):
        self.index = _position(sl, index, "index out of range")
        self.list = sl
        cdef pyshl_region* r = _enter(sl)
        try:
            self._slot = _lock_slot(self)     # an int item, or TypeError now
        finally:
            region_leave(r)

    def __dealloc__(self):
        while holds_take(&self._holds):
            region_leave(&self.list._map.region)

    cdef inline uint32_t* _word_now(self) noexcept:
        """The fast paths' lock word, the mapping entered, if the list is open
        and writable and the item still an int; else NULL, not entered.  The
        caller leaves right after its access."""
        cdef ShareableList sl = self.list
        cdef Py_ssize_t k = self.index
        cdef pyshl_region* r = &sl._map.region
        if sl._map.readonly or not region_enter_brief(r):
            return NULL
        if (load_u64(sl._layout.formats + 8 * k) != KIND_FORMAT[KIND_INT]
                or load_code(sl._layout.codes + k) != CODE_NUMBER):
            region_leave_brief(r)
            return NULL
        return lock_word(self._slot)

    def acquire(self, blocking=True, timeout=-1):
        """Acquire the lock; with ``blocking`` or a ``timeout`` (seconds), wait
        for it.  Returns whether it was acquired."""
        cdef uint32_t* fast
        cdef bint taken
        if timeout is -1:                # (any blocking: a free lock is taken at once)
            fast = self._word_now()
            if fast != NULL:
                taken = lock_try(fast, current_tid())
                if taken:
                    self._hold()
                region_leave_brief(&self.list._map.region)
                if taken:
                    self.recovered = False
                    return True
        return self._acquire(blocking, timeout)

    cdef inline void _hold(self) noexcept:
        """Count an acquisition just made (the mapping entered): see _holds."""
        region_join(&self.list._map.region)
        holds_add(&self._holds)

    cdef object _acquire(self, object blocking, object timeout):
        cdef double seconds = timeout
        cdef bint block = blocking
        cdef uint32_t* word
        cdef uint32_t tid = current_tid()
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
        cdef pyshl_region* r = _enter_writable(self.list)     # mapped while we wait
        try:
            word = _lock_word(self)
            if lock_try(word, tid):
                self._hold()
                self.recovered = False
                return True
            if not block:
                seconds = 0
            deadline = now() + seconds
            while True:
                with nogil:
                    taken = lock_acquire(word, tid, seconds, r, WAIT_SLICE)
                if taken != 3:
                    break
                # Signal handlers run here; one that raises (KeyboardInterrupt)
                # leaves the lock not taken, as threading.Lock's does.
                PyErr_CheckSignals()
                if seconds >= 0:
                    seconds = max(deadline - now(), 0.0)
            if taken > 0:
                if region_closed(r):        # closed while we waited: not ours to take
                    lock_release(word, tid)
                    taken = -2
                else:
                    self._hold()
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
        It works on a closed list too, through the Lock that acquired it."""
        cdef uint32_t* fast = self._word_now()
        cdef int released
        cdef pyshl_region* r = &self.list._map.region
        if fast != NULL:
            released = lock_release(fast, current_tid())
            region_leave_brief(r)
            if released == 0:
                if holds_take(&self._holds):
                    region_leave(r)
                return
        self._release_slow()

    cdef int _release_slow(self) except -1:
        cdef pyshl_region* r = &self.list._map.region
        cdef int released = -1
        cdef bint entered = region_enter(r)
        cdef bint borrowed = False
        if not entered:
            # Closed: one of this object's holds keeps the memory mapped.
            borrowed = holds_take(&self._holds)
            if not borrowed:
                raise _closed_error()
        elif self.list._map.readonly:
            region_leave(r)
            _enter_writable(self.list)          # its TypeError
        try:
            released = lock_release(_lock_word(self), current_tid())
        finally:
            if released == 0:
                if borrowed or holds_take(&self._holds):
                    region_leave(r)             # the hold of the acquisition released
            elif borrowed:
                holds_add(&self._holds)         # not ours to release: give it back
            if entered:
                region_leave(r)
        if released < 0:
            raise RuntimeError("release of the lock on item %d, which this thread does "
                               "not hold" % self.index)
        return 0

    def locked(self):
        """Whether some thread, in any process, holds the lock."""
        cdef pyshl_region* r = _enter(self.list)
        try:
            return lock_holder(_lock_word(self)) != 0
        finally:
            region_leave(r)

    def __enter__(self):
        cdef uint32_t* fast = self._word_now()
        cdef bint taken = False
        if fast != NULL:
            taken = lock_try(fast, current_tid())
            if taken:
                self._hold()
            region_leave_brief(&self.list._map.region)
        if taken:
            self.recovered = False
        else:
            self._acquire(True, -1)
        return self

    def __exit__(self, exc_type, exc, tb):
        cdef uint32_t* fast = self._word_now()
        cdef int released = -1
        cdef pyshl_region* r = &self.list._map.region
        if fast != NULL:
            released = lock_release(fast, current_tid())
            region_leave_brief(r)
        if released != 0:
            self._release_slow()
        elif holds_take(&self._holds):
            region_leave(r)

    def __reduce__(self):
        return Lock, (self.list, self.index)

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
    holder's thread id and that its neighbour stays untouched.)
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
