# Item kinds and their format entries and codes, and packing Python values for a slot.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.unicode cimport PyUnicode_Check, PyUnicode_GET_LENGTH
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset

import sys

# ---------------------------------------------------------------------------
# The item kinds: one table

cdef enum:    # ItemKind: what an item is
    KIND_INT = 0
    KIND_FLOAT = 1
    KIND_BOOL = 2
    KIND_NONE = 3
    KIND_STR = 4
    KIND_BYTES = 5
    KIND_OTHER = 6    # a value no slot can hold (scans compare it in Python)
    KIND_BAD = -1     # a format entry no kind has

# One row per kind, in ItemKind order: its name, a phrase for messages, its
# format entry (str and bytes share "%ds", where N is the slot size), its
# back-transform code, and the dtype of a view over such items.
ITEM_KINDS = (
    ("int", "an int", b"q", 0, "int64"),
    ("float", "a float", b"d", 0, "float64"),
    ("bool", "a bool", b"xxxxxxx?", 0, "bool"),
    ("None", "None", b"xxxxxx?x", 3, None),
    ("str", "a str", None, 1, None),
    ("bytes", "a bytes", None, 2, None),
)

# The table's format entries (as 8-byte words) and codes, for C.
cdef uint64_t KIND_FORMAT[6]
cdef int KIND_CODE[6]

cdef enum:
    # A slot's code says how its bytes are read back; 0: as the format says.
    CODE_NUMBER = 0
    # A str/bytes format is at most 8 characters ("9999999s"), and slots are
    # multiples of 8, so the largest slot is 9,999,992 bytes.
    MAX_SLOT = 9999992


cdef uint64_t _format_word(bytes text):
    """A format entry as the 8-byte word the segment holds (NUL-padded)."""
    cdef char buf[8]
    memset(buf, 0, 8)
    memcpy(buf, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
    return load_u64(buf)


for _kind, _row in enumerate(ITEM_KINDS):
    KIND_FORMAT[_kind] = _format_word(_row[2]) if _row[2] is not None else 0
    KIND_CODE[_kind] = _row[3]


cdef inline int _parse_format(uint64_t word, Py_ssize_t* width) noexcept nogil:
    """The kind a format entry reads as under code 0 (KIND_BYTES for "Ns",
    with *width = N; -1 otherwise), or KIND_BAD."""
    width[0] = -1
    if word == KIND_FORMAT[KIND_INT]:
        return KIND_INT
    if word == KIND_FORMAT[KIND_FLOAT]:
        return KIND_FLOAT
    if word == KIND_FORMAT[KIND_BOOL]:
        return KIND_BOOL
    if word == KIND_FORMAT[KIND_NONE]:
        return KIND_NONE
    cdef char text[8]
    memcpy(text, &word, 8)
    cdef Py_ssize_t i = 0, n = 0
    while i < 7 and c'0' <= text[i] <= c'9':
        n = n * 10 + (text[i] - c'0')
        i += 1
    if text[i] != c's':
        return KIND_BAD
    if i == 0:
        n = 1  # struct reads a bare "s" as "1s"
    i += 1
    while i < 8:
        if text[i] != 0:
            return KIND_BAD
        i += 1
    width[0] = n
    return KIND_BYTES


cdef inline uint64_t _text_format(Py_ssize_t width) noexcept nogil:
    """The format entry "%ds" % width (width <= MAX_SLOT, so it fits 8 bytes)."""
    cdef char digits[8]
    cdef char text[8]
    cdef int nd = 0, i
    memset(text, 0, 8)
    if width == 0:
        digits[0] = c'0'
        nd = 1
    while width > 0:
        digits[nd] = <char>(c'0' + width % 10)
        width //= 10
        nd += 1
    for i in range(nd):
        text[i] = digits[nd - 1 - i]
    text[nd] = c's'
    return load_u64(text)


cdef inline int64_t _slot_size(Py_ssize_t nbytes) noexcept nogil:
    # The standard library's capacity rule: the next multiple of 8 above len.
    return 8 * (nbytes // 8 + 1)


# ---------------------------------------------------------------------------
# Values

class UnsupportedTypeError(TypeError, KeyError):
    """An item of a type a ShareableList cannot store.

    A TypeError; also a KeyError, which is what the standard library raised.
    """
    __str__ = TypeError.__str__

    def __init__(self, *args):      # a signature for inspect and help()
        TypeError.__init__(self, *args)


cdef object _unsupported(object value):
    return UnsupportedTypeError(
        "ShareableList items must be int, float, bool, str, bytes or None, "
        "not %r" % type(value).__name__)


cdef inline bint _is_exact(object x):
    """Is x of a builtin type a slot holds as it is?"""
    return (PyLong_CheckExact(x) or PyFloat_CheckExact(x) or x is None or x is True
            or x is False or PyUnicode_CheckExact(x) or PyBytes_CheckExact(x))


cdef object _normalise(object value):
    """Convert an accepted non-builtin value to the builtin type it is stored as.

    int/float/str/bytes subclasses and NumPy scalars are accepted as their
    Python types; anything else raises UnsupportedTypeError.
    """
    if isinstance(value, int):       # bool cannot be subclassed
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating) and value.dtype.itemsize <= 8:
            return float(value)
    raise _unsupported(value)


# A value ready to be written: its kind, its 8 raw bytes (numbers) or its
# encoded bytes (str/bytes, borrowed from a Python object the caller keeps).
cdef struct Packed:
    int kind
    int64_t raw
    const char* data
    Py_ssize_t size      # bytes of data
    Py_ssize_t chars     # characters of a str (the standard library sizes by them)


cdef int _pack_exact(object value, Packed* out) except -1:
    """Pack a value of an exact builtin type; return 0 if it is of another type.

    Runs no Python code, so it may be called with the mapping entered.
    """
    cdef int overflow = 0
    cdef char bool_bytes[8]
    if PyLong_CheckExact(value):
        out.kind = KIND_INT
        out.raw = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            raise OverflowError("int %d does not fit in a signed 64-bit slot" % value)
        return 1
    if PyFloat_CheckExact(value):
        out.kind = KIND_FLOAT
        out.raw = double_as_i64(PyFloat_AS_DOUBLE(value))
        return 1
    if value is True or value is False:
        # "xxxxxxx?": seven pad bytes, then the flag.
        memset(bool_bytes, 0, 8)
        bool_bytes[7] = value is True
        out.kind = KIND_BOOL
        out.raw = <int64_t>load_u64(bool_bytes)
        return 1
    if value is None:
        out.kind = KIND_NONE
        out.raw = 0
        return 1
    if PyUnicode_CheckExact(value):
        out.kind = KIND_STR
        out.data = PyUnicode_AsUTF8AndSize(value, &out.size)
        out.chars = PyUnicode_GET_LENGTH(value)
        return 1
    if PyBytes_CheckExact(value):
        out.kind = KIND_BYTES
        out.data = PyBytes_AS_STRING(value)
        out.size = PyBytes_GET_SIZE(value)
        return 1
    return 0


# ---------------------------------------------------------------------------
# NumPy, imported on first use so that importing pyshl stays quick.  No
# module-level cache: threads of a free-threaded build would race on it.

cdef object _numpy():
    import numpy
    return numpy


cdef object _shared_array():
    """pyshl._views.SharedArray (which imports NumPy), imported on first use."""
    from pyshl._views import SharedArray
    return SharedArray


cdef int _array_kind(object dtype):
    """The kind a list built from an array of this dtype holds, or -1 if the
    array is taken item by item."""
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return KIND_BOOL
    if kind in "iu" and size <= 8:
        return KIND_INT
    if kind == "f" and size <= 8:
        return KIND_FLOAT
    return -1


cdef object _numeric_array(object source):
    """source as a 1-D NumPy array of a type a list stores in bulk, else None.

    Integers (uint64 only within int64 range), floats up to 64 bits and bools
    qualify; other buffers (strings, objects, ...) are taken item by item.
    """
    if PyUnicode_Check(source):
        return None
    np = _numpy()
    masked = sys.modules.get("numpy.ma")   # (a masked array means numpy.ma is imported)
    if masked is not None and isinstance(source, masked.MaskedArray):
        return None   # item by item, so that masked entries are not silently stored
    array = source if isinstance(source, np.ndarray) else np.asarray(memoryview(source))
    if _array_kind(array.dtype) < 0:
        return None
    if array.ndim != 1:
        raise ValueError("a ShareableList is built from a 1-D array, not %d-D" % array.ndim)
    # int(): NumPy 1.x compares uint64 with a Python int through float64.
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and array.size \
            and int(array.max()) > 9223372036854775807:
        raise OverflowError("uint64 value %d does not fit in a signed 64-bit slot"
                            % array.max())
    return array
