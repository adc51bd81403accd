# cython: language_level=3, boundscheck=True, wraparound=True, cdivision=False
# cython: embedsignature=True, binding=False
"""The pyshl core: the ShareableList segment layout, item packing and
unpacking, C scans, and the shared-memory mapping that backs them.

Segment layout (identical to the standard library's, 3.9+; native byte order):

    0                 int64 n
    8 + 8k, k=0..n    int64 offset of slot k, relative to the data area
    DS = 8(n+2)       data area; slot k is [DS+off_k, DS+off_(k+1))
    F = DS + off_n    n format entries, 8 NUL-padded bytes each
    C = F + 8n        n int8 codes: 0 number, 1 str, 2 bytes, 3 None

The segment is untrusted: any process may write anything into it.  Attaching
validates n and off_n against the segment size (O(1)); every access then
validates exactly the offsets it reads, so no pointer ever leaves the segment.
"""

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo, PyObject_CheckBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_SetFromErrnoWithFilenameObject
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_FromDouble
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.long cimport PyLong_AsDouble, PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.number cimport PyIndex_Check, PyNumber_AsSsize_t, PyNumber_Index
from cpython.object cimport Py_EQ, PyObject_RichCompare, PyObject_RichCompareBool
from cpython.ref cimport Py_INCREF
from cpython.slice cimport PySlice_Check
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.math cimport floor, isfinite
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memcpy, memset
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.mman cimport shm_open, shm_unlink
from posix.types cimport mode_t

import functools
import os
import secrets
import sys

try:
    from multiprocessing import shared_memory as _std_shared_memory
except ImportError:              # Python 3.7
    _std_shared_memory = None
try:
    from types import GenericAlias as _GenericAlias
except ImportError:              # Python 3.7 and 3.8
    from typing import _GenericAlias

cdef extern from "Python.h":
    # Cython's declarations of these lack the exact-type checks we need.
    bint PyLong_CheckExact(object o)
    bint PyFloat_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyBytes_CheckExact(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Slot loads and stores: a single 8-byte access when aligned (every slot
       the standard library or pyshl writes is), so concurrent readers never
       see a torn value; byte copies when a foreign segment is misaligned. */
    static inline int64_t pyshl_load_i64(const char *p) {
        int64_t v;
        if (((uintptr_t)p & 7) == 0)
            return __atomic_load_n((const int64_t *)p, __ATOMIC_RELAXED);
        memcpy(&v, p, 8);
        return v;
    }
    static inline void pyshl_store_i64(char *p, int64_t v) {
        if (((uintptr_t)p & 7) == 0)
            __atomic_store_n((int64_t *)p, v, __ATOMIC_RELAXED);
        else
            memcpy(p, &v, 8);
    }
    static inline uint64_t pyshl_load_u64(const char *p) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    static inline double pyshl_i64_as_double(int64_t v) {
        double d;
        memcpy(&d, &v, 8);
        return d;
    }
    static inline int64_t pyshl_double_as_i64(double d) {
        int64_t v;
        memcpy(&v, &d, 8);
        return v;
    }
    /* Are slots k..k+m-1 one contiguous run of 8-byte slots inside the data
       area, all of format `word` with code 0?  Then return the run's start
       offset, else -1.  Only the run's two end offsets are read: a numeric
       slot is at least 8 bytes (item access rejects smaller ones), so m of
       them spanning exactly 8m bytes are each 8 bytes, and every address
       used lies inside [start, end], which is checked.  Branch-free loops,
       so that they vectorise. */
    static inline int64_t pyshl_regular_run(const char *offsets, const char *formats,
                                            const char *codes, Py_ssize_t k, Py_ssize_t m,
                                            uint64_t word, int64_t data_size) {
        int64_t start, end;
        uint64_t f, bad = 0;
        Py_ssize_t i;
        memcpy(&start, offsets + 8 * k, 8);
        memcpy(&end, offsets + 8 * (k + m), 8);
        if (start < 0 || end > data_size || end - start != 8 * (int64_t)m)
            return -1;
        for (i = 0; i < m; i++) {
            memcpy(&f, formats + 8 * (k + i), 8);
            bad |= f ^ word;
        }
        for (i = 0; i < m; i++)
            bad |= (uint8_t)codes[k + i];
        return bad ? -1 : start;
    }
    /* The first i in 0..m-1 at which slots k.. stop being one contiguous run
       of 8-byte slots of format `word`, code 0, starting at offset `base`;
       m if none does.  Every slot's end offset is read (a view must be
       exactly the slots item access sees).  Checked a block at a time, so
       the common, all-good case vectorises. */
    static inline Py_ssize_t pyshl_uniform_prefix(const char *offsets, const char *formats,
                                                  const char *codes, Py_ssize_t k,
                                                  Py_ssize_t m, uint64_t word, int64_t base) {
        Py_ssize_t done = 0, i, len;
        int64_t end;
        uint64_t f, bad;
        while (done < m) {
            len = m - done < 256 ? m - done : 256;
            bad = 0;
            for (i = done; i < done + len; i++) {
                memcpy(&end, offsets + 8 * (k + i + 1), 8);
                memcpy(&f, formats + 8 * (k + i), 8);
                /* unsigned: `end` is unvalidated, a signed difference could overflow */
                bad |= ((uint64_t)end - (uint64_t)base - 8 * (uint64_t)(i + 1)) | (f ^ word)
                       | (uint8_t)codes[k + i];
            }
            if (bad) {
                for (i = done; i < done + len; i++) {
                    memcpy(&end, offsets + 8 * (k + i + 1), 8);
                    memcpy(&f, formats + 8 * (k + i), 8);
                    if ((uint64_t)end != (uint64_t)base + 8 * (uint64_t)(i + 1) || f != word
                            || codes[k + i] != 0)
                        return i;
                }
            }
            done += len;
        }
        return m;
    }
    /* Atomic read-modify-writes on an aligned 8-byte slot, across processes. */
    static inline int pyshl_fetch_add_i64(char *p, int64_t delta, int64_t *old) {
        /* 0 on success (*old is the previous value); 1 if the sum would
           overflow int64, in which case nothing is written. */
        int64_t cur = __atomic_load_n((int64_t *)p, __ATOMIC_RELAXED), next;
        do {
            if (__builtin_add_overflow(cur, delta, &next)) {
                *old = cur;
                return 1;
            }
        } while (!__atomic_compare_exchange_n((int64_t *)p, &cur, next, 1,
                                              __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
        *old = cur;
        return 0;
    }
    static inline double pyshl_fetch_add_f64(char *p, double delta) {
        int64_t cur = __atomic_load_n((int64_t *)p, __ATOMIC_RELAXED), next;
        double value, sum;
        do {
            memcpy(&value, &cur, 8);
            sum = value + delta;
            memcpy(&next, &sum, 8);
        } while (!__atomic_compare_exchange_n((int64_t *)p, &cur, next, 1,
                                              __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
        return value;
    }
    static inline int pyshl_cas_i64(char *p, int64_t *expected, int64_t desired) {
        return __atomic_compare_exchange_n((int64_t *)p, expected, desired, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
    static inline int64_t pyshl_load_seq_i64(const char *p) {
        return __atomic_load_n((const int64_t *)p, __ATOMIC_SEQ_CST);
    }
    static inline void pyshl_store_seq_i64(char *p, int64_t v) {
        __atomic_store_n((int64_t *)p, v, __ATOMIC_SEQ_CST);
    }
    static inline Py_ssize_t pyshl_count_i64(const char *p, Py_ssize_t m, int64_t target) {
        Py_ssize_t i, c = 0;
        int64_t v;
        for (i = 0; i < m; i++) { memcpy(&v, p + 8 * i, 8); c += v == target; }
        return c;
    }
    static inline Py_ssize_t pyshl_count_f64(const char *p, Py_ssize_t m, double target) {
        Py_ssize_t i, c = 0;
        double v;
        for (i = 0; i < m; i++) { memcpy(&v, p + 8 * i, 8); c += v == target; }
        return c;
    }
    """
    int64_t load_i64 "pyshl_load_i64"(const char* p) nogil
    void store_i64 "pyshl_store_i64"(char* p, int64_t v) nogil
    uint64_t load_u64 "pyshl_load_u64"(const char* p) nogil
    double i64_as_double "pyshl_i64_as_double"(int64_t v) nogil
    int64_t double_as_i64 "pyshl_double_as_i64"(double d) nogil
    int64_t regular_run "pyshl_regular_run"(const char* offsets, const char* formats,
                                            const char* codes, Py_ssize_t k, Py_ssize_t m,
                                            uint64_t word, int64_t data_size) nogil
    Py_ssize_t uniform_prefix "pyshl_uniform_prefix"(const char* offsets, const char* formats,
                                                    const char* codes, Py_ssize_t k,
                                                    Py_ssize_t m, uint64_t word, int64_t base) nogil
    int fetch_add_i64 "pyshl_fetch_add_i64"(char* p, int64_t delta, int64_t* old) nogil
    double fetch_add_f64 "pyshl_fetch_add_f64"(char* p, double delta) nogil
    bint cas_i64 "pyshl_cas_i64"(char* p, int64_t* expected, int64_t desired) nogil
    int64_t load_seq_i64 "pyshl_load_seq_i64"(const char* p) nogil
    void store_seq_i64 "pyshl_store_seq_i64"(char* p, int64_t v) nogil
    Py_ssize_t count_i64 "pyshl_count_i64"(const char* p, Py_ssize_t m, int64_t target) nogil
    Py_ssize_t count_f64 "pyshl_count_f64"(const char* p, Py_ssize_t m, double target) nogil


# ---------------------------------------------------------------------------
# Formats and codes

# Item kinds, as decoded from a format entry (or derived from a Python value).
cdef enum:
    K_INT = 0      # "q"
    K_FLOAT = 1    # "d"
    K_BOOL = 2     # "xxxxxxx?"
    K_NONE = 3     # "xxxxxx?x"
    K_BYTES = 4    # "%ds": str and bytes share the format; the code tells them apart
    K_STR = 5      # only for values: a str being written
    K_BAD = -1

# The back-transform codes of the standard library.
cdef enum:
    CODE_VALUE = 0
    CODE_STR = 1
    CODE_BYTES = 2
    CODE_NONE = 3

# A str/bytes format is at most 8 characters ("9999999s"), and slots are
# multiples of 8, so the largest slot is 9,999,992 bytes.
cdef enum:
    MAX_SLOT = 9999992

cdef uint64_t FMT_Q, FMT_D, FMT_BOOL, FMT_NONE


cdef uint64_t _fmt_word(bytes fmt):
    cdef char buf[8]
    memset(buf, 0, 8)
    memcpy(buf, PyBytes_AS_STRING(fmt), PyBytes_GET_SIZE(fmt))
    return load_u64(buf)


FMT_Q = _fmt_word(b"q")
FMT_D = _fmt_word(b"d")
FMT_BOOL = _fmt_word(b"xxxxxxx?")
FMT_NONE = _fmt_word(b"xxxxxx?x")


cdef inline int _parse_format(uint64_t word, Py_ssize_t* width) noexcept nogil:
    """Decode a format entry to its kind; for "Ns" also its width N."""
    if word == FMT_Q:
        return K_INT
    if word == FMT_D:
        return K_FLOAT
    if word == FMT_BOOL:
        return K_BOOL
    if word == FMT_NONE:
        return K_NONE
    cdef char text[8]
    memcpy(text, &word, 8)
    cdef Py_ssize_t i = 0, n = 0
    while i < 7 and c'0' <= text[i] <= c'9':
        n = n * 10 + (text[i] - c'0')
        i += 1
    if text[i] != c's':
        return K_BAD
    if i == 0:
        n = 1  # struct reads a bare "s" as "1s"
    i += 1
    while i < 8:
        if text[i] != 0:
            return K_BAD
        i += 1
    width[0] = n
    return K_BYTES


cdef inline uint64_t _bytes_format(Py_ssize_t width) noexcept nogil:
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


class UnsupportedTypeError(TypeError, KeyError):
    """An item of a type a ShareableList cannot store.

    A TypeError; also a KeyError, which is what the standard library raised.
    """
    __str__ = TypeError.__str__


cdef object _unsupported(object value):
    return UnsupportedTypeError(
        "ShareableList items must be int, float, bool, str, bytes or None, "
        "not %r" % type(value).__name__)


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


cdef object _np = None


cdef object _numpy():
    """NumPy, imported on first use so that importing pyshl stays quick."""
    global _np
    if _np is None:
        import numpy
        _np = numpy
    return _np


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
    kind, size = array.dtype.kind, array.dtype.itemsize
    if not (kind == "b" or (kind in "iu" and size <= 8) or (kind == "f" and size <= 8)):
        return None
    if array.ndim != 1:
        raise ValueError("a ShareableList is built from a 1-D array, not %d-D" % array.ndim)
    # int(): NumPy 1.x compares uint64 with a Python int through float64.
    if kind == "u" and size == 8 and array.size and int(array.max()) > 9223372036854775807:
        raise OverflowError("uint64 value %d does not fit in a signed 64-bit slot"
                            % array.max())
    return array


# A value ready to be written: its kind, its 8 raw bytes (numbers) or its
# encoded bytes (str/bytes, borrowed from a Python object the caller keeps).
cdef struct Packed:
    int kind
    int64_t raw
    const char* data
    Py_ssize_t size


cdef int _pack_exact(object value, Packed* out) except -1:
    """Pack a value of an exact builtin type; return 0 if it is of another type."""
    cdef int overflow = 0
    cdef char bool_bytes[8]
    if PyLong_CheckExact(value):
        out.kind = K_INT
        out.raw = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            raise OverflowError("int %d does not fit in a signed 64-bit slot" % value)
        return 1
    if PyFloat_CheckExact(value):
        out.kind = K_FLOAT
        out.raw = double_as_i64(PyFloat_AS_DOUBLE(value))
        return 1
    if value is True or value is False:
        # "xxxxxxx?": seven pad bytes, then the flag.
        memset(bool_bytes, 0, 8)
        bool_bytes[7] = value is True
        out.kind = K_BOOL
        out.raw = <int64_t>load_u64(bool_bytes)
        return 1
    if value is None:
        out.kind = K_NONE
        out.raw = 0
        return 1
    if PyUnicode_CheckExact(value):
        out.kind = K_STR
        out.data = PyUnicode_AsUTF8AndSize(value, &out.size)
        return 1
    if PyBytes_CheckExact(value):
        out.kind = K_BYTES
        out.data = PyBytes_AS_STRING(value)
        out.size = PyBytes_GET_SIZE(value)
        return 1
    return 0


cdef inline uint64_t _kind_format(int kind) noexcept nogil:
    if kind == K_INT:
        return FMT_Q
    if kind == K_FLOAT:
        return FMT_D
    if kind == K_BOOL:
        return FMT_BOOL
    return FMT_NONE


cdef inline int _kind_code(int kind) noexcept nogil:
    if kind == K_STR:
        return CODE_STR
    if kind == K_BYTES:
        return CODE_BYTES
    if kind == K_NONE:
        return CODE_NONE
    return CODE_VALUE


# ---------------------------------------------------------------------------
# Shared memory

cdef class _Mapping:
    """A shared mapping of a whole segment, unmapped when the last reference goes.

    Every buffer exported from it (memoryviews, NumPy arrays) holds a
    reference to it, so closing a handle never invalidates a live view and
    never raises BufferError: close() only stops new exports.
    """
    cdef char* addr
    cdef Py_ssize_t size
    cdef readonly bint closed
    cdef readonly bint readonly   # mapped PROT_READ: exports are read-only buffers

    def __cinit__(self, int fd=-1, Py_ssize_t size=0, bint readonly=False):
        self.addr = NULL
        self.size = 0
        self.closed = True
        self.readonly = readonly
        if fd < 0:
            return  # the closed placeholder
        if size <= 0:
            raise ValueError("cannot map an empty shared memory segment")
        cdef int prot = PROT_READ if readonly else PROT_READ | PROT_WRITE
        cdef void* p = mmap(NULL, <size_t>size, prot, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            PyErr_SetFromErrnoWithFilenameObject(OSError, None)
        self.addr = <char*>p
        self.size = size
        self.closed = False

    def __dealloc__(self):
        if self.addr != NULL:
            munmap(self.addr, <size_t>self.size)

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        if self.closed:
            raise ValueError("the shared memory handle is closed")
        PyBuffer_FillInfo(buffer, self, self.addr, self.size, self.readonly, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass

    def __len__(self):
        return self.size

    def close(self):
        """Refuse new exports; the memory stays mapped while any export lives."""
        self.closed = True


cdef _Mapping _CLOSED = _Mapping()

# glibc's NAME_MAX for the file under /dev/shm.
cdef Py_ssize_t _NAME_MAX = 255


cdef bytes _shm_path(object name):
    """Validate a segment name and return the path for shm_open."""
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
    return b"/" + encoded


cdef int _open_segment(object name, int flags) except -1:
    cdef bytes path = _shm_path(name)
    cdef int fd = shm_open(path, flags, <mode_t>0o600)
    if fd < 0:
        PyErr_SetFromErrnoWithFilenameObject(OSError, name)
    return fd


def _unlink_segment(name):
    """shm_unlink(name); raises FileNotFoundError when it is already gone."""
    cdef bytes path = _shm_path(name)
    if shm_unlink(path) != 0:
        PyErr_SetFromErrnoWithFilenameObject(OSError, name)


def _resource_tracker():
    """The standard resource tracker, or pyshl's own where Python has none (3.7)."""
    try:
        from multiprocessing import resource_tracker
    except ImportError:
        from pyshl import _tracker as resource_tracker
    return resource_tracker


def _tracker_running():
    """Does this process have (or share, from its parent) a resource tracker?"""
    tracker = _resource_tracker()
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

    ``SharedMemory(name=None, create=False, size=0, *, track=None)``

    Differences from the standard library's class:

    * ``track`` (on every Python version): register the segment with the
      resource tracker, which unlinks it when this process exits.  The default
      ``None`` means "only if this handle created it": attaching never
      registers, so a process that only attaches can never unlink a segment.
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
                    fd = _open_segment(name, flags)
                except FileExistsError:
                    continue
                break
        else:
            fd = _open_segment(name, flags)
        self._name = "/" + name
        try:
            if create:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)
                else:
                    os.ftruncate(fd, size)
            size = os.fstat(fd).st_size
            mapping = _Mapping(fd, size, readonly)
        except BaseException:
            os.close(fd)
            if create:
                _unlink_segment(name)
            raise
        # The mapping outlives the descriptor; holding no fd lets a process
        # attach to any number of segments.
        os.close(fd)
        self._fd = -1
        self._flags = flags
        self._size = size
        self._mmap = mapping
        self._buf = memoryview(mapping)
        self._readonly = readonly
        self._track = track
        if track:
            _resource_tracker().register(self._name, "shared_memory")

    @property
    def readonly(self):
        """True if this handle was attached with readonly=True (mapped PROT_READ)."""
        return self._readonly

    def close(self):
        """Close this handle; views of ``buf`` stay valid until they are dropped."""
        buf = self._buf
        self._buf = None
        if buf is not None:
            try:
                buf.release()
            except BufferError:
                pass  # exported views keep the mapping alive: nothing dangles
        mapping = self._mmap
        self._mmap = None
        if mapping is not None:
            mapping.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unlink(self):
        """Remove the segment's name; the memory goes when the last mapping does.

        Raises FileNotFoundError if the name is gone already.  Either way the
        resource tracker this process shares (with its parent, say) forgets
        the name, so it never warns about it or unlinks it again at exit.
        """
        if not self._name:
            return
        try:
            _unlink_segment(self.name)
        finally:
            self._untrack(gone=True)

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
            tracker = _resource_tracker()
            if gone:
                tracker.register(self._name, "shared_memory")
            tracker.unregister(self._name, "shared_memory")


# ---------------------------------------------------------------------------
# ShareableList


cdef object _closed_error():
    return ValueError("operation on a closed ShareableList")


# The decoded metadata of one slot.
cdef struct Slot:
    char* ptr          # first byte of the slot
    int64_t size       # slot capacity in bytes
    int kind           # K_* from the format entry
    Py_ssize_t width   # N of an "Ns" format
    int code           # back-transform code
    uint64_t format    # the raw format entry


cdef class ShareableList:
    """A fixed-length list stored in a shared memory segment.

    ``ShareableList(sequence=None, *, name=None, track=None)``

    A drop-in replacement for ``multiprocessing.shared_memory.ShareableList``
    that reads and writes the same segment layout, so either class can attach
    to a list the other created.  Items are int (signed 64-bit), float, bool,
    str, bytes or None.

    With a ``sequence`` (or no name) a new segment is created, named ``name``
    if given.  With only a ``name`` the existing segment is attached.
    ``track`` registers the segment with the resource tracker so that it is
    unlinked when this process exits; by default only the creator does.
    """
    cdef readonly object shm
    cdef _Mapping _map
    cdef char* _offsets
    cdef char* _data
    cdef char* _formats
    cdef char* _codes
    cdef Py_ssize_t _n
    cdef int64_t _data_size
    cdef object _creator_pid    # the pid that created the segment; None when attached
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._map = _CLOSED
        self._n = 0

    def __init__(self, sequence=None, *, name=None, track=None, readonly=False):
        if self.shm is not None:
            raise RuntimeError("this ShareableList is already bound to segment %r: "
                               "make a new ShareableList instead of calling __init__ again"
                               % self.shm.name)
        # Python-level arguments are converted before any segment exists.
        if isinstance(name, str):
            name = str.__str__(name)
        track = None if track is None else bool(track)
        readonly = bool(readonly)
        if name is None or sequence is not None:
            if readonly:
                raise ValueError("readonly=True attaches to an existing list: pass only name=")
            self._create(sequence, name, track)
        else:
            self._attach(name, track, readonly)

    # -- construction -------------------------------------------------------

    cdef _create(self, object sequence, object name, object track):
        cdef Py_ssize_t n
        cdef int64_t data_size
        if sequence is None:
            sequence = ()
        if PyObject_CheckBuffer(sequence):
            array = _numeric_array(sequence)
            if array is not None:
                self._create_from_array(array, name, track)
                return
        # A list or tuple is used as it is (no copy); anything else is
        # materialised once.  _fill re-checks what _plan validated.
        items = PySequence_Fast(sequence, "ShareableList() takes an iterable of items")
        data_size = _plan(items)
        if data_size < 0:
            # Some items are subclasses or NumPy scalars: convert, then plan.
            items = [x if _is_exact(x) else _normalise(x) for x in items]
            data_size = _plan(items)
        n = PySequence_Fast_GET_SIZE(items)
        self._new_segment(n, data_size, name, track)
        try:
            _fill(items, self._offsets, self._data, self._formats, self._codes, n, data_size)
            self._publish()
        except BaseException:
            self._discard()
            raise

    cdef _create_from_array(self, object array, object name, object track):
        """One copy from a 1-D numeric array: NumPy casts straight into the segment."""
        cdef Py_ssize_t k, n = len(array)
        cdef uint64_t word
        np = _numpy()
        kind = array.dtype.kind
        word = FMT_BOOL if kind == "b" else FMT_D if kind == "f" else FMT_Q
        self._new_segment(n, 8 * n, name, track)
        try:
            for k in range(n + 1):
                store_i64(self._offsets + 8 * k, 8 * k)
            for k in range(n):
                store_i64(self._formats + 8 * k, <int64_t>word)
            # Codes stay 0, as the fresh segment is zeroed.
            if n:
                if kind == "b":
                    target = np.ndarray((n,), np.bool_, buffer=self._map,
                                        offset=self._data - self._map.addr + 7, strides=(8,))
                else:
                    target = np.ndarray((n,), np.float64 if kind == "f" else np.int64,
                                        buffer=self._map, offset=self._data - self._map.addr)
                target[...] = array
            self._publish()
        except BaseException:
            self._discard()
            raise

    cdef _new_segment(self, Py_ssize_t n, int64_t data_size, object name, object track):
        """Create a zeroed segment for n items and data_size bytes of slots, and
        take its geometry from the plan.  Its header still says "0 items"
        until _publish(): a process attaching meanwhile sees an empty list."""
        total = 8 * (n + 2) + data_size + 9 * n
        shm = SharedMemory(name, create=True, size=total,
                           track=True if track is None else track)
        self.shm = shm
        self._creator_pid = os.getpid()
        self._set_geometry(shm._mmap, n, data_size)

    cdef _publish(self):
        """Check that the slots written are exactly the plan, then write the header.

        The header goes last, so no process can attach to a list whose header
        disagrees with its slots: the item count after the data size.
        """
        cdef int64_t filled = load_i64(self._offsets + 8 * self._n)
        if filled != self._data_size:
            raise RuntimeError("the items changed while a ShareableList was built from "
                               "them: %d bytes of slots were planned and %d written"
                               % (self._data_size, filled))
        store_seq_i64(self._map.addr, self._n)

    cdef _discard(self):
        """Undo a failed construction: no segment is left behind."""
        shm, self.shm = self.shm, None
        self._map = _CLOSED
        self._creator_pid = None
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass    # Python code run meanwhile (a finalizer) removed the name

    cdef _attach(self, object name, object track, bint readonly):
        shm = SharedMemory(name, track=False if track is None else track, readonly=readonly)
        try:
            self._bind(shm)
        except BaseException:
            shm.close()
            shm._untrack()      # attached, not ours: never unlink it
            raise
        self.shm = shm

    cdef _bind(self, object shm):
        """Take an existing segment's geometry, validating its header against its size."""
        cdef _Mapping m = shm._mmap
        cdef char* base = m.addr
        cdef int64_t size = m.size, n, data_size
        if size < 16:
            raise ValueError("shared memory segment %r (%d bytes) is too small to be "
                             "a ShareableList" % (shm.name, size))
        n = load_i64(base)
        if n < 0 or n > (size - 16) // 17:
            raise ValueError("shared memory segment %r is not a valid ShareableList: "
                             "item count %d does not fit its %d bytes" % (shm.name, n, size))
        data_size = load_i64(base + 8 + 8 * n)
        if data_size < 0 or data_size > size - 16 - 17 * n:
            raise ValueError("shared memory segment %r is not a valid ShareableList: "
                             "data area of %d bytes does not fit its %d bytes"
                             % (shm.name, data_size, size))
        self._set_geometry(m, n, data_size)

    cdef void _set_geometry(self, _Mapping m, Py_ssize_t n, int64_t data_size) noexcept:
        """Point the list at a mapping holding n items in data_size bytes of slots
        (the caller checked that they fit)."""
        self._map = m
        self._n = n
        self._data_size = data_size
        self._offsets = m.addr + 8
        self._data = m.addr + 8 * (n + 2)
        self._formats = self._data + data_size
        self._codes = self._formats + 8 * n

    # -- the sequence protocol ------------------------------------------------
    #
    # Every method follows one order: convert every argument (which may run
    # Python code that closes the list), then _pin() the mapping, then touch
    # the segment.  The pinned reference keeps the memory mapped even if
    # Python code runs later in the call (a finalizer during an allocation).

    def __getitem__(self, index):
        if not PyLong_CheckExact(index) and PySlice_Check(index):
            return _get_slice(self, index)
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef _Mapping pinned = _pin(self)
        return _read(self, k)

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
        cdef _Mapping pinned = _pin_writable(self)
        _write(self, k, &packed)

    def __delitem__(self, index):
        raise TypeError("ShareableList items cannot be deleted: its length is fixed")

    def __len__(self):
        _pin(self)
        return self._n

    def __iter__(self):
        _pin(self)
        return _Iterator(self)

    def __contains__(self, value):
        return _scan(self, value, 0, True) >= 0

    def count(self, value):
        """L.count(value) -> integer -- return number of occurrences of value."""
        return _scan(self, value, 1, False)

    def index(self, value):
        """L.index(value) -> integer -- return first index of value.
        Raises ValueError if the value is not present."""
        cdef Py_ssize_t k = _scan(self, value, 0, False)
        if k < 0:
            raise ValueError(f"{value!r} not in this container")
        return k

    def tolist(self):
        """The items as a new plain list."""
        cdef _Mapping pinned = _pin(self)
        cdef Py_ssize_t k, n = self._n
        result = PyList_New(n)
        for k in range(n):
            item = _read(self, k)
            Py_INCREF(item)
            PyList_SET_ITEM(result, k, item)
        return result

    def view(self, start=None, stop=None, *, dtype=None):
        """A zero-copy NumPy array over items start..stop-1 of one numeric type.

        All int gives int64, all float float64, all bool bool (a strided view
        of each slot's flag byte).  Writes through the array are writes to the
        list, seen by every process at once.  The array is typed by the items
        when it is made: see the README for what it shows if another process
        later stores another type.  An empty range needs ``dtype``.  A list
        attached with readonly=True gives read-only arrays.

        Raises TypeError, naming the first index, if the range mixes types.
        """
        np = _numpy()
        cdef Py_ssize_t a, b, m, bad
        cdef int64_t base
        cdef uint64_t word
        cdef Slot slot
        wanted = None if dtype is None else np.dtype(dtype)
        if wanted is not None and wanted not in (np.dtype(np.int64), np.dtype(np.float64),
                                                 np.dtype(np.bool_)):
            raise ValueError("view() gives int64, float64 or bool arrays, not %s" % wanted)
        a, b, _ = slice(start, stop).indices(self._n)
        m = max(b - a, 0)
        cdef _Mapping pinned = _pin(self)
        if m == 0:
            if wanted is None:
                raise ValueError("an empty range has no item to take a dtype from: "
                                 "pass dtype=")
            return np.empty(0, wanted)
        word = load_u64(self._formats + 8 * a)
        if self._codes[a] != CODE_VALUE or not (word == FMT_Q or word == FMT_D
                                                or word == FMT_BOOL):
            raise TypeError("item %d is %s: view() needs int, float or bool items"
                            % (a, _describe(self, a)))
        found = np.dtype(np.int64 if word == FMT_Q else np.float64 if word == FMT_D
                         else np.bool_)
        if wanted is not None and wanted != found:
            raise TypeError("item %d is %s, not a %s" % (a, _describe(self, a), wanted))
        base = load_i64(self._offsets + 8 * a)
        if base < 0 or base > self._data_size - 8 * m:
            _slot(self, a, &slot)   # raises the precise error if the offsets are bad
            raise TypeError("items %d..%d are not contiguous 8-byte slots" % (a, b - 1))
        bad = uniform_prefix(self._offsets, self._formats, self._codes, a, m, word, base)
        if bad < m:
            raise TypeError("item %d is %s, not %s like item %d: view() needs one numeric "
                            "type in contiguous 8-byte slots"
                            % (a + bad, _describe(self, a + bad), _describe(self, a), a))
        offset = self._data - pinned.addr + base
        # The array exports the pinned mapping, which it keeps alive.
        if word == FMT_BOOL:
            return np.ndarray((m,), np.bool_, buffer=pinned, offset=offset + 7, strides=(8,))
        return np.ndarray((m,), found, buffer=pinned, offset=offset)

    def __array__(self, dtype=None, copy=None):
        """Zero-copy for a list of one numeric type; item by item otherwise."""
        np = _numpy()
        if dtype is not None:
            dtype = np.dtype(dtype)
        try:
            array = self.view()
        except (TypeError, ValueError):
            _pin(self)
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
        cdef Number d
        cdef char* p
        cdef int64_t old
        _number_arg(delta, &d, "delta")
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef _Mapping pinned = _pin_writable(self)
        if _atomic_slot(self, k, &p, "fetch_add") == K_INT:
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

    def compare_exchange(self, index, expected, desired):
        """Atomically: if item == expected, store desired; return whether it did.

        Same type only: an int item takes ints, a float item floats (compared
        as Python does: 0.0 == -0.0, NaN never equal).
        """
        cdef Number e, w
        cdef char* p
        cdef int64_t current, want
        _number_arg(expected, &e, "expected")
        _number_arg(desired, &w, "desired")
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef _Mapping pinned = _pin_writable(self)
        cdef int kind = _atomic_slot(self, k, &p, "compare_exchange")
        if kind == K_INT:
            if not (e.is_int and w.is_int):
                raise TypeError("item %d is an int: expected and desired must be ints" % k)
            if w.overflow:
                raise OverflowError("desired %r does not fit in int64" % desired)
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

    def load(self, index):
        """Atomically read an int or float item (a sequentially consistent load)."""
        cdef char* p
        cdef Py_ssize_t k = _position(self, index, "index out of range")
        cdef _Mapping pinned = _pin(self)
        if _atomic_slot(self, k, &p, "load") == K_INT:
            return PyLong_FromLongLong(load_seq_i64(p))
        return PyFloat_FromDouble(i64_as_double(load_seq_i64(p)))

    def store(self, index, value):
        """Atomically write an int or float item with a value of its own type."""
        cdef Number v
        cdef char* p
        _number_arg(value, &v, "value")
        cdef Py_ssize_t k = _position(self, index, "assignment index out of range")
        cdef _Mapping pinned = _pin_writable(self)
        if _atomic_slot(self, k, &p, "store") == K_INT:
            if not v.is_int:
                raise TypeError("item %d is an int: store() keeps the type, use sl[i] = v "
                                "to change it" % k)
            if v.overflow:
                raise OverflowError("%r does not fit in int64" % value)
            store_seq_i64(p, v.ival)
        else:
            if v.is_int:
                raise TypeError("item %d is a float: store() keeps the type, use sl[i] = v "
                                "to change it" % k)
            store_seq_i64(p, double_as_i64(v.dval))

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
        cdef _Mapping pinned = _pin(self)
        cdef Py_ssize_t k
        parts = bytearray()
        for k in range(self._n):
            word = PyBytes_FromStringAndSize(self._formats + 8 * k, 8)
            parts += word.rstrip(b"\0")
        return parts.decode("utf-8")

    def _get_packing_format(self, position):
        "Gets the packing format for a single value stored in the list."
        cdef Py_ssize_t k = _position(self, position, "Requested position out of range.")
        cdef _Mapping pinned = _pin(self)
        word = PyBytes_FromStringAndSize(self._formats + 8 * k, 8)
        return word.rstrip(b"\0").decode("utf-8")

    def _type_counts(self):
        """{type name: number of items}, with "corrupt" for unreadable slots."""
        cdef _Mapping pinned = _pin(self)
        cdef Py_ssize_t k
        cdef Slot s
        cdef Py_ssize_t counts[7]
        memset(counts, 0, sizeof(counts))
        for k in range(self._n):
            try:
                _slot(self, k, &s)
            except ValueError:
                counts[6] += 1
                continue
            if s.code == CODE_NONE:
                counts[3] += 1
            elif s.kind == K_BYTES:
                counts[4 if s.code == CODE_STR else 5] += 1
            else:
                counts[s.kind if s.kind != K_NONE else K_BOOL] += 1
        names = ("int", "float", "bool", "None", "str", "bytes", "corrupt")
        return {names[i]: counts[i] for i in range(7) if counts[i]}

    @property
    def closed(self):
        """True once close() was called on this list or on its ``shm``."""
        return self._map.closed

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
        self._map = _CLOSED
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
        _pin(self)
        return self

    def __exit__(self, *exc_info):
        """Close; and unlink, if this process created the segment.

        A forked child holds a copy of its parent's list: leaving a ``with``
        block there only closes the child's handle.
        """
        creator, self._creator_pid = self._creator_pid, None
        self.close()
        if creator is not None and creator == os.getpid():
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
        if self._map.closed:
            return f"<closed {type(self).__name__} name={name!r}>"
        return f"{type(self).__name__}({self.tolist()}, name={name!r})"

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item if type(item) is tuple else (item,))


# ---------------------------------------------------------------------------
# Slot access.  Module-level functions, not methods, so that the hot paths
# are direct C calls even though ShareableList can be subclassed.


cdef inline _Mapping _pin(ShareableList sl):
    """The list's mapping, to be held while the caller touches the segment.

    Call it after every argument is converted (conversion may run Python code
    that closes the list) and before the first access: it raises if the list
    is closed, and the reference it returns keeps the memory mapped should
    Python code run later in the call and close the list.
    """
    cdef _Mapping m = sl._map
    if m.closed:
        raise _closed_error()
    return m


cdef inline _Mapping _pin_writable(ShareableList sl):
    """_pin() for calls that write: also refuses a list attached read-only."""
    cdef _Mapping m = _pin(sl)
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
    cdef Py_ssize_t k
    cdef long long wide
    cdef int overflow = 0
    if PyLong_CheckExact(index):
        wide = PyLong_AsLongLongAndOverflow(index, &overflow)
        if overflow:
            raise IndexError(message)
        k = <Py_ssize_t>wide
    else:
        k = PyNumber_AsSsize_t(index, IndexError)
    _pin(sl)
    if k < 0:
        k += sl._n
    if <size_t>k >= <size_t>sl._n:
        raise IndexError(message)
    return k


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
    start[0] = load_i64(sl._offsets + 8 * k)
    end[0] = load_i64(sl._offsets + 8 * k + 8)
    if not (<uint64_t>start[0] <= <uint64_t>end[0] <= <uint64_t>sl._data_size):
        return BAD_OFFSETS
    s.ptr = sl._data + start[0]
    s.size = end[0] - start[0]
    s.format = load_u64(sl._formats + 8 * k)
    s.code = <uint8_t>sl._codes[k]
    s.kind = _parse_format(s.format, &s.width)
    if s.kind == K_BAD:
        return BAD_FORMAT
    if s.kind == K_BYTES:
        if s.width > s.size:
            return TOO_WIDE
    elif s.size < 8:
        return TOO_SMALL
    if s.code > CODE_NONE or (s.kind != K_BYTES and (s.code == CODE_STR or s.code == CODE_BYTES)):
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
                 % (start, end, sl._data_size))
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


cdef inline object _read(ShareableList sl, Py_ssize_t k):
    """Item k as a Python object (0 <= k < n, mapping pinned)."""
    # Fast path: an int or float slot, validated in a few compares.
    cdef int64_t start = load_i64(sl._offsets + 8 * k)
    cdef int64_t end = load_i64(sl._offsets + 8 * k + 8)
    cdef uint64_t word = load_u64(sl._formats + 8 * k)
    if (sl._codes[k] == CODE_VALUE and <uint64_t>start <= <uint64_t>end
            and <uint64_t>end <= <uint64_t>sl._data_size and end - start >= 8):
        if word == FMT_Q:
            return PyLong_FromLongLong(load_i64(sl._data + start))
        if word == FMT_D:
            return PyFloat_FromDouble(i64_as_double(load_i64(sl._data + start)))
    return _read_slot(sl, k)


cdef object _read_slot(ShareableList sl, Py_ssize_t k):
    cdef Slot s
    cdef Py_ssize_t length
    _slot(sl, k, &s)
    if s.code == CODE_NONE:
        return None
    if s.kind == K_INT:
        return PyLong_FromLongLong(load_i64(s.ptr))
    if s.kind == K_FLOAT:
        return PyFloat_FromDouble(i64_as_double(load_i64(s.ptr)))
    if s.kind == K_BOOL:
        return s.ptr[7] != 0
    if s.kind == K_NONE:
        return s.ptr[6] != 0   # what struct makes of "xxxxxx?x" under code 0
    # Trailing NULs are padding, as the standard library reads them.
    length = s.width
    while length > 0 and s.ptr[length - 1] == 0:
        length -= 1
    if s.code == CODE_STR:
        return PyUnicode_DecodeUTF8(s.ptr, length, NULL)
    return PyBytes_FromStringAndSize(s.ptr, length)


cdef str _describe(ShareableList sl, Py_ssize_t k):
    """'an int', 'a str', ... for item k, or what is wrong with its slot."""
    cdef Slot s
    try:
        _slot(sl, k, &s)
    except ValueError as exc:
        return "unreadable (%s)" % exc
    if s.code == CODE_NONE:
        return "None"
    if s.kind == K_BYTES:
        return "a str" if s.code == CODE_STR else "a bytes"
    if s.size != 8:
        return "a number in a %d-byte slot" % s.size
    return ("an int", "a float", "a bool", "a bool")[s.kind]


cdef inline void _set_meta(ShareableList sl, Py_ssize_t k, Slot* s, uint64_t fmt, int code) noexcept:
    if s.format != fmt:
        store_i64(sl._formats + 8 * k, <int64_t>fmt)
    if s.code != code:
        sl._codes[k] = <char>code


cdef inline int _write(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    """Store a packed value in slot k, or raise having written nothing."""
    # Fast path: a number into a valid slot already of its type.
    cdef int64_t start = load_i64(sl._offsets + 8 * k)
    cdef int64_t end = load_i64(sl._offsets + 8 * k + 8)
    if (v.kind <= K_NONE and load_u64(sl._formats + 8 * k) == _kind_format(v.kind)
            and sl._codes[k] == _kind_code(v.kind) and <uint64_t>start <= <uint64_t>end
            and <uint64_t>end <= <uint64_t>sl._data_size and end - start >= 8):
        store_i64(sl._data + start, v.raw)
        return 0
    return _write_slot(sl, k, v)


cdef int _check_write(ShareableList sl, Py_ssize_t k, Packed* v, Slot* s,
                      uint64_t* new_format, Py_ssize_t* width) except -1:
    """Decide how a packed value goes into slot k; raise if it cannot."""
    _slot(sl, k, s)
    if v.kind == K_STR or v.kind == K_BYTES:
        if v.size > s.size:
            raise ValueError("bytes/str item exceeds available storage")
        if s.kind == K_BYTES and v.size <= s.width:
            new_format[0] = s.format
            width[0] = s.width
        else:
            if s.size > MAX_SLOT:
                _corrupt(sl, k, "a %d-byte slot is larger than a format can describe" % s.size)
            new_format[0] = _bytes_format(s.size)
            width[0] = s.size
    else:
        new_format[0] = _kind_format(v.kind)
        width[0] = 8
    return 0


cdef int _write_slot(ShareableList sl, Py_ssize_t k, Packed* v) except -1:
    cdef Slot s
    cdef uint64_t new_format
    cdef Py_ssize_t width
    _check_write(sl, k, v, &s, &new_format, &width)
    _set_meta(sl, k, &s, new_format, _kind_code(v.kind))
    if v.kind == K_STR or v.kind == K_BYTES:
        memcpy(s.ptr, v.data, v.size)
        memset(s.ptr + v.size, 0, width - v.size)
    else:
        store_i64(s.ptr, v.raw)
    return 0


cdef list _get_slice(ShareableList sl, object index):
    cdef Py_ssize_t start, stop, step, j, m
    start, stop, step = index.indices(sl._n)     # may run __index__
    m = len(range(start, stop, step))
    cdef _Mapping pinned = _pin(sl)
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
    cdef _Mapping pinned
    # Converting the values and the bounds may run Python code: all of it
    # happens first, into a private list of exact builtins.
    values = PySequence_Fast(values, "can only assign an iterable to a ShareableList slice")
    values = [x if _is_exact(x) else _normalise(x) for x in values]
    start, stop, step = index.indices(sl._n)
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


# ---------------------------------------------------------------------------
# Atomics


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
    """Point at item k's aligned 8-byte slot, which must hold an int or a float
    (mapping pinned; the pointer is valid while the pin is held)."""
    cdef int64_t start = load_i64(sl._offsets + 8 * k)
    cdef int64_t end = load_i64(sl._offsets + 8 * k + 8)
    cdef uint64_t word = load_u64(sl._formats + 8 * k)
    if (sl._codes[k] == CODE_VALUE and (word == FMT_Q or word == FMT_D)
            and <uint64_t>start <= <uint64_t>end and <uint64_t>end <= <uint64_t>sl._data_size
            and end - start >= 8 and ((<uintptr_t>sl._data + <uint64_t>start) & 7) == 0):
        ptr[0] = sl._data + start
        return K_INT if word == FMT_Q else K_FLOAT
    return _atomic_slot_checked(sl, k, ptr, op)


cdef int _atomic_slot_checked(ShareableList sl, Py_ssize_t k, char** ptr, str op) except -1:
    cdef Slot s
    _slot(sl, k, &s)
    if s.code != CODE_VALUE or not (s.kind == K_INT or s.kind == K_FLOAT):
        raise TypeError("%s needs an int or float item; item %d is %s"
                        % (op, k, _describe(sl, k)))
    if (<uintptr_t>s.ptr) & 7:
        raise ValueError("item %d is not 8-byte aligned, so it cannot be updated "
                         "atomically" % k)
    ptr[0] = s.ptr
    return s.kind


# One validated target of add_at: its slot and whether it holds a float.
cdef struct Target8:
    char* ptr
    bint is_float


@cython.boundscheck(False)   # every index is checked against n, and j < m, by hand
@cython.wraparound(False)
cdef int _add_at(ShareableList sl, object indices, object deltas) except -1:
    np = _numpy()
    cdef Py_ssize_t j, m, n, bad_index = -1, skipped = 0
    cdef int64_t k
    cdef int kind
    cdef int64_t old
    cdef bint int_deltas, scalar
    cdef Target8* targets
    cdef _Mapping pinned
    n = sl._n
    # Converting the arguments may run Python code (__array__, __index__,
    # dtype lookups): it all happens before the mapping is pinned.
    index_array = np.asarray(indices)
    if index_array.size == 0:
        index_array = index_array.astype(np.int64)   # [] is float64: nothing to add
    if index_array.dtype.kind not in "iu":
        raise TypeError("add_at indices must be an integer array, not %s" % index_array.dtype)
    delta_array = np.asarray(deltas)
    if delta_array.dtype.kind not in "biuf" or delta_array.dtype.itemsize > 8:
        raise TypeError("add_at deltas must be integers or floats, not %s" % delta_array.dtype)
    int_deltas = delta_array.dtype.kind != "f"
    scalar = delta_array.ndim == 0
    if not scalar:
        delta_array = np.broadcast_to(delta_array, index_array.shape).ravel()
    index_array = index_array.ravel()
    m = index_array.shape[0]
    if m == 0:
        return 0
    # int(): NumPy 1.x compares uint64 with a Python int through float64.
    if index_array.dtype.kind == "u" and int(index_array.max()) >= n:
        raise IndexError("add_at index %d is out of range for a ShareableList of %d items"
                         % (index_array.max(), n))
    if int_deltas and delta_array.dtype.kind == "u" and delta_array.size \
            and int(delta_array.max()) > 9223372036854775807:
        raise OverflowError("a uint64 delta does not fit in int64")
    cdef const int64_t[::1] idx = np.ascontiguousarray(index_array, dtype=np.int64)
    delta_array = np.ascontiguousarray(delta_array, dtype=np.int64 if int_deltas else np.float64)
    cdef const int64_t[::1] int_delta
    cdef const double[::1] float_delta
    if int_deltas:
        int_delta = delta_array.reshape(-1)
    else:
        float_delta = delta_array.reshape(-1)
    cdef Py_ssize_t step = 0 if scalar else 1
    pinned = _pin_writable(sl)       # also keeps it mapped while the GIL is released
    targets = <Target8*>PyMem_Malloc(m * sizeof(Target8))
    if targets == NULL:
        raise MemoryError()
    try:
        # Pass 1: every target slot is valid, numeric, aligned and of a type
        # the deltas can go into -- before anything is written.
        for j in range(m):
            k = idx[j] + n if idx[j] < 0 else idx[j]
            if <uint64_t>k >= <uint64_t>n:
                raise IndexError("add_at index %d is out of range for a ShareableList of "
                                 "%d items" % (idx[j], n))
            kind = _atomic_slot(sl, k, &targets[j].ptr, "add_at")
            targets[j].is_float = kind == K_FLOAT
            if kind == K_INT and not int_deltas:
                raise TypeError("add_at cannot add float deltas to item %d, an int" % k)
        # Pass 2: the additions.
        with nogil:
            for j in range(m):
                if targets[j].is_float:
                    fetch_add_f64(targets[j].ptr, <double>int_delta[j * step] if int_deltas
                                  else float_delta[j * step])
                elif fetch_add_i64(targets[j].ptr, int_delta[j * step], &old):
                    skipped += 1
                    if bad_index < 0:
                        bad_index = j
    finally:
        PyMem_Free(targets)
    if skipped:
        raise OverflowError("%d of %d additions would have overflowed int64 and were not "
                            "applied (the first at index %d); the others were"
                            % (skipped, m, index_array[bad_index]))
    return 0


cdef class _Iterator:
    """Reads items one by one, as iterating over the standard list does."""
    cdef ShareableList _list
    cdef Py_ssize_t _next

    def __cinit__(self, ShareableList sl):
        self._list = sl
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef ShareableList sl = self._list
        if sl is None:
            raise StopIteration
        cdef _Mapping pinned = _pin(sl)
        if self._next >= sl._n:
            self._list = None
            raise StopIteration
        self._next += 1
        return _read(sl, self._next - 1)

    def __length_hint__(self):
        if self._list is None or self._list._map.closed:
            return 0
        return self._list._n - self._next


# ---------------------------------------------------------------------------
# Construction passes


cdef inline bint _is_exact(object x):
    return (PyLong_CheckExact(x) or PyFloat_CheckExact(x) or x is None or x is True
            or x is False or PyUnicode_CheckExact(x) or PyBytes_CheckExact(x))


cdef int64_t _plan(object items) except -2:
    """Validate every item of a list or tuple and return the data area size;
    -1 if some item needs converting to its builtin type first."""
    cdef Py_ssize_t k, n = PySequence_Fast_GET_SIZE(items)
    cdef int64_t total = 0
    cdef Packed v
    for k in range(n):
        item = <object>PySequence_Fast_GET_ITEM(items, k)
        if not _pack_exact(item, &v):
            _normalise(item)   # raises for unsupported types
            return -1
        if v.kind == K_STR or v.kind == K_BYTES:
            if _slot_size(v.size) > MAX_SLOT:
                raise ValueError(
                    "item %d is %d bytes long; a ShareableList str/bytes item "
                    "holds at most %d bytes" % (k, v.size, MAX_SLOT - 1))
            total += _slot_size(v.size)
        else:
            total += 8
    return total


cdef int _fill(object items, char* offsets, char* data, char* formats, char* codes,
               Py_ssize_t n, int64_t data_size) except -1:
    """Write the planned items into a fresh (zeroed) segment.

    Python code ran since _plan (creating the segment), so the list may have
    changed: every item is checked again against the planned layout.
    """
    cdef Py_ssize_t k
    cdef int64_t offset = 0, size
    cdef Packed v
    if PySequence_Fast_GET_SIZE(items) != n:
        raise RuntimeError("the sequence changed size while a ShareableList was built from it")
    for k in range(n):
        item = <object>PySequence_Fast_GET_ITEM(items, k)
        if not _pack_exact(item, &v):
            raise RuntimeError("the sequence changed while a ShareableList was built from it")
        store_i64(offsets + 8 * k, offset)
        if v.kind == K_STR or v.kind == K_BYTES:
            size = _slot_size(v.size)
            if offset + size > data_size:
                raise RuntimeError("the sequence changed while a ShareableList was built from it")
            memcpy(data + offset, v.data, v.size)
            store_i64(formats + 8 * k, <int64_t>_bytes_format(size))
        else:
            size = 8
            if offset + size > data_size:
                raise RuntimeError("the sequence changed while a ShareableList was built from it")
            store_i64(data + offset, v.raw)
            store_i64(formats + 8 * k, <int64_t>_kind_format(v.kind))
        codes[k] = <char>_kind_code(v.kind)
        offset += size
    store_i64(offsets + 8 * n, offset)
    return 0


# ---------------------------------------------------------------------------
# Scans: count, index and `in` with Python's == semantics, in C.

# Scans check slot metadata this many items at a time.
cdef enum:
    RUN = 256

cdef enum:
    T_NUMBER = 0     # int, bool or float
    T_STR = 1
    T_BYTES = 2
    T_NONE = 3
    T_OTHER = 4      # compared in Python, item by item

# A scan's target.  A number is reduced to what a "q" slot must hold to equal
# it and what a "d" slot must hold (Python compares ints and floats exactly):
# both paths of a scan, vectorised runs and single items, compare just these.
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
    cdef int overflow = 0
    cdef int64_t exact
    t.kind = T_OTHER
    if PyLong_CheckExact(value) or value is True or value is False:
        t.kind = T_NUMBER
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
        t.kind = T_NUMBER
        t.d_value = PyFloat_AS_DOUBLE(value)
        t.d_possible = True          # NaN compares unequal by itself
        t.q_possible = _float_to_i64(t.d_value, &t.q_value)
    elif value is None:
        t.kind = T_NONE
    elif PyUnicode_CheckExact(value):
        t.kind = T_STR
        try:
            t.data = PyUnicode_AsUTF8AndSize(value, &t.size)
        except UnicodeEncodeError:
            t.kind = T_OTHER   # lone surrogates: no stored str can equal it
    elif PyBytes_CheckExact(value):
        t.kind = T_BYTES
        t.data = PyBytes_AS_STRING(value)
        t.size = PyBytes_GET_SIZE(value)
    return 0


cdef inline bint _number_equals(Target* t, Slot* s) noexcept:
    """Python's == between a numeric target and a numeric slot (code 0)."""
    if s.kind == K_INT:
        return t.q_possible and load_i64(s.ptr) == t.q_value
    if s.kind == K_FLOAT:
        return t.d_possible and i64_as_double(load_i64(s.ptr)) == t.d_value
    if s.kind == K_BOOL:
        return t.q_possible and (s.ptr[7] != 0) == t.q_value
    if s.kind == K_NONE:         # what struct reads under code 0: a bool at byte 6
        return t.q_possible and (s.ptr[6] != 0) == t.q_value
    return False


cdef inline bint _bytes_equal(Target* t, Slot* s) noexcept:
    """The slot's bytes, trailing NULs stripped, equal the target's."""
    cdef Py_ssize_t length = s.width
    while length > 0 and s.ptr[length - 1] == 0:
        length -= 1
    return length == t.size and memcmp(s.ptr, t.data, <size_t>length) == 0



cdef inline bint _slot_equals(ShareableList sl, Py_ssize_t k, Target* t) except -1:
    """Python's == between a builtin-typed target and item k, without building the item."""
    cdef Slot s
    _slot(sl, k, &s)
    if s.code == CODE_NONE:
        return t.kind == T_NONE
    if s.kind == K_BYTES:
        if s.code == CODE_STR:
            return t.kind == T_STR and _bytes_equal(t, &s)
        return t.kind == T_BYTES and _bytes_equal(t, &s)
    return t.kind == T_NUMBER and _number_equals(t, &s)


cdef Py_ssize_t _scan(ShareableList sl, object value, bint count_all, bint contains) except -2:
    """First index equal to value (-1 if none), or with count_all the count."""
    cdef Target t
    cdef Py_ssize_t k, j, m, hits, found = 0, n = sl._n
    cdef int64_t start, data_size = sl._data_size
    cdef uint64_t word
    cdef const char* offsets
    cdef const char* formats
    cdef const char* codes
    cdef const char* data
    cdef _Mapping pinned = _pin(sl)
    _make_target(value, &t)       # runs no Python code: the target is a builtin
    if t.kind == T_OTHER:
        return _scan_python(sl, value, count_all, contains)
    offsets, formats, codes, data = sl._offsets, sl._formats, sl._codes, sl._data
    if t.kind != T_NUMBER:
        t.q_possible = t.d_possible = False   # numeric runs hold no match
    k = 0
    while k < n:
        m = min(RUN, n - k)
        word = load_u64(formats + 8 * k)
        start = -1
        if word == FMT_Q or word == FMT_D:
            start = regular_run(offsets, formats, codes, k, m, word, data_size)
        if start >= 0:
            # A run of same-type numbers: one vectorised compare.
            if word == FMT_Q:
                hits = count_i64(data + start, m, t.q_value) if t.q_possible else 0
            else:
                hits = count_f64(data + start, m, t.d_value) if t.d_possible else 0
            if hits and not count_all:
                for j in range(m):
                    if _slot_equals(sl, k + j, &t):
                        return k + j
            found += hits
        else:
            for j in range(k, k + m):
                if _slot_equals(sl, j, &t):
                    if not count_all:
                        return j
                    found += 1
        k += m
    return found if count_all else -1


cdef Py_ssize_t _scan_python(ShareableList sl, object value, bint count_all, bint contains) except -2:
    """The scan for values of other types: each item built and compared in Python."""
    cdef _Mapping pinned
    cdef Py_ssize_t k, found = 0
    cdef bint hit
    for k in range(sl._n):
        pinned = _pin(sl)    # again each time: the previous comparison ran Python code
        item = _read(sl, k)
        if contains:
            hit = PyObject_RichCompareBool(item, value, Py_EQ)
        else:
            hit = bool(PyObject_RichCompare(value, item, Py_EQ))
        if hit:
            if not count_all:
                return k
            found += 1
    return found if count_all else -1
