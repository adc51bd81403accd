# add_at: numpy.add.at across processes, each target's deltas combined privately first.

cimport cython
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t

cdef extern from "_slots.h":
    enum:
        PYSHL_TOUCHED
        PYSHL_SLOW
    Py_ssize_t index_range "pyshl_index_range"(
        const int64_t* idx, Py_ssize_t m, int64_t n, int64_t* lo, int64_t* hi) nogil
    int64_t target_of "pyshl_target"(
        const int64_t* idx, Py_ssize_t j, int64_t n, int64_t lo, int64_t span) nogil
    int sum_i64 "pyshl_sum_i64"(
        const int64_t* idx, Py_ssize_t m, int64_t n, int64_t lo, int64_t span,
        const int64_t* deltas, Py_ssize_t delta_step, int64_t* pos, int64_t* neg,
        uint8_t* flags) nogil
    int count_targets "pyshl_count_targets"(
        const int64_t* idx, Py_ssize_t m, int64_t n, int64_t lo, int64_t span,
        int64_t* counts) nogil
    int sum_f64 "pyshl_sum_f64"(
        const int64_t* idx, Py_ssize_t m, int64_t n, int64_t lo, int64_t span,
        const double* deltas, Py_ssize_t delta_step, double* sums, uint8_t* flags) nogil
    int add_combined_i64 "pyshl_add_combined_i64"(char* p, int64_t pos, int64_t neg) nogil
    Py_ssize_t add_each "pyshl_add_each"(
        char* first, int is_float, const int64_t* idx, Py_ssize_t m, int64_t n, int64_t lo,
        int64_t span, const int64_t* int_deltas, const double* float_deltas,
        Py_ssize_t step, Py_ssize_t* first_skipped, Py_ssize_t* changed) nogil
    bint mul_overflow "__builtin_mul_overflow"(int64_t a, int64_t b, int64_t* product) nogil

cdef enum:
    # Combine privately when the targets span few slots (private sums that
    # stay in cache) or many fewer slots than there are updates (many
    # repeats); otherwise add update by update, straight into the segment.
    COMBINE_SPAN = 65536
    COMBINE_REPEATS = 8
    # A target that holds a float (in a range of mixed int and float items).
    TARGET_FLOAT = 4


# One validated target of an update: its slot and whether it holds a float.
cdef struct Target8:
    char* ptr
    bint is_float


# The arguments of one add_at call, converted.
cdef struct Batch:
    const int64_t* idx
    Py_ssize_t m
    int64_t n
    bint int_deltas
    const int64_t* int_deltas_
    const double* float_deltas
    Py_ssize_t step          # 0: one scalar delta for every index


cdef int _add_at(ShareableList sl, object indices, object deltas) except -1:
    np = _numpy()
    cdef Batch b
    cdef int64_t lo = 0, hi = 0
    cdef Py_ssize_t bad
    cdef pyshl_region* r
    b.n = sl._layout.n
    b.int_deltas_ = NULL
    b.float_deltas = NULL
    # Converting the arguments may run Python code (__array__, __index__,
    # dtype lookups): it all happens before the mapping is entered.
    index_array = np.asarray(indices)
    if index_array.size == 0:
        index_array = index_array.astype(np.int64)   # [] is float64: nothing to add
    if index_array.dtype.kind not in "iu":
        raise TypeError("add_at indices must be an integer array, not %s" % index_array.dtype)
    delta_array = np.asarray(deltas)
    if delta_array.dtype.kind not in "biuf" or delta_array.dtype.itemsize > 8:
        raise TypeError("add_at deltas must be integers or floats, not %s" % delta_array.dtype)
    b.int_deltas = delta_array.dtype.kind != "f"
    b.step = 0 if delta_array.ndim == 0 else 1
    if b.step:
        delta_array = np.broadcast_to(delta_array, index_array.shape).ravel()
    index_array = index_array.ravel()
    b.m = index_array.shape[0]
    if b.m == 0:            # nothing to add, but a closed or read-only list still refuses
        r = _enter_writable(sl)
        region_leave(r)
        return 0
    # int(): NumPy 1.x compares uint64 with a Python int through float64.
    if b.int_deltas and delta_array.dtype.kind == "u" and delta_array.size \
            and int(delta_array.max()) > 9223372036854775807:
        raise OverflowError("a uint64 delta does not fit in int64")
    if index_array.dtype.kind == "u" and int(index_array.max()) > 9223372036854775807:
        raise IndexError("add_at index %d is out of range for a ShareableList of %d items"
                         % (index_array.max(), b.n))
    # A long list may take the spread path, which adds as it goes: from a
    # private copy of the indices, so that none can change between its check
    # and its add (a failed call adds nothing).  A short list's are summed
    # privately, and a change is caught before anything is added.
    cdef const int64_t[::1] idx = (
        np.array(index_array, dtype=np.int64) if b.n > COMBINE_SPAN
        else np.ascontiguousarray(index_array, dtype=np.int64))
    delta_array = np.ascontiguousarray(delta_array, dtype=np.int64 if b.int_deltas
                                       else np.float64).reshape(-1)
    cdef const int64_t[::1] int_delta
    cdef const double[::1] float_delta
    if b.int_deltas:
        int_delta = delta_array
        b.int_deltas_ = &int_delta[0]
    else:
        float_delta = delta_array
        b.float_deltas = &float_delta[0]
    b.idx = &idx[0]
    r = _enter_writable(sl)       # also keeps it mapped while the GIL is released
    try:
        if b.n <= COMBINE_SPAN:
            # A short list: sums over all of it, each index checked as it is summed.
            return _add_combined(sl, &b, 0, b.n)
        with nogil:
            bad = index_range(b.idx, b.m, b.n, &lo, &hi)
        if bad >= 0:
            _index_error(&b, bad)
        if hi - lo + 1 <= COMBINE_SPAN or (hi - lo + 1) * COMBINE_REPEATS <= b.m:
            return _add_combined(sl, &b, lo, hi - lo + 1)
        return _add_spread(sl, &b, lo, hi - lo + 1)
    finally:
        region_leave(r)


cdef int _index_error(Batch* b, Py_ssize_t j) except -1:
    raise IndexError("add_at index %d is out of range for a ShareableList of %d items"
                     % (b.idx[j], b.n))


cdef int _add_combined(ShareableList sl, Batch* b, int64_t lo, int64_t span) except -1:
    """Sum each target's deltas privately, validate each target once, then add
    each sum with one atomic operation (the GIL released)."""
    cdef int64_t* pos = NULL        # int deltas: positive parts (or counts, for a scalar)
    cdef int64_t* neg = NULL        # int deltas: negative parts
    cdef double* sums = NULL        # float deltas
    cdef uint8_t* flags = <uint8_t*>PyMem_Calloc(span, 1)
    cdef char** ptrs = NULL         # per target, where the range is not uniform
    cdef char* first = NULL         # where it is: target t is at first + 8t
    cdef int rc
    cdef Py_ssize_t bad
    cdef int64_t low, high
    cdef Py_ssize_t skipped = 0, first_skipped = -1
    cdef int64_t t
    try:
        if b.int_deltas:
            pos = <int64_t*>PyMem_Calloc(span, sizeof(int64_t))
            neg = <int64_t*>PyMem_Calloc(span, sizeof(int64_t))
        else:
            sums = <double*>PyMem_Malloc(span * sizeof(double))
            if sums != NULL:
                # -0.0, the identity of IEEE addition: a sum starting at +0.0
                # would turn an item's -0.0 into +0.0.
                for t in range(span):
                    sums[t] = -0.0
        if flags == NULL or (b.int_deltas and (pos == NULL or neg == NULL)) \
                or (not b.int_deltas and sums == NULL):
            raise MemoryError()
        with nogil:
            if not b.int_deltas:
                rc = sum_f64(b.idx, b.m, b.n, lo, span, b.float_deltas, b.step, sums, flags)
            elif b.step:
                rc = sum_i64(b.idx, b.m, b.n, lo, span, b.int_deltas_, 1, pos, neg, flags)
            else:
                rc = count_targets(b.idx, b.m, b.n, lo, span, pos)
                if rc == 0:
                    _scale_counts(pos, neg, flags, span, b.int_deltas_[0])
        if rc < 0:
            # An index outside the targets: out of range (a short list's
            # indices are checked only here), or changed meanwhile.
            with nogil:
                bad = index_range(b.idx, b.m, b.n, &low, &high)
            if bad >= 0:
                _index_error(b, bad)
            raise RuntimeError("the index array changed while add_at read it")
        # Every target valid, numeric, aligned and of a type its deltas go into,
        # before anything is written.
        first = _uniform_targets(sl, lo, span)
        if first == NULL:
            ptrs = <char**>PyMem_Malloc(span * sizeof(char*))
            if ptrs == NULL:
                raise MemoryError()
        _check_targets(sl, b, lo, span, flags, first, ptrs)
        with nogil:
            if _apply_sums(span, pos, neg, sums, flags, first, ptrs):
                skipped = _add_slow_targets(b, lo, span, flags, first, ptrs, &first_skipped)
        if skipped:
            raise OverflowError("%d of %d additions would have overflowed int64 and were not "
                                "applied (the first at index %d); the others were"
                                % (skipped, b.m, b.idx[first_skipped]))
    finally:
        PyMem_Free(pos)
        PyMem_Free(neg)
        PyMem_Free(sums)
        PyMem_Free(flags)
        PyMem_Free(ptrs)
    return 0


cdef void _scale_counts(int64_t* pos, int64_t* neg, uint8_t* flags, int64_t span,
                        int64_t delta) noexcept nogil:
    """A scalar delta: turn each target's count into its positive or negative part."""
    cdef int64_t t, total
    for t in range(span):
        if pos[t]:
            flags[t] |= PYSHL_TOUCHED
            if mul_overflow(pos[t], delta, &total):
                flags[t] |= PYSHL_SLOW
            if delta < 0:
                neg[t] = total
                pos[t] = 0
            else:
                pos[t] = total


cdef char* _uniform_targets(ShareableList sl, int64_t lo, int64_t span) noexcept:
    """Slot lo if lo..lo+span-1 are aligned, contiguous 8-byte slots of one
    numeric kind (one vectorised check, as view() makes), else NULL."""
    cdef pyshl_layout* layout = &sl._layout
    cdef uint64_t word = load_u64(layout.formats + 8 * lo)
    cdef int64_t base = load_i64(layout.offsets + 8 * lo)
    if load_code(layout.codes + lo) != CODE_NUMBER or not (
            word == KIND_FORMAT[KIND_INT] or word == KIND_FORMAT[KIND_FLOAT]):
        return NULL
    if base < 0 or base > layout.data_size - 8 * span or (<uintptr_t>(layout.data + base)) & 7:
        return NULL
    if uniform_prefix(layout, lo, span, word, base) != span:
        return NULL
    return layout.data + base


cdef int _check_targets(ShareableList sl, Batch* b, int64_t lo, int64_t span, uint8_t* flags,
                        char* first, char** ptrs) except -1:
    """Validate every touched target; mark float ones; raise before any write."""
    cdef int64_t t
    cdef int kind
    cdef bint floats = False
    if first != NULL:
        floats = load_u64(sl._layout.formats + 8 * lo) == KIND_FORMAT[KIND_FLOAT]
    for t in range(span):
        if not flags[t] & PYSHL_TOUCHED:
            continue
        if first == NULL:
            kind = _atomic_slot(sl, lo + t, &ptrs[t], "add_at")
        else:
            kind = KIND_FLOAT if floats else KIND_INT
        if kind == KIND_FLOAT:
            flags[t] |= TARGET_FLOAT
        elif not b.int_deltas:
            raise TypeError("add_at cannot add float deltas to item %d, an int" % (lo + t))
    return 0


cdef inline char* _target_ptr(int64_t t, char* first, char** ptrs) noexcept nogil:
    return first + 8 * t if first != NULL else ptrs[t]


cdef int _apply_sums(int64_t span, int64_t* pos, int64_t* neg, double* sums, uint8_t* flags,
                     char* first, char** ptrs) noexcept nogil:
    """One atomic add per touched target; 1 if some are left for _add_slow_targets."""
    cdef int64_t t
    cdef int slow = 0
    cdef char* p
    for t in range(span):
        if not flags[t] & PYSHL_TOUCHED or flags[t] & PYSHL_SLOW:
            slow |= flags[t] & PYSHL_SLOW != 0
            continue
        p = _target_ptr(t, first, ptrs)
        if sums != NULL:
            fetch_add_f64(p, sums[t])
        elif flags[t] & TARGET_FLOAT:
            fetch_add_f64(p, <double>(pos[t] + neg[t]))
        elif add_combined_i64(p, pos[t], neg[t]):
            flags[t] |= PYSHL_SLOW     # some order of adds would overflow: add one by one
            slow = 1
    return slow


cdef Py_ssize_t _add_slow_targets(Batch* b, int64_t lo, int64_t span, uint8_t* flags,
                                  char* first, char** ptrs,
                                  Py_ssize_t* first_skipped) noexcept nogil:
    """The slow targets' deltas one at a time, in order, exactly as adding them
    one by one would; returns how many were skipped (they would overflow)."""
    cdef Py_ssize_t j, skipped = 0
    cdef int64_t t, d, old
    cdef char* p
    for j in range(b.m):
        t = target_of(b.idx, j, b.n, lo, span)
        if t < 0 or not flags[t] & PYSHL_SLOW:
            continue
        p = _target_ptr(t, first, ptrs)
        d = b.int_deltas_[j * b.step]
        if flags[t] & TARGET_FLOAT:
            fetch_add_f64(p, <double>d)
        elif fetch_add_i64(p, d, &old):
            skipped += 1
            if first_skipped[0] < 0:
                first_skipped[0] = j
    return skipped


cdef int _add_spread(ShareableList sl, Batch* b, int64_t lo, int64_t span) except -1:
    """Targets spread over many slots, few repeats: add update by update,
    straight into the segment.  A range of one numeric kind is validated in
    one pass; any other range update by update."""
    cdef char* first = _uniform_targets(sl, lo, span)
    cdef bint floats
    cdef Py_ssize_t skipped, first_skipped = -1, changed = 0
    if first == NULL:
        return _add_each(sl, b)
    floats = load_u64(sl._layout.formats + 8 * lo) == KIND_FORMAT[KIND_FLOAT]
    if not floats and not b.int_deltas:
        raise TypeError("add_at cannot add float deltas to item %d, an int" % lo)
    with nogil:
        skipped = add_each(first, floats, b.idx, b.m, b.n, lo, span, b.int_deltas_,
                           b.float_deltas if not b.int_deltas else NULL, b.step,
                           &first_skipped, &changed)
    if changed:
        raise RuntimeError("the index array changed while add_at read it: %d of %d "
                           "additions were not applied" % (changed, b.m))
    if skipped:
        raise OverflowError("%d of %d additions would have overflowed int64 and were not "
                            "applied (the first at index %d); the others were"
                            % (skipped, b.m, b.idx[first_skipped]))
    return 0


@cython.boundscheck(False)   # every index is checked against n, and j < m, by hand
@cython.wraparound(False)
cdef int _add_each(ShareableList sl, Batch* b) except -1:
    """Targets of mixed kinds (or a corrupt slot among them): validate and add
    update by update (the GIL released for the adds)."""
    cdef Py_ssize_t j, skipped = 0, first_skipped = -1
    cdef int64_t k, old
    cdef int kind
    cdef Target8* targets = <Target8*>PyMem_Malloc(b.m * sizeof(Target8))
    if targets == NULL:
        raise MemoryError()
    try:
        # Pass 1: every target slot is valid, numeric, aligned and of a type
        # the deltas can go into -- before anything is written.
        for j in range(b.m):
            k = b.idx[j] + b.n if b.idx[j] < 0 else b.idx[j]
            if <uint64_t>k >= <uint64_t>b.n:
                raise RuntimeError("the index array changed while add_at read it")
            kind = _atomic_slot(sl, k, &targets[j].ptr, "add_at")
            targets[j].is_float = kind == KIND_FLOAT
            if kind == KIND_INT and not b.int_deltas:
                raise TypeError("add_at cannot add float deltas to item %d, an int" % k)
        # Pass 2: the additions.
        with nogil:
            for j in range(b.m):
                if not b.int_deltas:
                    fetch_add_f64(targets[j].ptr, b.float_deltas[j * b.step])
                elif targets[j].is_float:
                    fetch_add_f64(targets[j].ptr, <double>b.int_deltas_[j * b.step])
                elif fetch_add_i64(targets[j].ptr, b.int_deltas_[j * b.step], &old):
                    skipped += 1
                    if first_skipped < 0:
                        first_skipped = j
    finally:
        PyMem_Free(targets)
    if skipped:
        raise OverflowError("%d of %d additions would have overflowed int64 and were not "
                            "applied (the first at index %d); the others were"
                            % (skipped, b.m, b.idx[first_skipped]))
    return 0
