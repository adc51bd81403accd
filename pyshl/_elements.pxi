# Atomics on NumPy arrays' elements: fetch_add, compare_exchange and add_at for any shared array.

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_FromDouble
from cpython.long cimport (PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong,
                           PyLong_FromLongLong, PyLong_FromUnsignedLongLong)
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.number cimport PyIndex_Check, PyNumber_Index
from cpython.object cimport PyObject, PyObject_TypeCheck, PyTypeObject, Py_TYPE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memcpy, memset

cdef extern from "Python.h":
    # exc NULL: clipped to the Py_ssize_t range instead of raising OverflowError
    Py_ssize_t number_as_ssize_t "PyNumber_AsSsize_t"(object o, PyObject* exc) except? -1

cdef extern from "_elements.h":
    ctypedef struct pyshl_ndarray:
        char* data
        int nd
        Py_ssize_t* dimensions
        Py_ssize_t* strides
        PyObject* base
        PyObject* descr
        int flags
    ctypedef struct pyshl_descr:
        char byteorder
        int type_num
    enum:
        PYSHL_NPY_ALIGNED
        PYSHL_NPY_WRITEABLE
        PYSHL_EL_SIGNED
        PYSHL_EL_UNSIGNED
        PYSHL_EL_FLOAT
    uint64_t el_load "pyshl_el_load"(const char* p, int width) nogil
    uint64_t el_add_int "pyshl_el_add_int"(char* p, int width, uint64_t delta) nogil
    bint el_cas_bits "pyshl_el_cas_bits"(char* p, int width, uint64_t* expected,
                                         uint64_t desired) nogil
    double el_add_float "pyshl_el_add_float"(char* p, int width, double delta) nogil
    bint el_cas_float "pyshl_el_cas_float"(char* p, int width, double expected, double desired,
                                           double* seen) nogil
    int el_sum_int "pyshl_el_sum_int"(
        const int64_t* idx, Py_ssize_t m, int64_t n, int64_t lo, int64_t span,
        const uint64_t* deltas, Py_ssize_t delta_step, uint64_t* sums) nogil
    int el_sum4_int "pyshl_el_sum4_int"(
        const int64_t* idx, Py_ssize_t m, int64_t n, int64_t lo, int64_t span,
        const uint64_t* deltas, Py_ssize_t step, uint64_t* tables) nogil
    void el_apply_int "pyshl_el_apply_int"(char* first, Py_ssize_t stride, int width,
                                           int64_t span, const uint64_t* sums) nogil
    void el_apply_float "pyshl_el_apply_float"(char* first, Py_ssize_t stride, int width,
                                               int64_t span, const double* sums,
                                               const uint8_t* touched) nogil
    Py_ssize_t el_copy_range "pyshl_el_copy_range"(
        const int64_t* src, int64_t* dst, Py_ssize_t m, int64_t n, int64_t* lo,
        int64_t* hi) nogil
    Py_ssize_t el_add_each "pyshl_el_add_each"(
        char* first, Py_ssize_t stride, int kind, const int64_t* idx, Py_ssize_t m, int64_t n,
        int64_t lo, int64_t span, const uint64_t* ints, const double* floats,
        Py_ssize_t step) nogil

cdef enum:
    MAX_DIMS = 64           # NumPy's NPY_MAXDIMS (32 before 2.0)
    TYPE_NUMS = 64
    SUM4_SPAN = 4096        # four tables of sums fit in L1/L2 up to this many targets

# What pyshl learnt about NumPy when it was imported (see _learn_numpy): set
# once, under the import lock, before any array reaches these functions.
cdef PyTypeObject* _ndarray_type = NULL     # NULL: use NumPy's Python interface
cdef PyTypeObject* _shared_array_type = NULL
cdef int _kind_by_type_num[TYPE_NUMS]       # NumPy type number -> element kind, 0 if none
cdef char _native_order = b"<" if sys.byteorder == "little" else b">"

_ELEMENT_TYPES = "int8…int64, uint8…uint64, float32 or float64 (native byte order)"


def _learn_numpy(np, shared_array_type):
    """Learn NumPy's type numbers, and check that arrays are laid out as
    _elements.h says, on real arrays of every supported type.  If any check
    fails, the array atomics stay off: they raise RuntimeError saying so."""
    global _ndarray_type, _shared_array_type
    cdef pyshl_ndarray* arr
    cdef pyshl_descr* descr
    kinds = {}
    for code in "bhilqBHILQfd":
        dtype = np.dtype(code)
        cls = PYSHL_EL_FLOAT if dtype.kind == "f" else \
            PYSHL_EL_SIGNED if dtype.kind == "i" else PYSHL_EL_UNSIGNED
        if not 0 <= dtype.num < TYPE_NUMS:
            return False
        kinds[dtype.num] = cls | dtype.itemsize
    for num, kind in kinds.items():
        _kind_by_type_num[num] = kind
    for code in "bhilqBHILQfd":
        for order in "=" + ("<>" if np.dtype(code).itemsize > 1 else ""):
            sample = np.zeros((5, 6), np.dtype(code).newbyteorder(order))[1:, ::2]
            sample.flags.writeable = order != ">"
            arr = <pyshl_ndarray*>sample
            descr = <pyshl_descr*>arr.descr
            checks = (isinstance(sample, np.ndarray),
                      <uintptr_t>arr.data == sample.__array_interface__["data"][0],
                      arr.nd == 2,
                      (arr.dimensions[0], arr.dimensions[1]) == sample.shape,
                      (arr.strides[0], arr.strides[1]) == sample.strides,
                      descr.type_num == sample.dtype.num,
                      _byteorder_ok(descr.byteorder) == (order in "=" + chr(_native_order))
                      if sample.itemsize > 1 else descr.byteorder == b"|",
                      bool(arr.flags & PYSHL_NPY_WRITEABLE) == sample.flags.writeable,
                      bool(arr.flags & PYSHL_NPY_ALIGNED) == sample.flags.aligned)
            if not all(checks):
                return False
    _ndarray_type = <PyTypeObject*>np.ndarray
    _shared_array_type = <PyTypeObject*>shared_array_type
    return True


cdef inline bint _byteorder_ok(char order) noexcept:
    """Native: '=' (or the native '<'/'>', which NumPy may keep), '|' for bytes."""
    return order == b"=" or order == b"|" or order == _native_order


# One element's index, converted before the array is read.
cdef struct Where:
    int k                           # how many indices
    Py_ssize_t at[MAX_DIMS]


cdef int _where(object index, Where* w) except -1:
    cdef Py_ssize_t j
    if PyLong_CheckExact(index):
        w.k = 1
        w.at[0] = _index_value(index)
        return 0
    if isinstance(index, tuple):
        w.k = PyTuple_GET_SIZE(index)
        if w.k > MAX_DIMS:
            raise IndexError("too many indices: %d" % w.k)
        for j in range(w.k):
            w.at[j] = _index_value(<object>PyTuple_GET_ITEM(index, j))
        return 0
    w.k = 1
    w.at[0] = _index_value(index)
    return 0


cdef inline Py_ssize_t _index_value(object i) except? -1:
    if not PyIndex_Check(i):
        raise TypeError("an element's index must be an int or a tuple of ints, not %r"
                        % type(i).__name__)
    # Clipped to the Py_ssize_t range, not raised: the bounds check refuses it.
    return number_as_ssize_t(i, NULL)


# A value for one element, converted before the array is read.
cdef struct Value:
    bint is_float
    bint negative         # an int below 0 (held in i), else held in u
    int64_t i
    uint64_t u
    double f              # the value as a float (ints too)
    bint exact            # f is the value exactly


cdef int _value(object value, Value* v, str what) except -1:
    cdef int overflow = 0
    v.exact = True
    if not PyLong_CheckExact(value) and PyFloat_Check(value):
        v.is_float = True
        v.f = PyFloat_AS_DOUBLE(value)
        return 0
    if not PyLong_CheckExact(value):
        if getattr(value, "dtype", None) is not None and value.dtype.kind == "b":
            value = int(bool(value))           # numpy.bool_
        elif PyIndex_Check(value) and not (value is True or value is False):
            value = PyNumber_Index(value)
        elif value is True or value is False:
            value = int(value)
        elif hasattr(value, "__float__") and not isinstance(value, (str, bytes, complex)):
            v.is_float = True
            v.f = float(value)
            return 0
        else:
            raise TypeError("%s must be an int or a float, not %r" % (what, type(value).__name__))
    v.is_float = False
    v.i = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow == 0:
        v.negative = v.i < 0
        v.u = <uint64_t>v.i
    elif overflow > 0:
        v.negative = False
        try:
            v.u = PyLong_AsUnsignedLongLong(value)
        except OverflowError:
            raise OverflowError("%s %d does not fit in 64 bits" % (what, value)) from None
    else:
        raise OverflowError("%s %d does not fit in 64 bits" % (what, value))
    v.f = <double>v.i if v.negative or v.u <= 9223372036854775807 else <double>v.u
    if not -9007199254740992 <= v.i <= 9007199254740992 or overflow:
        v.exact = float(value) == value      # an exact int and a float: no Python code
    return 0


cdef uint64_t _value_bits(Value* v, int kind, str what) except? 0xFFFFFFFFFFFFFFFF:
    """The value as the element's bits, if the element's type holds it (as
    NumPy 2 requires of Python ints), else OverflowError/TypeError."""
    cdef int bits = 8 * (kind & 0x0f)
    if kind & PYSHL_EL_FLOAT:
        return 0    # floats go by value, not bits
    if v.is_float:
        raise TypeError("%s must be an int for an integer array, not a float" % what)
    if kind & PYSHL_EL_SIGNED:
        if (not v.negative and v.u >= (<uint64_t>1 << (bits - 1))) or \
                (v.negative and bits < 64 and v.i < -(<int64_t>1 << (bits - 1))):
            raise OverflowError("%s %s is out of range for int%d" % (what, _value_repr(v), bits))
    elif v.negative or (bits < 64 and v.u >> bits):
        raise OverflowError("%s %s is out of range for uint%d" % (what, _value_repr(v), bits))
    return v.u if bits == 64 else v.u & ((<uint64_t>1 << bits) - 1)


cdef str _value_repr(Value* v):
    return str(v.i) if v.negative else str(v.u)


cdef object _element_object(uint64_t bits, int kind):
    """The element's bits as a Python int or float."""
    cdef int width = kind & 0x0f
    if kind & PYSHL_EL_FLOAT:
        return PyFloat_FromDouble(_bits_as_float(bits, width))
    if kind & PYSHL_EL_UNSIGNED:
        return PyLong_FromUnsignedLongLong(bits)
    if width < 8 and bits >> (8 * width - 1):       # sign-extend
        bits |= ~((<uint64_t>1 << (8 * width)) - 1)
    return PyLong_FromLongLong(<int64_t>bits)


cdef inline double _bits_as_float(uint64_t bits, int width) noexcept:
    cdef float f
    cdef double d
    cdef uint64_t b = bits
    cdef unsigned int b32 = <unsigned int>bits
    if width == 4:
        memcpy(&f, &b32, 4)
        return f
    memcpy(&d, &b, 8)
    return d


cdef int _array_kind_of(object a, str op) except 0:
    """The element kind of array `a` (read from the array object), raising
    unless it is one the atomics support."""
    cdef pyshl_descr* descr
    cdef int kind = 0
    if _ndarray_type != NULL:
        if not PyObject_TypeCheck(a, _ndarray_type):
            raise TypeError("pyshl.%s needs a NumPy array, not %r" % (op, type(a).__name__))
        descr = <pyshl_descr*>(<pyshl_ndarray*>a).descr
        if 0 <= descr.type_num < TYPE_NUMS and _byteorder_ok(descr.byteorder):
            kind = _kind_by_type_num[descr.type_num]
        if kind == 0:
            raise TypeError("pyshl.%s needs an array of %s, not %s"
                            % (op, _ELEMENT_TYPES, a.dtype))
        return kind
    raise RuntimeError("pyshl's array atomics are unavailable: NumPy's array layout "
                       "was not recognised when pyshl was imported")


cdef char* _element_ptr(object a, Where* w, int* kind, bint write, str op) except NULL:
    """Point at the element of `a` at w: checked against the array's shape,
    flags and alignment, all read from the array object at this moment, with
    no Python code run until the caller is done with the pointer (the array,
    which the caller holds, keeps its memory)."""
    kind[0] = _array_kind_of(a, op)
    cdef pyshl_ndarray* arr = <pyshl_ndarray*>a
    cdef int width = kind[0] & 0x0f
    cdef Py_ssize_t j, i, n
    cdef char* p = arr.data
    if w.k != arr.nd:
        raise IndexError("pyshl.%s needs one index per axis: the array has %d, the index %d"
                         % (op, arr.nd, w.k))
    for j in range(w.k):
        i = w.at[j]
        n = arr.dimensions[j]
        if i < 0:
            i += n
        if i < 0 or i >= n:
            raise IndexError("index %d is out of bounds for axis %d with size %d"
                             % (w.at[j], j, n))
        p += i * arr.strides[j]
    if write and not arr.flags & PYSHL_NPY_WRITEABLE:
        raise ValueError("assignment destination is read-only")
    if <uintptr_t>p & (width - 1):       # (width is a power of two)
        raise ValueError("pyshl.%s needs naturally aligned elements: this one is at an "
                         "address that is not a multiple of %d" % (op, width))
    return p


cdef inline char* _fast_int_element(object a, int64_t i, int* kind) noexcept:
    """The common case, with no Python code run: element i of a 1-D,
    writeable, aligned int array (exactly a SharedArray or an ndarray); NULL
    for anything else, which takes the general path."""
    cdef pyshl_ndarray* arr
    cdef pyshl_descr* descr
    cdef Py_ssize_t n
    cdef char* p
    if _ndarray_type == NULL or (
            Py_TYPE(a) != _shared_array_type and Py_TYPE(a) != _ndarray_type):
        return NULL
    arr = <pyshl_ndarray*>a
    descr = <pyshl_descr*>arr.descr
    if arr.nd != 1 or not (0 <= descr.type_num < TYPE_NUMS) or not _byteorder_ok(descr.byteorder):
        return NULL
    kind[0] = _kind_by_type_num[descr.type_num]
    if kind[0] == 0 or kind[0] & PYSHL_EL_FLOAT or not arr.flags & PYSHL_NPY_WRITEABLE:
        return NULL
    n = arr.dimensions[0]
    if i < 0:
        i += n
    if <uint64_t>i >= <uint64_t>n:
        return NULL
    p = arr.data + i * arr.strides[0]
    if <uintptr_t>p & ((kind[0] & 0x0f) - 1):
        return NULL
    return p


cdef inline uint64_t _value_mask(int64_t value, int kind) noexcept:
    """A fitting value as the element's bits (zero-extended)."""
    cdef int bits = 8 * (kind & 0x0f)
    return <uint64_t>value if bits == 64 else <uint64_t>value & ((<uint64_t>1 << bits) - 1)


cdef inline bint _int_fits(int64_t value, int kind) noexcept:
    cdef int bits = 8 * (kind & 0x0f)
    if kind & PYSHL_EL_UNSIGNED:
        return value >= 0 and (bits == 64 or value < (<int64_t>1 << bits))
    return bits == 64 or (-(<int64_t>1 << (bits - 1)) <= value < (<int64_t>1 << (bits - 1)))


def fetch_add(a, index, value, /):
    """fetch_add(a, index, value, /)

    Atomically add ``value`` to element ``a[index]`` of a NumPy array (a
    SharedArray, a window of one, or any array) and return the element's old
    value as a Python int or float.  Integers wrap, as NumPy's do; ``value``
    must fit in the element's type.  ``index`` is an int, or a tuple of ints
    with one per axis.  For a ShareableList, ``sl.fetch_add(index, value)``.
    """
    cdef Where w
    cdef Value v
    cdef int kind = 0
    cdef uint64_t bits
    cdef int64_t delta, i
    cdef char* p
    if _exact_i64(value, &delta) and _exact_i64(index, &i):
        p = _fast_int_element(a, i, &kind)
        if p != NULL and _int_fits(delta, kind):
            if kind == PYSHL_EL_SIGNED | 8:
                return PyLong_FromLongLong(<int64_t>el_add_int(p, 8, <uint64_t>delta))
            return _element_object(el_add_int(p, kind & 0x0f, <uint64_t>delta), kind)
    if isinstance(a, ShareableList):
        return a.fetch_add(index, value)
    _where(index, &w)
    _value(value, &v, "value")
    p = _element_ptr(a, &w, &kind, True, "fetch_add")
    if kind & PYSHL_EL_FLOAT:
        return PyFloat_FromDouble(el_add_float(p, kind & 0x0f, v.f))
    bits = _value_bits(&v, kind, "value")
    return _element_object(el_add_int(p, kind & 0x0f, bits), kind)


def compare_exchange(a, index, expected, desired, /):
    """compare_exchange(a, index, expected, desired, /)

    Atomically: if element ``a[index]`` of a NumPy array equals ``expected``,
    store ``desired``; return whether it did.  Floats compare as Python
    compares them (0.0 == -0.0, NaN equals nothing).  For a ShareableList,
    ``sl.compare_exchange(index, expected, desired)``.
    """
    cdef Where w
    cdef Value e, d
    cdef int kind = 0
    cdef uint64_t want, bits
    cdef double seen
    cdef int64_t fast_expected, fast_desired, i
    cdef char* p
    if _exact_i64(expected, &fast_expected) and _exact_i64(desired, &fast_desired) \
            and _exact_i64(index, &i):
        p = _fast_int_element(a, i, &kind)
        if p != NULL and _int_fits(fast_expected, kind) and _int_fits(fast_desired, kind):
            want = _value_mask(fast_expected, kind)
            return el_cas_bits(p, kind & 0x0f, &want, _value_mask(fast_desired, kind))
    if isinstance(a, ShareableList):
        return a.compare_exchange(index, expected, desired)
    _where(index, &w)
    _value(expected, &e, "expected")
    _value(desired, &d, "desired")
    p = _element_ptr(a, &w, &kind, True, "compare_exchange")
    if kind & PYSHL_EL_FLOAT:
        if not e.exact:        # an int no float equals (as Python compares them)
            return False
        return el_cas_float(p, kind & 0x0f, e.f, d.f, &seen)
    want = _value_bits(&e, kind, "expected")
    bits = _value_bits(&d, kind, "desired")
    return el_cas_bits(p, kind & 0x0f, &want, bits)


# The state of an array that add_at works from: read from the array object
# without running Python code, and read again before the adds, which go
# ahead only if nothing changed (a callback converting the arguments may have
# reshaped or retyped the array).
cdef struct ArrayState:
    char* data
    int nd
    int kind
    int flags
    Py_ssize_t dims[MAX_DIMS]
    Py_ssize_t strides[MAX_DIMS]


cdef int _array_state(object a, ArrayState* s, str op) except -1:
    """Read the array object's state into s (no Python code runs unless it raises)."""
    memset(s, 0, sizeof(ArrayState))     # padding too: states are compared with memcmp
    s.kind = _array_kind_of(a, op)
    cdef pyshl_ndarray* arr = <pyshl_ndarray*>a
    cdef int j
    if arr.nd > MAX_DIMS:
        raise ValueError("pyshl.%s supports up to %d axes" % (op, MAX_DIMS))
    s.data = arr.data
    s.nd = arr.nd
    s.flags = arr.flags & (PYSHL_NPY_WRITEABLE | PYSHL_NPY_ALIGNED)
    for j in range(MAX_DIMS):
        s.dims[j] = arr.dimensions[j] if j < arr.nd else 0
        s.strides[j] = arr.strides[j] if j < arr.nd else 0
    return 0


def add_at(a, indices, values):
    """add_at(a, indices, values)

    ``numpy.add.at(a, indices, values)``, atomic across processes and threads:
    for ``a`` a NumPy array of int8…int64, uint8…uint64, float32 or float64
    with naturally aligned elements (a SharedArray, a window of one, or any
    array).  ``indices`` is an integer array (along the first axis) or a
    tuple of integer arrays (one per axis); ``values`` broadcasts as NumPy
    broadcasts it.  Integers wrap, as NumPy's do.  Every index and value is
    checked before anything is added: an error adds nothing.  The adds run
    with the GIL released; each target's updates are combined privately
    first, so float sums are rounded per target, not per update.  For a
    ShareableList, ``sl.add_at(indices, values)``.
    """
    if isinstance(a, ShareableList):
        return a.add_at(indices, values)
    np = _numpy()
    cdef ArrayState before
    _array_state(a, &before, "add_at")
    cdef int width = before.kind & 0x0f
    cdef Py_ssize_t j
    if not before.flags & PYSHL_NPY_WRITEABLE:
        raise ValueError("assignment destination is read-only")
    if <uintptr_t>before.data & (width - 1):
        raise ValueError("pyshl.add_at needs naturally aligned elements")
    for j in range(before.nd):
        if before.strides[j] % width and before.dims[j] > 1:
            raise ValueError("pyshl.add_at needs naturally aligned elements: axis %d's "
                             "stride %d is not a multiple of %d"
                             % (j, before.strides[j], width))
    # Python code may run from here (conversions, NumPy, finalizers).
    dtype_name = str(a.dtype)
    shape = tuple([before.dims[j] for j in range(before.nd)])
    per_axis = [before.strides[j] // width for j in range(before.nd)]
    index_arrays = [np.asarray(i) for i in indices] if isinstance(indices, tuple) \
        else [np.asarray(indices)]
    if len(index_arrays) > before.nd:
        raise IndexError("too many indices for array: array is %d-dimensional, but %d were "
                         "indexed" % (before.nd, len(index_arrays)))
    for j, i in enumerate(index_arrays):
        if i.size == 0 and i.dtype.kind not in "iu":
            index_arrays[j] = i = i.astype(np.int64)    # [] is float64
        if i.dtype.kind not in "iu":
            raise TypeError("add_at indices must be integer arrays, not %s" % i.dtype)
    index_arrays = np.broadcast_arrays(*index_arrays) if index_arrays else []
    picked = index_arrays[0].shape if index_arrays else ()
    block = shape[len(index_arrays):]
    floats = before.kind & PYSHL_EL_FLOAT
    if type(values) is int or type(values) is bool:
        if not -9223372036854775808 <= values < 18446744073709551616:
            raise OverflowError("Python int %d does not fit in 64 bits" % values)
        value_array = np.asarray(float(values)) if floats else \
            np.asarray(int(values) % 18446744073709551616, np.uint64)   # wraps, as NumPy's
    else:
        value_array = np.asarray(values)
    if value_array.dtype.kind not in ("biuf" if floats else "biu"):
        raise TypeError("add_at adds %s to an array of %s, not values of type %s%s"
                        % ("real numbers" if floats else "integers", dtype_name,
                           value_array.dtype, "" if floats or value_array.dtype.kind != "f"
                           else " (NumPy would truncate each partial sum)"))
    work = np.float64 if floats else np.uint64        # ints: wrapping, two's complement
    if value_array.ndim == 0:
        converted = value_array.astype(work).reshape(1)
    else:
        converted = np.empty(picked + block, work)
        # (broadcast_to: values may not have more axes than the targets, as in NumPy)
        np.copyto(converted, np.broadcast_to(value_array, converted.shape), casting="unsafe")
        converted = converted.reshape(-1)
    cdef int64_t n, first_element = 0, lowest = 0, highest = 0
    cdef Py_ssize_t stride
    if len(index_arrays) == 1 and before.nd == 1:
        # The common case: the kernel takes the indices as they are.
        index = index_arrays[0].reshape(-1)
        if index.dtype.kind == "u" and index.size and \
                int(index.max()) > 9223372036854775807:
            raise IndexError("index %d is out of bounds for axis 0 with size %d"
                             % (index.max(), shape[0]))
        index = np.ascontiguousarray(index, dtype=np.int64)
        n = shape[0]
        stride = before.strides[0]
    else:
        # Flat element offsets, relative to the lowest element of the array.
        for j in range(before.nd):
            if per_axis[j] < 0:
                lowest += per_axis[j] * (shape[j] - 1)
            else:
                highest += per_axis[j] * (shape[j] - 1)
        offsets = np.zeros(picked, np.int64) - lowest
        for j, i in enumerate(index_arrays):
            i = i.astype(np.int64) if i.dtype != np.uint64 else i
            bad = (i < -shape[j]) | (i >= shape[j])
            if bad.any():
                raise IndexError("index %d is out of bounds for axis %d with size %d"
                                 % (i[bad].flat[0], j, shape[j]))
            offsets += np.where(i < 0, i + shape[j], i).astype(np.int64) * per_axis[j]
        if block:
            within = np.zeros(block, np.int64)
            for j in range(len(block)):
                axis = len(index_arrays) + j
                within += (np.arange(block[j], dtype=np.int64) * per_axis[axis]).reshape(
                    (-1,) + (1,) * (len(block) - j - 1))
            offsets = offsets.reshape(-1, 1) + within.reshape(1, -1)
        index = np.ascontiguousarray(offsets.reshape(-1))
        n = highest - lowest + 1
        stride = width
        first_element = lowest
    if converted.size != 1 and converted.size != index.size:
        raise ValueError("add_at values of %d elements for %d targets"
                         % (converted.size, index.size))
    return _add_elements(a, &before, first_element * width, n, stride, index, converted)


cdef int _add_elements(object a, ArrayState* before, Py_ssize_t shift, int64_t n,
                       Py_ssize_t stride, index, deltas) except -1:
    """The adds, on indices 0..n-1 (negative ones count from n) of the
    elements at data + shift + stride * index.  `a` (held by the caller)
    keeps the memory.  Every Python object is made first; then the array's
    state is read again, and must be what the arguments were converted for,
    and no Python code runs from there until the adds are done."""
    np = _numpy()
    cdef const int64_t[::1] idx = index
    cdef Py_ssize_t m = idx.shape[0]
    cdef Py_ssize_t bad, changed = 0
    cdef int64_t lo = 0, hi = 0, t, span
    cdef ArrayState now
    cdef int kind = before.kind, width = before.kind & 0x0f
    cdef Py_ssize_t step = 0 if deltas.size == 1 else 1
    cdef const uint64_t[::1] ints
    cdef const double[::1] floats
    cdef const uint64_t* int_deltas = NULL
    cdef const double* float_deltas = NULL
    cdef uint64_t* sums = NULL
    cdef double* float_sums = NULL
    cdef uint8_t* touched = NULL
    cdef char* first
    cdef int rc = 0
    cdef bint combine
    cdef const int64_t* ip
    cdef int64_t[::1] copy
    if m == 0:
        return 0
    if kind & PYSHL_EL_FLOAT:
        floats = deltas
        float_deltas = &floats[0]
    else:
        ints = deltas
        int_deltas = &ints[0]
    ip = &idx[0]
    if n <= COMBINE_SPAN and m >= n // COMBINE_REPEATS:
        # A short array and many updates: sums over all of it, each index
        # checked as it is summed.
        lo, span, combine = 0, n, True
    else:
        # A private copy of the indices, their range found as they are
        # copied: none can change between its check and its use (a failed
        # call must add nothing, and the spread path adds as it goes).
        private = np.empty(m, np.int64)
        copy = private
        with nogil:
            bad = el_copy_range(ip, &copy[0], m, n, &lo, &hi)
        ip = &copy[0]
        if bad >= 0:
            raise IndexError("index %d is out of bounds for axis 0 with size %d"
                             % (ip[bad], n))
        span = hi - lo + 1
        combine = span <= COMBINE_SPAN or span <= m // COMBINE_REPEATS
    try:
        if combine and kind & PYSHL_EL_FLOAT:
            float_sums = <double*>PyMem_Malloc(span * sizeof(double))
            touched = <uint8_t*>PyMem_Calloc(span, 1)
            if float_sums == NULL or touched == NULL:
                raise MemoryError()
        elif combine:
            # Four interleaved tables where they stay in cache (see el_sum4_int).
            sums = <uint64_t*>PyMem_Calloc(span * (4 if span <= SUM4_SPAN else 1),
                                           sizeof(uint64_t))
            if sums == NULL:
                raise MemoryError()
        _array_state(a, &now, "add_at")
        if memcmp(before, &now, sizeof(ArrayState)) != 0:
            raise RuntimeError("the array changed while add_at converted its arguments")
        first = now.data + shift + stride * lo
        with nogil:
            if not combine:
                changed = el_add_each(first, stride, kind, ip, m, n, lo, span,
                                      int_deltas, float_deltas, step)
            elif kind & PYSHL_EL_FLOAT:
                for t in range(span):
                    float_sums[t] = -0.0    # IEEE addition's identity
                rc = sum_f64(ip, m, n, lo, span, float_deltas, step, float_sums,
                             touched)
                if rc == 0:
                    el_apply_float(first, stride, width, span, float_sums, touched)
            else:
                if span <= SUM4_SPAN:
                    rc = el_sum4_int(ip, m, n, lo, span, int_deltas, step, sums)
                else:
                    rc = el_sum_int(ip, m, n, lo, span, int_deltas, step, sums)
                if rc == 0:
                    el_apply_int(first, stride, width, span, sums)
    finally:
        PyMem_Free(sums)
        PyMem_Free(float_sums)
        PyMem_Free(touched)
    if rc < 0:
        # An index outside the targets: out of range (a short array's indices
        # are checked only as they are summed), or changed meanwhile.
        with nogil:
            bad = index_range(ip, m, n, &lo, &hi)
        if bad >= 0:
            raise IndexError("index %d is out of bounds for axis 0 with size %d"
                             % (ip[bad], n))
        raise RuntimeError("the index array changed while add_at read it: nothing was added")
    if changed:      # (a private copy: cannot happen)
        raise RuntimeError("%d of %d additions were not applied" % (changed, m))
    return 0
