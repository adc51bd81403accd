# Scans: count, index and `in` with Python's == semantics, in C.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport Py_EQ, PyObject_RichCompare, PyObject_RichCompareBool
from libc.math cimport floor, isfinite
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp

# Scans check slot metadata this many items at a time.
cdef enum:
    RUN = 256

# A scan's target: its ItemKind (KIND_OTHER: compared in Python, item by
# item).  A number is reduced to what a "q" slot must hold to equal it and
# what a "d" slot must hold (Python compares ints and floats exactly): both
# paths of a scan, vectorised runs and single items, compare just these.
cdef struct Target:
    int kind
    bint q_possible    # some int64 equals the target...
    int64_t q_value    # ...this one
    bint d_possible    # some double equals the target...
    double d_value     # ...this one
    const char* data   # str (UTF-8) / bytes targets
    Py_ssize_t size


cdef inline bint _float_to_i64(double x, int64_t* out) noexcept nogil:
    """True if x is integral and in int64 range (then exactly == *out)."""
    if not isfinite(x) or x != floor(x):
        return False
    if x < -9223372036854775808.0 or x >= 9223372036854775808.0:
        return False
    out[0] = <int64_t>x
    return True


cdef int _make_target(object value, Target* t) except -1:
    """Reduce a value to a Target; runs no Python code."""
    cdef int overflow = 0
    cdef int64_t exact
    t.kind = KIND_OTHER
    t.q_possible = t.d_possible = False
    if PyLong_CheckExact(value) or value is True or value is False:
        t.kind = KIND_INT
        t.q_value = PyLong_AsLongLongAndOverflow(value, &overflow)
        t.q_possible = not overflow
        if t.q_possible:
            t.d_value = <double>t.q_value
            t.d_possible = _float_to_i64(t.d_value, &exact) and exact == t.q_value
        else:
            # Outside int64, an int may still equal a double (2**63 == 2.0**63).
            try:
                t.d_value = float(value)
                t.d_possible = int(t.d_value) == value
            except OverflowError:
                t.d_possible = False
    elif PyFloat_CheckExact(value):
        t.kind = KIND_FLOAT
        t.d_value = PyFloat_AS_DOUBLE(value)
        t.d_possible = True          # NaN compares unequal by itself
        t.q_possible = _float_to_i64(t.d_value, &t.q_value)
    elif value is None:
        t.kind = KIND_NONE
    elif PyUnicode_CheckExact(value):
        t.kind = KIND_STR
        try:
            t.data = PyUnicode_AsUTF8AndSize(value, &t.size)
        except UnicodeEncodeError:
            t.kind = KIND_OTHER   # lone surrogates: no stored str can equal it
    elif PyBytes_CheckExact(value):
        t.kind = KIND_BYTES
        t.data = PyBytes_AS_STRING(value)
        t.size = PyBytes_GET_SIZE(value)
    return 0


cdef inline bint _number_equals(Target* t, Slot* s) noexcept:
    """Python's == between a target and a numeric slot (code 0)."""
    if s.kind == KIND_INT:
        return t.q_possible and load_i64(s.ptr) == t.q_value
    if s.kind == KIND_FLOAT:
        return t.d_possible and i64_as_double(load_i64(s.ptr)) == t.d_value
    return t.q_possible and _flag(s) == t.q_value     # a bool


cdef inline bint _bytes_equal(Target* t, Slot* s) noexcept:
    """The slot's bytes, trailing NULs stripped, equal the target's."""
    cdef Py_ssize_t length = s.width
    while length > 0 and s.ptr[length - 1] == 0:
        length -= 1
    return length == t.size and memcmp(s.ptr, t.data, <size_t>length) == 0


cdef inline int _slot_equals(ShareableList sl, Py_ssize_t k, Target* t) noexcept:
    """Python's == between a builtin-typed target and item k, without building
    the item: 1 or 0, or -1 if the slot is corrupt."""
    cdef Slot s
    cdef int64_t start, end
    if _decode_twice(sl, k, &s, &start, &end) != SLOT_OK:
        return -1
    if s.kind == KIND_NONE:
        return t.kind == KIND_NONE
    if s.kind == KIND_STR or s.kind == KIND_BYTES:
        return t.kind == s.kind and _bytes_equal(t, &s)
    return _number_equals(t, &s)


cdef Py_ssize_t _scan(ShareableList sl, object value, bint count_all, bint contains) except -2:
    """First index equal to value (-1 if none), or with count_all the count."""
    cdef Target t
    cdef Slot s
    cdef Py_ssize_t result, corrupt
    _make_target(value, &t)       # may allocate an exception: before entering
    if t.kind == KIND_OTHER:
        return _scan_python(sl, value, count_all, contains)
    cdef pyshl_region* r = _enter(sl)
    try:
        # Under the items lock (free-threaded builds: see _region.h), which no
        # Python code may run under: a corrupt slot is reported after it.
        items_lock(r)
        result = _scan_locked(sl, &t, count_all, &corrupt)
        items_unlock(r)
        if corrupt >= 0:
            _slot(sl, corrupt, &s)
            raise ValueError("ShareableList %r changed while it was scanned" % sl.shm.name)
        return result
    finally:
        region_leave(r)


cdef Py_ssize_t _scan_locked(ShareableList sl, Target* t, bint count_all,
                             Py_ssize_t* corrupt) noexcept:
    """_scan()'s loop; sets corrupt to the first unreadable slot (else -1)."""
    cdef Py_ssize_t k, j, m, hits, found = 0, n = sl._layout.n
    cdef int64_t start
    cdef uint64_t word
    cdef int equal
    cdef const pyshl_layout* layout = &sl._layout
    corrupt[0] = -1
    k = 0
    while k < n:
        m = min(RUN, n - k)
        word = load_u64(layout.formats + 8 * k)
        # A run of same-type numbers: checked and counted in one vectorised
        # pass (only checked where no number of its type can equal the target).
        hits = -1
        if word == KIND_FORMAT[KIND_INT]:
            hits = (count_run_i64(layout, k, m, word, t.q_value) if t.q_possible
                    else 0 if regular_run(layout, k, m, word) >= 0 else -1)
        elif word == KIND_FORMAT[KIND_FLOAT]:
            start = regular_run(layout, k, m, word)
            if start >= 0:
                hits = count_f64(layout.data + start, m, t.d_value) if t.d_possible else 0
        if hits >= 0:
            if hits and not count_all:
                for j in range(m):
                    if _slot_equals(sl, k + j, t) == 1:
                        return k + j
            found += hits
        else:
            for j in range(k, k + m):
                equal = _slot_equals(sl, j, t)
                if equal < 0:
                    corrupt[0] = j
                    return -1
                if equal:
                    if not count_all:
                        return j
                    found += 1
        k += m
    return found if count_all else -1


cdef Py_ssize_t _scan_python(ShareableList sl, object value, bint count_all,
                             bint contains) except -2:
    """The scan for values of other types: each item built and compared in Python."""
    cdef Py_ssize_t k, found = 0
    cdef bint hit
    cdef pyshl_region* r
    _check_open(sl)
    for k in range(sl._layout.n):
        # Entered per item: the comparison runs Python code, which may close the list.
        r = _enter(sl)
        try:
            item = _read(sl, k)
        finally:
            region_leave(r)
        if contains:
            hit = PyObject_RichCompareBool(item, value, Py_EQ)
        else:
            hit = bool(PyObject_RichCompare(value, item, Py_EQ))
        if hit:
            if not count_all:
                return k
            found += 1
    return found if count_all else -1
