# The ShareableList class, its methods thin over the concerns above, and its iterator.

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.slice cimport PySlice_Check
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset

import functools
import os
import sys

try:
    from types import GenericAlias as _GenericAlias
except ImportError:              # Python 3.6 to 3.8
    try:
        from typing import _GenericAlias
    except ImportError:          # 3.6 never calls __class_getitem__ (PEP 560 is 3.7)
        _GenericAlias = None


# The standard class's message for index() of a missing value, as the
# running Python words it (3.14 changed it).
cdef bint _INDEX_MISS_NEW = sys.version_info >= (3, 14)


# no_gc_clear: the garbage collector must never clear the mapping of a list
# (or of the objects below), which is set once and relied on to be there.
@cython.no_gc_clear
cdef class ShareableList:
    """ShareableList(sequence=None, *, name=None, track=None, readonly=False)
--

    A fixed-length list stored in a shared memory segment.

    A drop-in replacement for ``multiprocessing.shared_memory.ShareableList``
    that reads and writes the same segment layout, so either class can attach
    to a list the other created.  Items are int (signed 64-bit), float, bool,
    str, bytes or None.

    With a ``sequence`` (or no name) a new segment is created, named ``name``
    if given.  With only a ``name`` the existing segment is attached.
    ``track`` registers the segment with the resource tracker so that it is
    unlinked when this process exits; by default only the creator does.
    ``readonly=True`` attaches read-only: every write raises TypeError.

    ``shm`` is the list's SharedMemory (``shm.name`` names the segment).
    """
    def __cinit__(self, *args, **kwargs):
        self._map = _CLOSED

    def __dealloc__(self):
        if self._claims:
            claims_unregister(self._claims)    # its file's lock claims, with the last list

    def __init__(self, sequence=None, *, name=None, track=None, readonly=False):
        if exchange_long(&self._bound, 1):
            raise RuntimeError("this ShareableList is already bound to segment %r: make a "
                               "new ShareableList instead of calling __init__ again"
                               % (None if self.shm is None else self.shm.name))
        # Python-level arguments are converted before any segment exists.
        if isinstance(name, str):
            name = str.__str__(name)
        track = None if track is None else bool(track)
        readonly = bool(readonly)
        if name is None or sequence is not None:
            if readonly:
                raise ValueError("readonly=True attaches to an existing list: pass only name=")
            _create(self, sequence, name, track)
        else:
            _attach(self, name, track, readonly)

    # -- the sequence protocol ------------------------------------------------
    #
    # Every method follows the lifetime rule of _slots.pxi: convert every
    # argument, then _enter(), touch the segment, and leave in a `finally`.

    def __getitem__(self, index):
        if not PyLong_CheckExact(index) and PySlice_Check(index):
            return _get_slice(self, index)
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef int64_t raw
        cdef int kind = _read_number_brief(self, k, &raw)
        if kind == KIND_INT:
            return PyLong_FromLongLong(raw)
        if kind == KIND_FLOAT:
            return PyFloat_FromDouble(i64_as_double(raw))
        return _read_entering(self, k)

    def __setitem__(self, index, value):
        cdef Packed packed
        cdef Py_ssize_t k
        if PySlice_Check(index):
            _set_slice(self, index, value)
            return
        if not _pack_exact(value, &packed):
            value = _normalise(value)
            _pack_exact(value, &packed)
        k = _position(self, index, "assignment index out of range")
        if not _write_number_brief(self, k, &packed):
            _write_entering(self, k, &packed)

    def __delitem__(self, index):
        raise TypeError("ShareableList items cannot be deleted: its length is fixed")

    def __len__(self):
        _check_open(self)
        return self._layout.n

    def __iter__(self):
        _check_open(self)
        return _Iterator(self)

    def __contains__(self, value):
        return _scan(self, value, 0, True) >= 0

    def count(self, value):
        """The number of items equal to value (compared as Python's == does)."""
        return _scan(self, value, 1, False)

    def index(self, value):
        """The index of the first item equal to value.

        Raises ValueError if no item is equal to it."""
        cdef Py_ssize_t k = _scan(self, value, 0, False)
        if k < 0:
            if _INDEX_MISS_NEW:
                raise ValueError("ShareableList.index(x): x not in list")
            raise ValueError(f"{value!r} not in this container")
        return k

    def tolist(self):
        """The items as a new plain list."""
        cdef Py_ssize_t k, n = self._layout.n
        cdef pyshl_region* r = _enter(self)
        try:
            result = PyList_New(n)
            for k in range(n):
                item = _read(self, k)
                Py_INCREF(item)
                PyList_SET_ITEM(result, k, item)
            return result
        finally:
            region_leave(r)

    def view(self, start=None, stop=None, *, dtype=None):
        """A zero-copy NumPy array over items start..stop-1 of one numeric type.

        All int gives int64, all float float64, all bool bool (a strided view
        of each slot's flag byte).  Writes through the array are writes to the
        list, seen by every process at once.  It pickles as a reference to the
        segment (a SharedArray), so workers that receive it write into the same
        slots.  The array is typed by the items when it is made: see the guide
        on views for what it shows if another process later stores another type.  An
        empty range needs ``dtype``.  A list attached with readonly=True gives
        read-only arrays.

        Raises TypeError, naming the first index, if the range mixes types.
        """
        np = _numpy()
        cdef Py_ssize_t a, b, m
        wanted = None if dtype is None else np.dtype(dtype)
        if wanted is not None and wanted not in (np.dtype(np.int64), np.dtype(np.float64),
                                                 np.dtype(np.bool_)):
            raise ValueError("view() gives int64, float64 or bool arrays, not %s" % wanted)
        a, b, _ = slice(start, stop).indices(self._layout.n)
        m = max(b - a, 0)
        cdef pyshl_region* r = _enter(self)
        try:
            return _view_entered(self, np, a, b, m, wanted)
        finally:
            region_leave(r)

    def __array__(self, dtype=None, copy=None):
        """Zero-copy for a list of one numeric type; item by item otherwise."""
        np = _numpy()
        if dtype is not None:
            dtype = np.dtype(dtype)
        try:
            array = self.view()
        except (TypeError, ValueError):
            _check_open(self)
            if copy is False:
                raise ValueError("this ShareableList is not of one numeric type, so it "
                                 "cannot be an array without a copy")
            return np.array(self.tolist(), dtype=dtype)
        if dtype is not None and dtype != array.dtype:
            if copy is False:
                raise ValueError("converting to %s needs a copy" % dtype)
            return array.astype(dtype)
        return array.copy() if copy else array

    # -- atomics ----------------------------------------------------------------

    def fetch_add(self, index, delta):
        """Atomically add delta to an int or float item; return the previous value.

        Atomic across threads and processes (a compare-and-swap on the aligned
        8-byte slot).  An int item takes an int delta; an add that would
        overflow int64 raises OverflowError and leaves the item unchanged.  A
        float item takes an int or float delta.  Other items raise TypeError.
        """
        cdef int64_t fast, old
        cdef char* p
        cdef int64_t* seen
        cdef bint overflow
        if _exact_i64(delta, &fast):
            p = _int_slot_at(self, index, True)
            if p != NULL:
                seen = &self._seen[((p - self._layout.data) >> 3) & 63]
                overflow = fetch_add_i64_from(p, fast, guess_load(seen), &old)
                region_leave_brief(&self._map.region)
                if not overflow:
                    guess_store(seen, old + fast)
                    return PyLong_FromLongLong(old)
        cdef Number d
        _number_arg(delta, &d, "delta")
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef pyshl_region* r = _enter_writable(self)
        try:
            return _fetch_add_item(self, k, &d, delta)
        finally:
            region_leave(r)

    def compare_exchange(self, index, expected, desired):
        """Atomically: if item == expected, store desired; return whether it did.

        Same type only: an int item takes ints, a float item floats (compared
        as Python does: 0.0 == -0.0, NaN never equal).
        """
        cdef int64_t fast_expected, fast_desired
        cdef char* p
        cdef bint done
        if _exact_i64(expected, &fast_expected) and _exact_i64(desired, &fast_desired):
            p = _int_slot_at(self, index, True)
            if p != NULL:
                done = cas_i64(p, &fast_expected, fast_desired)
                region_leave_brief(&self._map.region)
                return done
        cdef Number e, w
        _number_arg(expected, &e, "expected")
        _number_arg(desired, &w, "desired")
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef pyshl_region* r = _enter_writable(self)
        try:
            return _compare_exchange_item(self, k, &e, &w, desired)
        finally:
            region_leave(r)

    def load(self, index):
        """Atomically read an int or float item (a sequentially consistent load)."""
        cdef int64_t value
        cdef uint64_t ticket = read_ticket(&self._map.region)
        cdef char* p = _int_slot_at(self, index, False)
        cdef bint overlapped
        if p != NULL:
            value = load_seq_i64(p)
            overlapped = read_overlapped(&self._map.region, ticket)   # a type change meanwhile
            region_leave_brief(&self._map.region)
            if not overlapped:
                return PyLong_FromLongLong(value)
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef pyshl_region* r = _enter(self)
        try:
            return _load_item(self, k)
        finally:
            region_leave(r)

    def store(self, index, value):
        """Atomically write an int or float item with a value of its own type."""
        cdef int64_t fast
        cdef char* p
        if _exact_i64(value, &fast):
            p = _int_slot_at(self, index, True)
            if p != NULL:
                store_seq_i64(p, fast)
                region_leave_brief(&self._map.region)
                return
        cdef Number v
        _number_arg(value, &v, "value")
        cdef Py_ssize_t k = _position(self, index, "assignment index out of range")
        cdef pyshl_region* r = _enter_writable(self)
        try:
            _store_item(self, k, &v, value)
        finally:
            region_leave(r)

    def lock(self, index):
        """A Lock whose whole state is int item ``index`` (0 = free): a mutex for
        compound updates, shared by every process that has the list."""
        return Lock(self, index)

    def cell(self, index):
        """A Cell bound to item ``index`` (an int or float): its atomics, without
        converting and checking the index on every call."""
        return Cell(self, index)

    def add_at(self, indices, deltas):
        """Atomically add deltas to the items at indices: numpy.add.at across processes.

        ``indices`` is an integer array (any shape; negative counts from the
        end); ``deltas`` an array broadcastable to it, or a scalar.  Repeated
        indices accumulate.  Every index and item type is checked before
        anything is added; the additions run with the GIL released.  An int
        item takes integer deltas, a float item any real deltas.  An addition
        that would overflow int64 is not applied; the others are, and then
        OverflowError says how many were skipped.
        """
        _add_at(self, indices, deltas)

    # -- metadata -------------------------------------------------------------

    @property
    def format(self):
        "The struct packing format used by all currently stored items."
        cdef Py_ssize_t k
        cdef uint64_t word
        cdef pyshl_region* r = _enter(self)
        try:
            parts = bytearray()
            for k in range(self._layout.n):
                word = load_u64(self._layout.formats + 8 * k)
                parts += PyBytes_FromStringAndSize(<char*>&word, 8).rstrip(b"\0")
            return parts.decode("utf-8")
        finally:
            region_leave(r)

    def _get_packing_format(self, position):
        "Gets the packing format for a single value stored in the list."
        cdef Py_ssize_t k = _position(self, position, "Requested position out of range")
        cdef uint64_t word
        cdef pyshl_region* r = _enter(self)
        try:
            word = load_u64(self._layout.formats + 8 * k)
        finally:
            region_leave(r)
        return PyBytes_FromStringAndSize(<char*>&word, 8).rstrip(b"\0").decode("utf-8")

    def _type_counts(self):
        """{type name: number of items}, with "corrupt" for unreadable slots."""
        cdef Py_ssize_t k
        cdef Slot s
        cdef int64_t start, end
        cdef Py_ssize_t counts[7]     # one per item kind, then "corrupt"
        memset(counts, 0, sizeof(counts))
        cdef pyshl_region* r = _enter(self)
        items_lock(r)          # (a type change by another thread: seen whole or not at all)
        for k in range(self._layout.n):
            if _decode_twice(self, k, &s, &start, &end) == SLOT_OK:
                counts[s.kind] += 1
            else:
                counts[6] += 1
        items_unlock(r)
        region_leave(r)
        names = [row[0] for row in ITEM_KINDS] + ["corrupt"]
        return {names[i]: counts[i] for i in range(7) if counts[i]}

    @property
    def closed(self):
        """True once close() was called on this list or on its ``shm``."""
        return region_closed(&self._map.region)

    @property
    def readonly(self):
        """True if this handle was attached with readonly=True: writes raise TypeError."""
        return self.shm is not None and self.shm.readonly

    # -- lifecycle ------------------------------------------------------------

    def close(self):
        """Close this handle: the list refuses access, the segment lives on.

        Views of the memory stay valid until they are dropped.  Safe to call
        more than once, before or after unlink().  Never unlinks.
        """
        region_close(&self._map.region)
        if self.shm is not None:
            self.shm.close()

    def unlink(self):
        """Remove the segment's name (once, from any one process).

        Handles that are open keep working; the memory is freed when the last
        of them is closed.  Raises FileNotFoundError if the name is gone.
        """
        if self.shm is None:
            raise ValueError("this ShareableList has no segment")
        self.shm.unlink()

    def __enter__(self):
        _check_open(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        """Close; and unlink, if this process created the segment.

        A forked child holds a copy of its parent's list: leaving a ``with``
        block there only closes the child's handle.
        """
        cdef long creator = exchange_long(&self._creator_pid, 0)
        self.close()
        if creator != 0 and creator == os.getpid():
            try:
                self.unlink()
            except FileNotFoundError:
                pass   # unlinked already, by this handle or another process

    # -- Python protocols -----------------------------------------------------

    def __reduce__(self):
        if self.shm is None:
            raise ValueError("this ShareableList has no segment to pickle")
        if self.shm.readonly:
            return functools.partial(type(self), name=self.shm.name, readonly=True), ()
        return functools.partial(type(self), name=self.shm.name), ()

    def __repr__(self):
        name = self.shm.name if self.shm is not None else None
        if region_closed(&self._map.region):
            return f"<closed {type(self).__name__} name={name!r}>"
        return f"{type(self).__name__}({self.tolist()}, name={name!r})"

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item if type(item) is tuple else (item,))


cdef object _view_entered(ShareableList self, object np, Py_ssize_t a, Py_ssize_t b,
                          Py_ssize_t m, object wanted):
    """view() of items a..b-1 (m of them), the mapping entered."""
    cdef Py_ssize_t bad, width
    cdef int64_t base
    cdef uint64_t word
    cdef int kind
    cdef Slot slot
    cdef pyshl_layout* layout = &self._layout
    if m == 0:
        if wanted is None:
            raise ValueError("an empty range has no item to take a dtype from: "
                             "pass dtype=")
        return np.empty(0, wanted)
    word = load_u64(layout.formats + 8 * a)
    kind = _parse_format(word, &width)
    if load_code(layout.codes + a) != CODE_NUMBER or not (
            kind == KIND_INT or kind == KIND_FLOAT or kind == KIND_BOOL):
        raise TypeError("item %d is %s: view() needs int, float or bool items"
                        % (a, _describe(self, a)))
    found = np.dtype(ITEM_KINDS[kind][4])
    if wanted is not None and wanted != found:
        raise TypeError("item %d is %s, not a %s" % (a, _describe(self, a), wanted))
    base = load_i64(layout.offsets + 8 * a)
    if base < 0 or base > layout.data_size - 8 * m:
        _slot(self, a, &slot)   # raises the precise error if the offsets are bad
        raise TypeError("items %d..%d are not contiguous 8-byte slots" % (a, b - 1))
    bad = uniform_prefix(layout, a, m, word, base)
    if bad < m:
        raise TypeError("item %d is %s, not %s like item %d: view() needs one numeric "
                        "type in contiguous 8-byte slots"
                        % (a + bad, _describe(self, a + bad), _describe(self, a), a))
    offset = layout.data - self._map.region.addr + base
    # The array is made over an Export: a user of the mapping while it lives.
    if kind == KIND_BOOL:   # the flag byte of each "xxxxxxx?" slot
        array = np.ndarray((m,), np.bool_, buffer=self._map.export(), offset=offset + 7,
                           strides=(8,))
    else:
        array = np.ndarray((m,), found, buffer=self._map.export(), offset=offset)
    return array.view(_shared_array())


@cython.no_gc_clear
cdef class _Iterator:
    """Reads items one by one, as iterating over the standard list does.

    Threads may share one: its list is set once and never cleared, and each
    index is taken atomically, so each item goes to one thread.
    """
    cdef ShareableList _list
    cdef Py_ssize_t _next        # the next index to hand out

    def __cinit__(self, ShareableList sl not None):
        self._list = sl
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef ShareableList sl = self._list
        cdef Py_ssize_t k
        if index_load(&self._next) >= sl._layout.n:
            raise StopIteration          # exhausted stays exhausted, closed or not
        cdef pyshl_region* r = _enter(sl)
        try:
            k = index_take(&self._next)
            if k >= sl._layout.n:
                raise StopIteration
            return _read(sl, k)
        finally:
            region_leave(r)

    def __length_hint__(self):
        if region_closed(&self._list._map.region):
            return 0
        return max(self._list._layout.n - index_load(&self._next), 0)
