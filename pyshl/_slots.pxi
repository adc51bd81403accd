# Slot access: pinning the mapping, indexes, decoding one slot, reading and writing items.

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.float cimport PyFloat_FromDouble
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_RawFree, PyMem_RawMalloc
from cpython.number cimport PyNumber_Index
from cpython.ref cimport Py_INCREF
from cpython.sequence cimport PySequence_Fast
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t
#
# Module-level functions, not methods, so that the hot paths are direct C
# calls even though ShareableList can be subclassed.


cdef object _closed_error():
    return ValueError("operation on a closed ShareableList")


# The lifetime rule (one for every call): convert every argument first (which
# may run Python code that closes the list), then _enter() the list's mapping,
# touch the segment, and region_leave() in a `finally`.  Between the two the
# memory stays mapped whatever any thread or callback does: close() only
# stops new entries, and the last leave unmaps (see _region.h).  The list's
# mapping is set once, at construction, and never replaced.

cdef inline pyshl_region* _enter(ShareableList sl) except NULL:
    """Become a user of the list's mapping, or raise if the list is closed."""
    cdef pyshl_region* r = &sl._map.region
    if not region_enter(r):
        raise _closed_error()
    return r


cdef inline pyshl_region* _enter_writable(ShareableList sl) except NULL:
    """_enter() for calls that write: also refuses a list attached read-only."""
    cdef pyshl_region* r = _enter(sl)
    if sl._map.readonly:
        region_leave(r)
        raise TypeError("this ShareableList was attached with readonly=True: "
                        "it cannot be written")
    return r


cdef inline int _check_open(ShareableList sl) except -1:
    """Raise if the list is closed now (for errors' order: callers then enter)."""
    if region_closed(&sl._map.region):
        raise _closed_error()
    return 0


cdef int _corrupt(ShareableList sl, Py_ssize_t k, str what) except -1:
    raise ValueError("ShareableList %r is corrupt at item %d: %s" % (sl.shm.name, k, what))


cdef inline Py_ssize_t _position(ShareableList sl, object index, str message) except -1:
    """Normalise an index into 0..n-1, raising IndexError outside -n..n-1.

    Converting the index may run Python code (__index__), so the list's being
    open is checked after it; callers then enter the mapping.
    """
    cdef long long k
    cdef int overflow = 0
    if not PyLong_CheckExact(index):
        index = PyNumber_Index(index)
    k = PyLong_AsLongLongAndOverflow(index, &overflow)
    _check_open(sl)
    if k < 0:
        k += sl._layout.n
    if overflow or <unsigned long long>k >= <unsigned long long>sl._layout.n:
        _out_of_range(sl, index, message)
    return <Py_ssize_t>k


cdef int _out_of_range(ShareableList sl, object index, str message) except -1:
    # The standard library's message first, then the index and the length.
    raise IndexError("%s: %d, for a ShareableList of %d items" % (message, index, sl._layout.n))


# ---------------------------------------------------------------------------
# Decoding one slot

# The decoded metadata of one slot.
cdef struct Slot:
    char* ptr          # first byte of the slot
    int64_t size       # slot capacity in bytes
    int kind           # the ItemKind it reads as
    Py_ssize_t width   # N of an "Ns" format entry; -1 for a number's format
    int code           # back-transform code
    uint64_t format    # the raw format entry


# What _decode finds wrong with a slot's metadata.
cdef enum:
    SLOT_OK = 0
    BAD_OFFSETS
    BAD_FORMAT
    TOO_WIDE
    TOO_SMALL
    BAD_CODE


cdef inline int _decode(ShareableList sl, Py_ssize_t k, Slot* s,
                        int64_t* start, int64_t* end) noexcept:
    """Read and check slot k's offsets, format entry and code (0 <= k < n)."""
    cdef pyshl_layout* layout = &sl._layout
    cdef int format_kind
    start[0] = load_i64(layout.offsets + 8 * k)
    end[0] = load_i64(layout.offsets + 8 * k + 8)
    if not (<uint64_t>start[0] <= <uint64_t>end[0] <= <uint64_t>layout.data_size):
        return BAD_OFFSETS
    s.ptr = layout.data + start[0]
    s.size = end[0] - start[0]
    s.format = load_u64(layout.formats + 8 * k)
    s.code = load_code(layout.codes + k)
    format_kind = _parse_format(s.format, &s.width)
    if format_kind == KIND_BAD:
        return BAD_FORMAT
    if s.width >= 0:
        if s.width > s.size:
            return TOO_WIDE
    elif s.size < 8:
        return TOO_SMALL
    # The code picks the kind: None whatever the format; str or bytes only
    # from an "Ns" format; a number as its format says.  ("xxxxxx?x" under
    # code 0 is what struct makes of it: a bool, at byte 6.)
    if s.code == KIND_CODE[KIND_NONE]:
        s.kind = KIND_NONE
    elif s.code == KIND_CODE[KIND_STR] or s.code == KIND_CODE[KIND_BYTES]:
        if s.width < 0:
            return BAD_CODE
        s.kind = KIND_STR if s.code == KIND_CODE[KIND_STR] else KIND_BYTES
    elif s.code == CODE_NUMBER:
        s.kind = KIND_BOOL if format_kind == KIND_NONE else format_kind
    else:
        return BAD_CODE
    return SLOT_OK


cdef inline int _decode_twice(ShareableList sl, Py_ssize_t k, Slot* s,
                              int64_t* start, int64_t* end) noexcept:
    """_decode(), looking once more before calling the slot corrupt: a process
    changing an item's type writes its format entry, then its code, so
    metadata seen in between is inconsistent."""
    cdef int problem = _decode(sl, k, s, start, end)
    if problem != SLOT_OK:
        problem = _decode(sl, k, s, start, end)
    return problem


cdef int _slot(ShareableList sl, Py_ssize_t k, Slot* s) except -1:
    """Decode slot k's metadata, validating every offset read (0 <= k < n)."""
    cdef int64_t start, end
    cdef int problem = _decode_twice(sl, k, s, &start, &end)
    if problem != SLOT_OK:
        _slot_error(sl, k, problem, s, start, end)
    return 0


cdef int _slot_error(ShareableList sl, Py_ssize_t k, int problem, Slot* s,
                     int64_t start, int64_t end) except -1:
    """Raise the ValueError that a _decode() problem calls for."""
    if problem == BAD_OFFSETS:
        _corrupt(sl, k, "slot offsets %d..%d outside the data area of %d bytes"
                 % (start, end, sl._layout.data_size))
    elif problem == BAD_FORMAT:
        _corrupt(sl, k, "unknown format entry %r"
                 % PyBytes_FromStringAndSize(<char*>&s.format, 8))
    elif problem == TOO_WIDE:
        _corrupt(sl, k, "format %ds is wider than its %d-byte slot" % (s.width, s.size))
    elif problem == TOO_SMALL:
        _corrupt(sl, k, "a %d-byte slot cannot hold a number" % s.size)
    elif problem == BAD_CODE:
        _corrupt(sl, k, "code %d does not go with its format" % s.code)
    return 0


cdef inline bint _flag(Slot* s) noexcept:
    """A bool slot's flag: byte 7 of "xxxxxxx?", byte 6 of "xxxxxx?x" under code 0."""
    return s.ptr[6 if s.format == KIND_FORMAT[KIND_NONE] else 7] != 0


cdef str _describe(ShareableList sl, Py_ssize_t k):
    """'an int', 'a str', ... for item k, or what is wrong with its slot."""
    cdef Slot s
    try:
        _slot(sl, k, &s)
    except ValueError as exc:
        return "unreadable (%s)" % exc
    if s.kind <= KIND_BOOL and s.size != 8:
        return "a number in a %d-byte slot" % s.size
    return ITEM_KINDS[s.kind][1]


# ---------------------------------------------------------------------------
# Reading and writing one item (0 <= k < n, mapping entered)
#
# Free-threaded builds keep the GIL's promise among threads (a read returns
# a value some thread wrote; see _region.h): writes hold the items lock,
# text is read under it, and a number read lock-free is checked against the
# write sequence.  With the GIL all of that compiles to nothing.  No Python
# object is made while the lock is held: a finalizer run by the allocation
# could call back into the list and wait for the lock forever.


cdef inline int _read_number_brief(ShareableList sl, Py_ssize_t k, int64_t* raw) noexcept:
    """Item k's 8 bytes and kind (KIND_INT or KIND_FLOAT) if the list is open and
    the item an int or a float, else -1.  The mapping is entered and left
    briefly (with the GIL only a check: no Python code runs before the load),
    which spares __getitem__ the full enter, leave and `finally`."""
    cdef uint64_t word
    cdef int code
    cdef int kind = -1
    cdef pyshl_region* r = &sl._map.region
    if not region_enter_brief(r):
        return -1
    cdef uint64_t ticket = read_ticket(r)
    cdef char* p = slot8(&sl._layout, k, &word, &code)
    if p != NULL and code == CODE_NUMBER:
        if word == KIND_FORMAT[KIND_INT]:
            kind = KIND_INT
        elif word == KIND_FORMAT[KIND_FLOAT]:
            kind = KIND_FLOAT
        if kind != -1:
            raw[0] = load_i64(p)
            if read_overlapped(r, ticket):
                kind = -1
    region_leave_brief(r)
    return kind


cdef inline object _read(ShareableList sl, Py_ssize_t k):
    """Item k as a Python object."""
    # Fast path: an int or float slot, validated in a few compares.
    cdef uint64_t word
    cdef int code
    cdef int64_t raw
    cdef pyshl_region* r = &sl._map.region
    cdef uint64_t ticket = read_ticket(r)
    cdef char* p = slot8(&sl._layout, k, &word, &code)
    if p != NULL and code == CODE_NUMBER:
        if word == KIND_FORMAT[KIND_INT]:
            raw = load_i64(p)
            if not read_overlapped(r, ticket):
                return PyLong_FromLongLong(raw)
        elif word == KIND_FORMAT[KIND_FLOAT]:
            raw = load_i64(p)
            if not read_overlapped(r, ticket):
                return PyFloat_FromDouble(i64_as_double(raw))
    return _read_slot(sl, k)


cdef object _read_entering(ShareableList sl, Py_ssize_t k):
    """_read() with the mapping entered and left (a function of its own so
    that its `finally` costs nothing on __getitem__'s fast path)."""
    cdef pyshl_region* r = _enter(sl)
    try:
        return _read(sl, k)
    finally:
        region_leave(r)


cdef object _read_slot(ShareableList sl, Py_ssize_t k):
    """Item k, its slot decoded and its bytes copied under the items lock."""
    cdef Slot s
    cdef int64_t start, end, raw = 0
    cdef int problem
    cdef Py_ssize_t length = 0
    cdef char small[256]
    cdef char* copy = small
    cdef pyshl_region* r = &sl._map.region
    items_lock(r)
    problem = _decode_twice(sl, k, &s, &start, &end)
    if problem == SLOT_OK:
        if s.kind == KIND_INT or s.kind == KIND_FLOAT:
            raw = load_i64(s.ptr)
        elif s.kind == KIND_BOOL:
            raw = _flag(&s)
        elif s.kind == KIND_STR or s.kind == KIND_BYTES:
            length = s.width
            if length > <Py_ssize_t>sizeof(small):
                copy = <char*>PyMem_RawMalloc(length)
            if copy != NULL:
                copy_out(copy, s.ptr, length)
    items_unlock(r)
    if problem != SLOT_OK:
        _slot_error(sl, k, problem, &s, start, end)
    if s.kind == KIND_NONE:
        return None
    if s.kind == KIND_INT:
        return PyLong_FromLongLong(raw)
    if s.kind == KIND_FLOAT:
        return PyFloat_FromDouble(i64_as_double(raw))
    if s.kind == KIND_BOOL:
        return raw != 0
    if copy == NULL:
        raise MemoryError()
    try:
        # Trailing NULs are padding, as the standard library reads them.
        while length > 0 and copy[length - 1] == 0:
            length -= 1
        # Decoded from the private copy: another process may write the slot
        # meanwhile, and CPython's decoder must see the very bytes it checked.
        if s.kind == KIND_STR:
            return PyUnicode_DecodeUTF8(copy, length, NULL)
        return PyBytes_FromStringAndSize(copy, length)
    finally:
        if copy != small:
            PyMem_RawFree(copy)


cdef inline int _write(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    """Store a packed value in slot k, or raise having written nothing."""
    # Fast path: a number (or None) into a valid slot already of its kind.
    cdef uint64_t word
    cdef int code
    cdef char* p
    cdef pyshl_region* r
    if v.kind <= KIND_NONE:
        r = &sl._map.region
        items_lock(r)
        p = slot8(&sl._layout, k, &word, &code)
        if p != NULL and word == KIND_FORMAT[v.kind] and code == KIND_CODE[v.kind]:
            store_i64(p, v.raw)
            items_unlock(r)
            return 0
        items_unlock(r)
    return _write_slot(sl, k, v)


cdef inline bint _write_number_brief(ShareableList sl, Py_ssize_t k, Packed* v) noexcept:
    """_write()'s fast path for __setitem__, the mapping entered and left
    briefly (see _read_number_brief): True if the list was open and writable
    and slot k already of the value's kind, and the value is written."""
    cdef uint64_t word
    cdef int code
    cdef char* p
    cdef bint done = False
    cdef pyshl_region* r = &sl._map.region
    if v.kind > KIND_NONE or sl._map.readonly or not region_enter_brief(r):
        return False
    items_lock(r)
    p = slot8(&sl._layout, k, &word, &code)
    if p != NULL and word == KIND_FORMAT[v.kind] and code == KIND_CODE[v.kind]:
        store_i64(p, v.raw)
        done = True
    items_unlock(r)
    region_leave_brief(r)
    return done


cdef int _write_entering(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    """_write() with the mapping entered and left (see _read_entering)."""
    cdef pyshl_region* r = _enter_writable(sl)
    try:
        _write(sl, k, v)
    finally:
        region_leave(r)
    return 0


# Why a value cannot go into a slot (beside _decode()'s problems).
cdef enum:
    TOO_LONG = 100
    FORMAT_LIMIT
    SMALL_FOR_NUMBER


cdef int _plan_write(ShareableList sl, Py_ssize_t k, Packed* v, Slot* s, int64_t* start,
                     int64_t* end, uint64_t* new_format, Py_ssize_t* width) noexcept:
    """How a packed value goes into slot k, or the problem that stops it."""
    cdef int problem = _decode_twice(sl, k, s, start, end)
    if problem != SLOT_OK:
        return problem
    if v.kind == KIND_STR or v.kind == KIND_BYTES:
        if v.size > s.size:
            return TOO_LONG
        if v.size <= s.width:
            new_format[0] = s.format    # an "Ns" slot keeps its format while the value fits
            width[0] = s.width
        else:
            if s.size > MAX_SLOT:
                return FORMAT_LIMIT
            new_format[0] = _text_format(s.size)
            width[0] = s.size
    else:
        if s.size < 8:      # an "Ns" slot another writer made smaller than a number
            return SMALL_FOR_NUMBER
        new_format[0] = KIND_FORMAT[v.kind]
        width[0] = 8
    return SLOT_OK


cdef int _write_error(ShareableList sl, Py_ssize_t k, int problem, Slot* s,
                      int64_t start, int64_t end) except -1:
    if problem == TOO_LONG:
        raise ValueError("bytes/str item exceeds available storage")
    if problem == FORMAT_LIMIT:
        _corrupt(sl, k, "a %d-byte slot is larger than a format can describe" % s.size)
    if problem == SMALL_FOR_NUMBER:
        raise ValueError("item %d's %d-byte slot cannot hold a number" % (k, s.size))
    return _slot_error(sl, k, problem, s, start, end)


cdef int _check_write(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    """Raise if a packed value cannot go into slot k now."""
    cdef Slot s
    cdef int64_t start, end
    cdef uint64_t new_format
    cdef Py_ssize_t width
    cdef int problem = _plan_write(sl, k, v, &s, &start, &end, &new_format, &width)
    if problem != SLOT_OK:
        _write_error(sl, k, problem, &s, start, end)
    return 0


cdef int _write_slot(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    cdef Slot s
    cdef int64_t start, end
    cdef uint64_t new_format
    cdef Py_ssize_t width
    cdef int problem
    cdef pyshl_region* r = &sl._map.region
    write_begin(r)
    problem = _plan_write(sl, k, v, &s, &start, &end, &new_format, &width)
    if problem == SLOT_OK:
        if s.format != new_format:
            store_i64(sl._layout.formats + 8 * k, <int64_t>new_format)
        if s.code != KIND_CODE[v.kind]:
            store_code(sl._layout.codes + k, KIND_CODE[v.kind])
        if v.kind == KIND_STR or v.kind == KIND_BYTES:
            copy_in(s.ptr, v.data, v.size)
            zero_fill(s.ptr + v.size, width - v.size)
        else:
            store_i64(s.ptr, v.raw)
    write_end(r)
    if problem != SLOT_OK:
        _write_error(sl, k, problem, &s, start, end)
    return 0


# ---------------------------------------------------------------------------
# Slices


cdef list _get_slice(ShareableList sl, object index):
    cdef Py_ssize_t start, stop, step, j, m
    start, stop, step = index.indices(sl._layout.n)     # may run __index__
    m = len(range(start, stop, step))
    cdef pyshl_region* r = _enter(sl)
    try:
        result = PyList_New(m)
        for j in range(m):
            item = _read(sl, start + j * step)
            Py_INCREF(item)
            PyList_SET_ITEM(result, j, item)
        return result
    finally:
        region_leave(r)


cdef int _set_slice(ShareableList sl, object index, object values) except -1:
    """Assign an equal-length sequence to a slice, validated in full first."""
    cdef Py_ssize_t start, stop, step, j, m
    cdef Packed* packed
    cdef pyshl_region* r
    # Converting the values and the bounds may run Python code: all of it
    # happens first, into a private list of exact builtins.
    values = PySequence_Fast(values, "can only assign an iterable to a ShareableList slice")
    values = [x if _is_exact(x) else _normalise(x) for x in values]
    start, stop, step = index.indices(sl._layout.n)
    m = len(range(start, stop, step))
    if len(values) != m:
        raise ValueError("attempt to assign a sequence of size %d to a slice of size %d: "
                         "a ShareableList's length is fixed" % (len(values), m))
    packed = <Packed*>PyMem_Malloc(max(m, 1) * sizeof(Packed))
    if packed == NULL:
        raise MemoryError()
    try:
        for j in range(m):
            _pack_exact(values[j], &packed[j])
        r = _enter_writable(sl)
        try:
            for j in range(m):
                _check_write(sl, start + j * step, &packed[j])
            for j in range(m):
                _write(sl, start + j * step, &packed[j])
        finally:
            region_leave(r)
    finally:
        PyMem_Free(packed)
    return 0
