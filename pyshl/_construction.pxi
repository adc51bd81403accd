# Construction: plan, fill and publish a new segment from a sequence or an array; attach to one.

from cpython.buffer cimport PyObject_CheckBuffer
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport int64_t
from libc.string cimport memcpy

import os

from pyshl._shm import SharedMemory


cdef inline int64_t _packed_slot_size(Packed* v) noexcept:
    """The slot a new list gives a packed value.

    A str gets the standard library's slot, sized by its characters, wherever
    its UTF-8 fits there (so that copies stay byte-identical), and a slot
    sized by its bytes only where the standard library's would truncate it.
    """
    cdef int64_t by_chars
    if v.kind == KIND_STR:
        by_chars = _slot_size(v.chars)
        return by_chars if v.size <= by_chars else _slot_size(v.size)
    if v.kind == KIND_BYTES:
        return _slot_size(v.size)
    return 8


cdef int64_t _plan(object items) except -2:
    """Validate every item of a list or tuple and return the data area size;
    -1 if some item needs converting to its builtin type first."""
    cdef Py_ssize_t k, n = PySequence_Fast_GET_SIZE(items)
    cdef int64_t total = 0, size
    cdef Packed v
    for k in range(n):
        item = <object>PySequence_Fast_GET_ITEM(items, k)
        if not _pack_exact(item, &v):
            _normalise(item)   # raises for unsupported types
            return -1
        size = _packed_slot_size(&v)
        if size > MAX_SLOT:
            raise ValueError("item %d is %d bytes long; a ShareableList str/bytes item "
                             "holds at most %d bytes" % (k, v.size, MAX_SLOT - 1))
        total += size
    return total


cdef int _fill(object items, pyshl_layout* layout) except -1:
    """Write the planned items into a fresh (zeroed) segment.

    Python code ran since _plan (creating the segment), so the list may have
    changed: every item is checked again against the planned layout, and
    _publish() checks the total.
    """
    cdef Py_ssize_t k
    cdef int64_t offset = 0, size
    cdef Packed v
    if PySequence_Fast_GET_SIZE(items) != layout.n:
        raise RuntimeError("the sequence changed size while a ShareableList was built from it")
    for k in range(layout.n):
        item = <object>PySequence_Fast_GET_ITEM(items, k)
        if not _pack_exact(item, &v):
            raise RuntimeError("the sequence changed while a ShareableList was built from it")
        size = _packed_slot_size(&v)
        if size > MAX_SLOT or offset + size > layout.data_size:
            raise RuntimeError("the sequence changed while a ShareableList was built from it")
        store_i64(<char*>layout.offsets + 8 * k, offset)
        if v.kind == KIND_STR or v.kind == KIND_BYTES:
            memcpy(layout.data + offset, v.data, v.size)
            store_i64(layout.formats + 8 * k, <int64_t>_text_format(size))
        else:
            store_i64(layout.data + offset, v.raw)
            store_i64(layout.formats + 8 * k, <int64_t>KIND_FORMAT[v.kind])
        store_code(layout.codes + k, KIND_CODE[v.kind])
        offset += size
    store_i64(<char*>layout.offsets + 8 * layout.n, offset)
    return 0


cdef int _create(ShareableList sl, object sequence, object name, object track) except -1:
    cdef int64_t data_size
    if sequence is None:
        sequence = ()
    if PyObject_CheckBuffer(sequence):
        array = _numeric_array(sequence)
        if array is not None:
            return _create_from_array(sl, array, name, track)
    # A list or tuple is used as it is (no copy); anything else is
    # materialised once.  _fill re-checks what _plan validated.
    items = PySequence_Fast(sequence, "ShareableList() takes an iterable of items")
    data_size = _plan(items)
    if data_size < 0:
        # Some items are subclasses or NumPy scalars: convert, then plan.
        items = [x if _is_exact(x) else _normalise(x) for x in items]
        data_size = _plan(items)
    cdef Mapping m = _new_segment(sl, PySequence_Fast_GET_SIZE(items), data_size,
                                  name, track)
    cdef pyshl_region* r = _enter_new(sl, m)
    try:
        _write_every_page(m)
        _fill(items, &sl._layout)
        _publish(sl, m)
    except BaseException:
        _discard(sl)
        raise
    finally:
        region_leave(r)
    return 0


cdef int _create_from_array(ShareableList sl, object array, object name,
                            object track) except -1:
    """One copy from a 1-D numeric array: NumPy casts straight into the segment."""
    cdef Py_ssize_t k, n = len(array)
    cdef int kind = _array_kind(array.dtype)
    np = _numpy()
    cdef Mapping m = _new_segment(sl, n, 8 * n, name, track)
    cdef pyshl_layout* layout = &sl._layout
    cdef pyshl_region* r = _enter_new(sl, m)
    try:
        _write_every_page(m)
        for k in range(n + 1):
            store_i64(<char*>layout.offsets + 8 * k, 8 * k)
        for k in range(n):
            store_i64(layout.formats + 8 * k, <int64_t>KIND_FORMAT[kind])
        # Codes stay 0, as the fresh segment is zeroed.
        if n:
            offset = layout.data - m.region.addr
            if kind == KIND_BOOL:   # the flag byte of each "xxxxxxx?" slot
                target = np.ndarray((n,), np.bool_, buffer=m.export(), offset=offset + 7,
                                    strides=(8,))
            else:
                target = np.ndarray((n,), ITEM_KINDS[kind][4], buffer=m.export(), offset=offset)
            target[...] = array
            del target
        _publish(sl, m)
    except BaseException:
        _discard(sl)
        raise
    finally:
        region_leave(r)
    return 0


cdef pyshl_region* _enter_new(ShareableList sl, Mapping m) except NULL:
    """Enter a new segment's mapping for its construction; a finalizer may
    have closed it already (then no segment is left)."""
    if not region_enter(&m.region):
        _discard(sl)
        raise _closed_error()
    return &m.region


cdef enum:
    SMALLEST_PAGE = 4096    # a store every this many bytes writes every page


cdef void _write_every_page(Mapping m) noexcept:
    """Store a zero into each page of a new (zeroed) segment, before it is filled.

    Its pages are reserved but, on tmpfs, count as holes until written, and
    attaching refuses a list with holes in its layout (see _bind): the
    filling alone leaves the pages of empty str/bytes slots and of zero codes
    unwritten.  The bytes stay the standard library's.
    """
    cdef Py_ssize_t offset
    for offset in range(0, m.region.size, SMALLEST_PAGE):
        m.region.addr[offset] = 0


cdef Mapping _new_segment(ShareableList sl, Py_ssize_t n, int64_t data_size, object name,
                          object track):
    """Create a zeroed segment for n items and data_size bytes of slots, take
    its geometry from the plan, and return its mapping, for the caller to
    enter until _publish().  The header still says "0 items" until then: a process
    attaching meanwhile sees an empty list."""
    cdef int64_t total = 8 * (n + 2) + data_size + 9 * n
    shm = SharedMemory(name, create=True, size=total,
                       track=True if track is None else track)
    sl.shm = shm
    sl._creator_pid = os.getpid()
    cdef Mapping m = shm._mmap
    if m.region.size != total:       # another process resized the file meanwhile
        _discard(sl)
        raise RuntimeError("shared memory segment %r was resized while it was created"
                           % shm.name)
    _set_geometry(sl, m, n, data_size)
    return m


cdef int _publish(ShareableList sl, Mapping m) except -1:
    """Check that the slots written are exactly the plan, then write the header.

    The header goes last, so no process can attach to a list whose header
    disagrees with its slots: the item count after the data size.
    """
    if sl._map is not m or region_closed(&m.region):
        raise _closed_error()     # Python code run meanwhile closed the new list
    cdef int64_t filled = load_i64(sl._layout.offsets + 8 * sl._layout.n)
    if filled != sl._layout.data_size:
        raise RuntimeError("the items changed while a ShareableList was built from "
                           "them: %d bytes of slots were planned and %d written"
                           % (sl._layout.data_size, filled))
    store_seq_i64(m.region.addr, sl._layout.n)
    return 0


cdef int _discard(ShareableList sl) except -1:
    """Undo a failed construction: no segment is left behind."""
    shm, sl.shm = sl.shm, None
    region_close(&sl._map.region)
    sl._creator_pid = 0
    # Cleaning up must not replace the error that brought us here.
    try:
        shm.close()
        shm.unlink()
    except Exception:
        pass    # e.g. Python code run meanwhile (a finalizer) removed the name
    return 0


cdef int _attach(ShareableList sl, object name, object track, bint readonly) except -1:
    shm = SharedMemory(name, track=False if track is None else track, readonly=readonly)
    try:
        _bind(sl, shm)
    except BaseException:
        shm.close()
        shm._untrack()      # attached, not ours: never unlink it
        raise
    sl.shm = shm
    return 0


cdef int _bind(ShareableList sl, object shm) except -1:
    """Take an existing segment's geometry, validating its header against its
    size, and checking that every byte of its layout was written before
    reading it (see _check_written)."""
    cdef Mapping m = shm._mmap
    cdef int64_t size = m.region.size, n, data_size
    if size < 16:
        raise ValueError("shared memory segment %r (%d bytes) is too small to be "
                         "a ShareableList" % (shm.name, size))
    _check_written(shm, 16, True)
    n = load_seq_i64(m.region.addr)     # pairs with _publish(): then the rest is visible
    if n < 0 or n > (size - 16) // 17:
        raise ValueError("shared memory segment %r is not a valid ShareableList: "
                         "item count %d does not fit its %d bytes" % (shm.name, n, size))
    _check_written(shm, 8 * (n + 2), False)    # the offsets, the data size last
    data_size = load_i64(m.region.addr + 8 + 8 * n)
    if data_size < 0 or data_size > size - 16 - 17 * n:
        raise ValueError("shared memory segment %r is not a valid ShareableList: "
                         "data area of %d bytes does not fit its %d bytes"
                         % (shm.name, data_size, size))
    _check_written(shm, 8 * (n + 2) + data_size + 9 * n, False)    # data, formats, codes
    _set_geometry(sl, m, n, data_size)
    return 0


cdef int _check_written(object shm, int64_t end, bint header) except -1:
    """Refuse a segment whose first `end` bytes (its header, or more of its
    layout) have a page never written.

    On tmpfs, reading such a page (a hole of a sparse file, made by
    ftruncate alone) allocates it, and kills the reader with SIGBUS when
    /dev/shm is full: a list must never be read past its first hole.
    """
    cdef Mapping m = shm._mmap
    if end > m.first_hole:
        raise ValueError("shared memory segment %r has unwritten pages from offset %d "
                         "where %s (a sparse file): refusing to read it"
                         % (shm.name, m.first_hole,
                            "its header is" if header else "its layout says there is data"))
    return 0


cdef void _set_geometry(ShareableList sl, Mapping m, Py_ssize_t n, int64_t data_size) noexcept:
    """Point the list at a mapping holding n items in data_size bytes of slots
    (the caller checked that they fit)."""
    cdef pyshl_layout* layout = &sl._layout
    layout.n = n
    layout.data_size = data_size
    layout.offsets = m.region.addr + 8
    layout.data = m.region.addr + 8 * (n + 2)
    layout.formats = layout.data + data_size
    layout.codes = layout.formats + 8 * n
    sl._map = m       # the one time it is set: the list's mapping from now on
