# Atomic updates of one int or float item: fetch_add, compare_exchange, load, store.

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_FromDouble
from cpython.long cimport PyLong_AsDouble, PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.number cimport PyIndex_Check, PyNumber_Index
from libc.stdint cimport int64_t, uint64_t, uintptr_t

import sys


# A numeric argument, converted before any slot is read (conversion may run
# Python code).
cdef struct Number:
    bint is_int
    bint overflow          # an int outside int64
    bint float_overflow    # an int outside the float range
    int64_t ival
    double dval            # the value as a float (ints too, for float items)


cdef inline int _number_arg(object value, Number* out, str what) except -1:
    cdef int overflow = 0
    if PyLong_CheckExact(value):
        out.is_int = True
        out.ival = PyLong_AsLongLongAndOverflow(value, &overflow)
        out.overflow = overflow != 0
        out.float_overflow = False
        if not overflow:
            out.dval = <double>out.ival
            return 0
        try:
            out.dval = PyLong_AsDouble(value)   # an exact int: no Python code runs
        except OverflowError:
            out.float_overflow = True
        return 0
    return _number_arg_other(value, out, what)


cdef int _number_arg_other(object value, Number* out, str what) except -1:
    out.overflow = out.float_overflow = False
    if PyFloat_Check(value):
        out.is_int = False
        out.dval = PyFloat_AS_DOUBLE(value)
        return 0
    if PyIndex_Check(value) and not (value is True or value is False):
        return _number_arg(int(PyNumber_Index(value)), out, what)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.floating) and value.dtype.itemsize <= 8:
        out.is_int = False
        out.dval = float(value)
        return 0
    raise TypeError("%s must be an int or a float, not %r" % (what, type(value).__name__))


cdef inline int _atomic_slot(ShareableList sl, Py_ssize_t k, char** ptr, str op) except -1:
    """Point at item k's aligned 8-byte slot, which must hold an int or a float;
    return its kind.  The pointer is valid until the caller leaves the mapping."""
    cdef uint64_t word
    cdef int code
    cdef char* p = slot8(&sl._layout, k, &word, &code)
    if (p != NULL and code == CODE_NUMBER and (<uintptr_t>p & 7) == 0
            and (word == KIND_FORMAT[KIND_INT] or word == KIND_FORMAT[KIND_FLOAT])):
        ptr[0] = p
        return KIND_INT if word == KIND_FORMAT[KIND_INT] else KIND_FLOAT
    return _atomic_slot_checked(sl, k, ptr, op)


cdef int _atomic_slot_checked(ShareableList sl, Py_ssize_t k, char** ptr, str op) except -1:
    cdef Slot s
    _slot(sl, k, &s)
    if not (s.kind == KIND_INT or s.kind == KIND_FLOAT):
        raise TypeError("%s needs an int or float item; item %d is %s"
                        % (op, k, _describe(sl, k)))
    if (<uintptr_t>s.ptr) & 7:
        raise ValueError("item %d is not 8-byte aligned, so it cannot be updated "
                         "atomically" % k)
    ptr[0] = s.ptr
    return s.kind


# Fast paths: exact ints and a valid, aligned int slot, the mapping entered
# and left briefly (region_enter_brief: with the GIL only a check, since no
# Python code runs before the one access); anything else (and every error)
# takes the full path below.

cdef inline bint _exact_i64(object value, int64_t* out) noexcept:
    """value as an int64, if it is an exact int that fits."""
    return PyLong_CheckExact(value) and exact_int_value(value, out)


cdef inline char* _int_slot_now(ShareableList sl, Py_ssize_t k, bint write) noexcept:
    """Item k's int slot, the mapping entered, if the list is open (and
    writable) and the item an aligned int; else NULL, not entered.  The
    caller leaves right after its access."""
    cdef pyshl_region* r = &sl._map.region
    cdef char* p
    if (write and sl._map.readonly) or not region_enter_brief(r):
        return NULL
    p = int_slot(&sl._layout, k, KIND_FORMAT[KIND_INT])
    if p == NULL:
        region_leave_brief(r)
    return p


cdef inline char* _int_slot_at(ShareableList sl, object index, bint write) noexcept:
    """_int_slot_now() of an index that is an exact int in range, else NULL."""
    cdef int64_t k
    if not _exact_i64(index, &k):
        return NULL
    if k < 0:
        k += sl._layout.n
    if <uint64_t>k >= <uint64_t>sl._layout.n:
        return NULL
    return _int_slot_now(sl, k, write)


# The operations on item k, its arguments converted and the mapping entered:
# shared by the list's methods (which take an index) and Cell's (bound to one).

cdef inline object _fetch_add_item(ShareableList sl, Py_ssize_t k, Number* d, object delta):
    cdef char* p
    cdef int64_t old
    if _atomic_slot(sl, k, &p, "fetch_add") == KIND_INT:
        if not d.is_int:
            raise TypeError("cannot add a float to item %d, an int (store a float "
                            "there first)" % k)
        if d.overflow or fetch_add_i64(p, d.ival, &old):
            raise OverflowError("adding %r to item %d would overflow int64; the item "
                                "is unchanged" % (delta, k))
        return PyLong_FromLongLong(old)
    if d.float_overflow:
        raise OverflowError("delta %r is too large for a float" % (delta,))
    return PyFloat_FromDouble(fetch_add_f64(p, d.dval))


cdef inline bint _compare_exchange_item(ShareableList sl, Py_ssize_t k, Number* e,
                                        Number* w, object desired) except -1:
    cdef char* p
    cdef int64_t current, want
    if _atomic_slot(sl, k, &p, "compare_exchange") == KIND_INT:
        if not (e.is_int and w.is_int):
            raise TypeError("item %d is an int: expected and desired must be ints" % k)
        if w.overflow:
            raise OverflowError("desired %r does not fit in int64" % (desired,))
        if e.overflow:
            return False
        current = e.ival
        return cas_i64(p, &current, w.ival)
    if e.is_int or w.is_int:
        raise TypeError("item %d is a float: expected and desired must be floats" % k)
    want = double_as_i64(w.dval)
    current = load_i64(p)
    while i64_as_double(current) == e.dval:
        if cas_i64(p, &current, want):
            return True
    return False


cdef inline object _load_item(ShareableList sl, Py_ssize_t k):
    cdef char* p
    if _atomic_slot(sl, k, &p, "load") == KIND_INT:
        return PyLong_FromLongLong(load_seq_i64(p))
    return PyFloat_FromDouble(i64_as_double(load_seq_i64(p)))


cdef inline int _store_item(ShareableList sl, Py_ssize_t k, Number* v, object value) except -1:
    cdef char* p
    if _atomic_slot(sl, k, &p, "store") == KIND_INT:
        if not v.is_int:
            raise TypeError("item %d is an int: store() keeps the type, use sl[i] = v "
                            "to change it" % k)
        if v.overflow:
            raise OverflowError("%r does not fit in int64" % (value,))
        store_seq_i64(p, v.ival)
    else:
        if v.is_int:
            raise TypeError("item %d is a float: store() keeps the type, use sl[i] = v "
                            "to change it" % k)
        store_seq_i64(p, double_as_i64(v.dval))
    return 0


@cython.final
@cython.no_gc_clear
cdef class Cell:
    """Cell(sl, index)
--

    One int or float item of a ShareableList, bound for atomic operations.

    ``Cell(sl, index)``, or ``sl.cell(index)``.  Its methods are the list's
    atomics without the index: the index is converted and checked once, when
    the cell is made, and each call checks only that the list is open and the
    item still holds an int or a float.  A cell keeps its list alive and
    pickles with it, by name.

    Attributes: ``list`` and ``index``, the item.
    """
    cdef readonly ShareableList list
    cdef readonly Py_ssize_t index
    # The item's slot, checked when the cell was made (in the data area, 8
    # bytes, aligned), or NULL.  Used only with the mapping entered: a list's
    # mapping is never replaced, and offsets are never rewritten (a hostile
    # rewrite leaves this a stale slot, still inside the mapping).
    cdef char* _slot
    cdef int64_t _seen      # fetch_add's guess: what the item held after our last add

    def __cinit__(self, ShareableList sl not None, index):
        cdef uint64_t word
        cdef int code
        self.index = _position(sl, index, "index out of range")
        self.list = sl
        cdef pyshl_region* r = _enter(sl)
        self._slot = slot8(&sl._layout, self.index, &word, &code)
        region_leave(r)
        if (<uintptr_t>self._slot) & 7:
            self._slot = NULL

    cdef inline char* _int_now(self, bint write) noexcept:
        """The item's slot, the mapping entered, if the list is open (and
        writable) and the item an int; else NULL, not entered.  The fast
        path: the caller leaves right after its access."""
        cdef ShareableList sl = self.list
        cdef Py_ssize_t k = self.index
        cdef pyshl_region* r = &sl._map.region
        if self._slot == NULL or (write and sl._map.readonly) or not region_enter_brief(r):
            return NULL
        if (load_u64(sl._layout.formats + 8 * k) != KIND_FORMAT[KIND_INT]
                or load_code(sl._layout.codes + k) != CODE_NUMBER):
            region_leave_brief(r)
            return NULL
        return self._slot

    def fetch_add(self, delta):
        """Atomically add delta to the item; return the previous value."""
        cdef Number d
        cdef ShareableList sl = self.list
        cdef int64_t fast, old
        cdef char* p
        cdef bint overflow
        if _exact_i64(delta, &fast):
            p = self._int_now(True)
            if p != NULL:
                overflow = fetch_add_i64_from(p, fast, guess_load(&self._seen), &old)
                region_leave_brief(&sl._map.region)
                if not overflow:
                    guess_store(&self._seen, old + fast)
                    return PyLong_FromLongLong(old)
        _number_arg(delta, &d, "delta")
        cdef pyshl_region* r = _enter_writable(sl)
        try:
            return _fetch_add_item(sl, self.index, &d, delta)
        finally:
            region_leave(r)

    def compare_exchange(self, expected, desired):
        """Atomically: if the item == expected, store desired; return whether it did."""
        cdef Number e, w
        cdef ShareableList sl = self.list
        cdef int64_t fast_expected, fast_desired
        cdef char* p
        cdef bint done
        if _exact_i64(expected, &fast_expected) and _exact_i64(desired, &fast_desired):
            p = self._int_now(True)
            if p != NULL:
                done = cas_i64(p, &fast_expected, fast_desired)
                region_leave_brief(&sl._map.region)
                return done
        _number_arg(expected, &e, "expected")
        _number_arg(desired, &w, "desired")
        cdef pyshl_region* r = _enter_writable(sl)
        try:
            return _compare_exchange_item(sl, self.index, &e, &w, desired)
        finally:
            region_leave(r)

    def load(self):
        """Atomically read the item."""
        cdef ShareableList sl = self.list
        cdef int64_t value
        cdef uint64_t ticket = read_ticket(&sl._map.region)
        cdef char* p = self._int_now(False)
        cdef bint overlapped
        if p != NULL:
            value = load_seq_i64(p)
            overlapped = read_overlapped(&sl._map.region, ticket)   # a type change meanwhile
            region_leave_brief(&sl._map.region)
            if not overlapped:
                return PyLong_FromLongLong(value)
        cdef pyshl_region* r = _enter(sl)
        try:
            return _load_item(sl, self.index)
        finally:
            region_leave(r)

    def store(self, value):
        """Atomically write the item with a value of its own type."""
        cdef Number v
        cdef ShareableList sl = self.list
        cdef int64_t fast
        cdef char* p
        if _exact_i64(value, &fast):
            p = self._int_now(True)
            if p != NULL:
                store_seq_i64(p, fast)
                region_leave_brief(&sl._map.region)
                return
        _number_arg(value, &v, "value")
        cdef pyshl_region* r = _enter_writable(sl)
        try:
            _store_item(sl, self.index, &v, value)
        finally:
            region_leave(r)

    def __reduce__(self):
        return Cell, (self.list, self.index)

    def __repr__(self):
        name = self.list.shm.name if self.list.shm is not None else None
        return "<Cell %d of ShareableList %r>" % (self.index, name)
