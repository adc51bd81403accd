# Slot access: pinning the mapping, indexes, decoding one slot, reading and writing items.

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.float cimport PyFloat_FromDouble
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyNumber_Index
from cpython.ref cimport Py_INCREF
from cpython.sequence cimport PySequence_Fast
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memset
#
# Module-level functions, not methods, so that the hot paths are direct C
# calls even though ShareableList can be subclassed.


cdef object _closed_error():
    return ValueError("operation on a closed ShareableList")


cdef inline Mapping _pin(ShareableList sl):
    """The list's mapping, to be held while the caller touches the segment.

    Call it after every argument is converted (conversion may run Python code
    that closes the list) and before the first access: it raises if the list
    is closed, and the reference it returns keeps the memory mapped should
    Python code run later in the call and close the list.
    """
    _check_open(sl)
    return sl._map


cdef inline int _check_open(ShareableList sl) except -1:
    """_pin()'s check, for _position(), whose callers then pin."""
    if sl._map.closed:
        raise _closed_error()
    return 0


cdef inline Mapping _pin_writable(ShareableList sl):
    """_pin() for calls that write: also refuses a list attached read-only."""
    cdef Mapping m = _pin(sl)
    if m.readonly:
        raise TypeError("this ShareableList was attached with readonly=True: "
                        "it cannot be written")
    return m


cdef int _corrupt(ShareableList sl, Py_ssize_t k, str what) except -1:
    raise ValueError("ShareableList %r is corrupt at item %d: %s" % (sl.shm.name, k, what))


cdef inline Py_ssize_t _position(ShareableList sl, object index, str message) except -1:
    """Normalise an index into 0..n-1, raising IndexError outside -n..n-1.

    Converting the index may run Python code (__index__), so the list's being
    open is checked after it; callers then pin the mapping to hold it.
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
    s.code = <uint8_t>layout.codes[k]
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


cdef int _slot(ShareableList sl, Py_ssize_t k, Slot* s) except -1:
    """Decode slot k's metadata, validating every offset read (0 <= k < n)."""
    cdef int64_t start, end
    cdef int problem = _decode(sl, k, s, &start, &end)
    if problem == SLOT_OK:
        return 0
    # A process changing this item's type writes its format entry, then its
    # code: metadata seen in between is inconsistent.  Look once more before
    # calling the slot corrupt.
    problem = _decode(sl, k, s, &start, &end)
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
# Reading and writing one item (0 <= k < n, mapping pinned)


cdef inline object _read(ShareableList sl, Py_ssize_t k):
    """Item k as a Python object."""
    # Fast path: an int or float slot, validated in a few compares.
    cdef uint64_t word
    cdef int code
    cdef char* p = slot8(&sl._layout, k, &word, &code)
    if p != NULL and code == CODE_NUMBER:
        if word == KIND_FORMAT[KIND_INT]:
            return PyLong_FromLongLong(load_i64(p))
        if word == KIND_FORMAT[KIND_FLOAT]:
            return PyFloat_FromDouble(i64_as_double(load_i64(p)))
    return _read_slot(sl, k)


cdef object _read_slot(ShareableList sl, Py_ssize_t k):
    cdef Slot s
    cdef Py_ssize_t length
    _slot(sl, k, &s)
    if s.kind == KIND_NONE:
        return None
    if s.kind == KIND_INT:
        return PyLong_FromLongLong(load_i64(s.ptr))
    if s.kind == KIND_FLOAT:
        return PyFloat_FromDouble(i64_as_double(load_i64(s.ptr)))
    if s.kind == KIND_BOOL:
        return _flag(&s)
    # Trailing NULs are padding, as the standard library reads them.
    length = s.width
    while length > 0 and s.ptr[length - 1] == 0:
        length -= 1
    if s.kind == KIND_STR:
        return _decode_utf8(s.ptr, length)
    return PyBytes_FromStringAndSize(s.ptr, length)


cdef object _decode_utf8(const char* text, Py_ssize_t length):
    """Decode from a private copy: another process may write the slot
    meanwhile, and CPython's decoder must see the very bytes it checked."""
    cdef char small[256]
    cdef char* copy = small
    if length > 256:
        copy = <char*>PyMem_Malloc(length)
        if copy == NULL:
            raise MemoryError()
    memcpy(copy, text, length)
    try:
        return PyUnicode_DecodeUTF8(copy, length, NULL)
    finally:
        if copy != small:
            PyMem_Free(copy)


cdef inline int _write(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    """Store a packed value in slot k, or raise having written nothing."""
    # Fast path: a number (or None) into a valid slot already of its kind.
    cdef uint64_t word
    cdef int code
    cdef char* p
    if v.kind <= KIND_NONE:
        p = slot8(&sl._layout, k, &word, &code)
        if p != NULL and word == KIND_FORMAT[v.kind] and code == KIND_CODE[v.kind]:
            store_i64(p, v.raw)
            return 0
    return _write_slot(sl, k, v)


cdef int _check_write(ShareableList sl, Py_ssize_t k, Packed* v, Slot* s,
                      uint64_t* new_format, Py_ssize_t* width) except -1:
    """Decide how a packed value goes into slot k; raise if it cannot."""
    _slot(sl, k, s)
    if v.kind == KIND_STR or v.kind == KIND_BYTES:
        if v.size > s.size:
            raise ValueError("bytes/str item exceeds available storage")
        if v.size <= s.width:
            new_format[0] = s.format    # an "Ns" slot keeps its format while the value fits
            width[0] = s.width
        else:
            if s.size > MAX_SLOT:
                _corrupt(sl, k, "a %d-byte slot is larger than a format can describe" % s.size)
            new_format[0] = _text_format(s.size)
            width[0] = s.size
    else:
        if s.size < 8:      # an "Ns" slot another writer made smaller than a number
            raise ValueError("item %d's %d-byte slot cannot hold a number" % (k, s.size))
        new_format[0] = KIND_FORMAT[v.kind]
        width[0] = 8
    return 0


cdef int _write_slot(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    cdef Slot s
    cdef uint64_t new_format
    cdef Py_ssize_t width
    _check_write(sl, k, v, &s, &new_format, &width)
    if s.format != new_format:
        store_i64(sl._layout.formats + 8 * k, <int64_t>new_format)
    if s.code != KIND_CODE[v.kind]:
        sl._layout.codes[k] = <char>KIND_CODE[v.kind]
    if v.kind == KIND_STR or v.kind == KIND_BYTES:
        memcpy(s.ptr, v.data, v.size)
        memset(s.ptr + v.size, 0, width - v.size)
    else:
        store_i64(s.ptr, v.raw)
    return 0


# ---------------------------------------------------------------------------
# Slices


cdef list _get_slice(ShareableList sl, object index):
    cdef Py_ssize_t start, stop, step, j, m
    start, stop, step = index.indices(sl._layout.n)     # may run __index__
    m = len(range(start, stop, step))
    cdef Mapping pinned = _pin(sl)
    result = PyList_New(m)
    for j in range(m):
        item = _read(sl, start + j * step)
        Py_INCREF(item)
        PyList_SET_ITEM(result, j, item)
    return result


cdef int _set_slice(ShareableList sl, object index, object values) except -1:
    """Assign an equal-length sequence to a slice, validated in full first."""
    cdef Py_ssize_t start, stop, step, j, m
    cdef Packed* packed
    cdef Slot s
    cdef uint64_t new_format
    cdef Py_ssize_t width
    cdef Mapping pinned
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
        pinned = _pin_writable(sl)
        for j in range(m):
            _check_write(sl, start + j * step, &packed[j], &s, &new_format, &width)
        for j in range(m):
            _write(sl, start + j * step, &packed[j])
    finally:
        PyMem_Free(packed)
    return 0
