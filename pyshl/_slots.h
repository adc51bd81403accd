/* The C side of slot access: aligned loads and stores, the run checks that
   let scans and views vectorise, atomic read-modify-writes and counting loops. */
#ifndef PYSHL_SLOTS_H
#define PYSHL_SLOTS_H

#include <stdint.h>
#include <string.h>
#include <Python.h>

/* Where a list's tables are in its mapping.  Only pointers that the header,
   checked against the segment size, places inside it. */
typedef struct {
    const char *offsets;   /* n + 1 int64 offsets, relative to data */
    char *data;            /* the data area, data_size bytes */
    char *formats;         /* n 8-byte format entries */
    char *codes;           /* n int8 back-transform codes */
    Py_ssize_t n;
    int64_t data_size;
} pyshl_layout;

/* The value of an exact int, if it fits int64: small ints are read in
   place, with no call (the atomics' fast paths spend their time on little
   else).  Never raises. */
static inline int pyshl_exact_int_value(PyObject *v, int64_t *out) {
    int overflow = 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)v)) {
        *out = (int64_t)PyUnstable_Long_CompactValue((PyLongObject *)v);
        return 1;
    }
#elif PY_VERSION_HEX >= 0x03060000
    switch (Py_SIZE(v)) {
    case 0: *out = 0; return 1;
    case 1: *out = (int64_t)((PyLongObject *)v)->ob_digit[0]; return 1;
    case -1: *out = -(int64_t)((PyLongObject *)v)->ob_digit[0]; return 1;
    }
#endif
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    return !overflow && !(*out == -1 && PyErr_Occurred());
}

/* Slot loads and stores: a single 8-byte access when aligned (every slot the
   standard library or pyshl writes is), so concurrent readers never see a
   torn value; byte copies when a foreign segment is misaligned. */
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
    if (((uintptr_t)p & 7) == 0)
        return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
    memcpy(&v, p, 8);
    return v;
}

/* An item's code byte. */
static inline int pyshl_load_code(const char *p) {
    return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
}

static inline void pyshl_store_code(char *p, int code) {
    __atomic_store_n((uint8_t *)p, (uint8_t)code, __ATOMIC_RELAXED);
}

/* Text in and out of a slot that lock-free readers of numbers may read at the
   same moment (and then discard, see _region.h): word by word where aligned,
   so that no access is a plain one racing an atomic one. */
static inline void pyshl_copy_in(char *dst, const char *src, Py_ssize_t n) {
    Py_ssize_t i = 0;
    uint64_t w;
    for (; i < n && ((uintptr_t)(dst + i) & 7); i++)
        __atomic_store_n((uint8_t *)(dst + i), (uint8_t)src[i], __ATOMIC_RELAXED);
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, src + i, 8);
        __atomic_store_n((uint64_t *)(dst + i), w, __ATOMIC_RELAXED);
    }
    for (; i < n; i++)
        __atomic_store_n((uint8_t *)(dst + i), (uint8_t)src[i], __ATOMIC_RELAXED);
}

static inline void pyshl_copy_out(char *dst, const char *src, Py_ssize_t n) {
    Py_ssize_t i = 0;
    uint64_t w;
    for (; i < n && ((uintptr_t)(src + i) & 7); i++)
        dst[i] = (char)__atomic_load_n((const uint8_t *)(src + i), __ATOMIC_RELAXED);
    for (; i + 8 <= n; i += 8) {
        w = __atomic_load_n((const uint64_t *)(src + i), __ATOMIC_RELAXED);
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = (char)__atomic_load_n((const uint8_t *)(src + i), __ATOMIC_RELAXED);
}

static inline void pyshl_zero_fill(char *dst, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 7); i++)
        __atomic_store_n((uint8_t *)(dst + i), 0, __ATOMIC_RELAXED);
    for (; i + 8 <= n; i += 8)
        __atomic_store_n((uint64_t *)(dst + i), 0, __ATOMIC_RELAXED);
    for (; i < n; i++)
        __atomic_store_n((uint8_t *)(dst + i), 0, __ATOMIC_RELAXED);
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

/* Slot k (0 <= k < n) if its two offsets lie in the data area and span at
   least 8 bytes, as every numeric slot must; NULL otherwise.  Its format
   entry and code are returned too: this is the whole check that the fast
   paths of reads, writes, atomics and add_at make before touching a number. */
static inline char *pyshl_slot8(const pyshl_layout *l, Py_ssize_t k,
                                uint64_t *format, int *code) {
    /* The offsets table is 8-byte aligned (it starts 8 bytes into a page) and
       never rewritten: plain loads. */
    int64_t start, end;
    memcpy(&start, l->offsets + 8 * k, 8);
    memcpy(&end, l->offsets + 8 * k + 8, 8);
    *format = pyshl_load_u64(l->formats + 8 * k);
    *code = pyshl_load_code(l->codes + k);
    if ((uint64_t)start <= (uint64_t)end && (uint64_t)end <= (uint64_t)l->data_size
            && end - start >= 8)
        return l->data + start;
    return NULL;
}

/* The atomics' fast path: slot k if it is a valid, aligned 8-byte slot of
   format `int_format` ("q") and code 0, else NULL. */
static inline char *pyshl_int_slot(const pyshl_layout *l, Py_ssize_t k, uint64_t int_format) {
    uint64_t format;
    int code;
    char *p = pyshl_slot8(l, k, &format, &code);
    return p != NULL && code == 0 && format == int_format && ((uintptr_t)p & 7) == 0 ? p : NULL;
}

/* Are slots k..k+m-1 one contiguous run of 8-byte slots inside the data
   area, all of format `word` with code 0?  Then return the run's start
   offset, else -1.  Only the run's two end offsets are read: a numeric slot
   is at least 8 bytes (item access rejects smaller ones), so m of them
   spanning exactly 8m bytes are each 8 bytes, and every address used lies
   inside [start, end], which is checked.  Branch-free loops, so that they
   vectorise. */
static inline int64_t pyshl_regular_run(const pyshl_layout *l, Py_ssize_t k, Py_ssize_t m,
                                        uint64_t word) {
    int64_t start, end;
    uint64_t f, bad = 0;
    Py_ssize_t i;
    memcpy(&start, l->offsets + 8 * k, 8);
    memcpy(&end, l->offsets + 8 * (k + m), 8);
    /* unsigned: the offsets are unvalidated, a signed difference could wrap */
    if (!((uint64_t)start <= (uint64_t)end && (uint64_t)end <= (uint64_t)l->data_size
          && (uint64_t)end - (uint64_t)start == 8 * (uint64_t)m))
        return -1;
    for (i = 0; i < m; i++) {
        memcpy(&f, l->formats + 8 * (k + i), 8);
        bad |= f ^ word;
    }
    for (i = 0; i < m; i++)
        bad |= (uint8_t)l->codes[k + i];
    return bad ? -1 : start;
}

/* The first i in 0..m-1 at which slots k.. stop being one contiguous run of
   8-byte slots of format `word`, code 0, starting at offset `base`; m if none
   does.  Every slot's end offset is read (a view must be exactly the slots
   item access sees).  Checked a block at a time, so the common, all-good
   case vectorises. */
static inline Py_ssize_t pyshl_uniform_prefix(const pyshl_layout *l, Py_ssize_t k,
                                              Py_ssize_t m, uint64_t word, int64_t base) {
    Py_ssize_t done = 0, i, len;
    int64_t end;
    uint64_t f, bad;
    while (done < m) {
        len = m - done < 256 ? m - done : 256;
        bad = 0;
        for (i = done; i < done + len; i++) {
            memcpy(&end, l->offsets + 8 * (k + i + 1), 8);
            memcpy(&f, l->formats + 8 * (k + i), 8);
            /* unsigned: `end` is unvalidated, a signed difference could overflow */
            bad |= ((uint64_t)end - (uint64_t)base - 8 * (uint64_t)(i + 1)) | (f ^ word)
                   | (uint8_t)l->codes[k + i];
        }
        if (bad) {
            for (i = done; i < done + len; i++) {
                memcpy(&end, l->offsets + 8 * (k + i + 1), 8);
                memcpy(&f, l->formats + 8 * (k + i), 8);
                if ((uint64_t)end != (uint64_t)base + 8 * (uint64_t)(i + 1) || f != word
                        || l->codes[k + i] != 0)
                    return i;
            }
        }
        done += len;
    }
    return m;
}

/* Atomic read-modify-writes on an aligned 8-byte slot, across processes. */

/* Add delta by compare-and-swap, starting from `cur`, a value read from the
   slot: 0 on success (*old is the previous value); 1 if the sum would
   overflow int64, in which case nothing is written. */
static inline int pyshl_add_from_i64(char *p, int64_t delta, int64_t cur, int64_t *old) {
    int64_t next;
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

static inline int pyshl_fetch_add_i64(char *p, int64_t delta, int64_t *old) {
    return pyshl_add_from_i64(p, delta, __atomic_load_n((int64_t *)p, __ATOMIC_RELAXED), old);
}

/* pyshl_fetch_add_i64, starting from a guess of the current value (what this
   process last saw there) instead of a load: a right guess costs one locked
   instruction, and a wrong one a failed compare-and-swap, which fetches the
   value and the cache line for writing in one transfer where a load and then
   a compare-and-swap take two -- which is what other processes' adds to the
   same line make happen.  The overflow check is only ever made on a value
   read from memory. */
static inline int pyshl_fetch_add_i64_from(char *p, int64_t delta, int64_t guess, int64_t *old) {
    int64_t cur = guess, next;
    if (__builtin_add_overflow(cur, delta, &next))
        return pyshl_fetch_add_i64(p, delta, old);
    if (__atomic_compare_exchange_n((int64_t *)p, &cur, next, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
        *old = guess;
        return 0;
    }
    return pyshl_add_from_i64(p, delta, cur, old);    /* cur: the value the CAS found */
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

/* add_at: one atomic add per distinct target ----------------------------- */

/* Normalise m indices (negative ones count from n) and find their range:
   -1 with *lo, *hi set, or the position of the first index outside -n..n-1.
   The common case, all in 0..n-1, is one vectorised min/max pass. */
static inline Py_ssize_t pyshl_index_range(const int64_t *idx, Py_ssize_t m, int64_t n,
                                           int64_t *lo, int64_t *hi) {
    int64_t min = INT64_MAX, max = INT64_MIN, k;
    Py_ssize_t j;
    for (j = 0; j < m; j++) {
        k = idx[j] < 0 ? idx[j] + n : idx[j];
        min = k < min ? k : min;
        max = k > max ? k : max;
    }
    if (min >= 0 && max < n) {
        *lo = min;
        *hi = max;
        return -1;
    }
    for (j = 0; j < m; j++) {
        k = idx[j] < 0 ? idx[j] + n : idx[j];
        if (k < 0 || k >= n)
            return j;
    }
    /* An index changed meanwhile (the array is shared): take the whole list;
       the passes below check every index again. */
    *lo = 0;
    *hi = n - 1;
    return -1;
}

/* Target t = k - lo of index j, or -1 if it is outside 0..span-1 (the index
   array changed since pyshl_index_range: it may live in shared memory). */
static inline int64_t pyshl_target(const int64_t *idx, Py_ssize_t j, int64_t n, int64_t lo,
                                   int64_t span) {
    int64_t k = idx[j] < 0 ? idx[j] + n : idx[j];
    return (uint64_t)(k - lo) < (uint64_t)span ? k - lo : -1;
}

/* Private sums per target.  Int deltas are summed as their positive and
   negative parts (a part that overflows marks its target `slow`); float
   deltas as a double.  delta_step 0: one scalar delta for every index.
   0 on success, -1 if an index changed meanwhile (nothing shared is touched). */
#define PYSHL_TOUCHED 1
#define PYSHL_SLOW 2
static inline int pyshl_sum_i64(const int64_t *idx, Py_ssize_t m, int64_t n, int64_t lo,
                                int64_t span, const int64_t *deltas, Py_ssize_t delta_step,
                                int64_t *pos, int64_t *neg, uint8_t *flags) {
    Py_ssize_t j;
    int64_t t, d;
    for (j = 0; j < m; j++) {
        if ((t = pyshl_target(idx, j, n, lo, span)) < 0)
            return -1;
        d = deltas[j * delta_step];
        flags[t] |= PYSHL_TOUCHED;
        if (d >= 0 ? __builtin_add_overflow(pos[t], d, &pos[t])
                   : __builtin_add_overflow(neg[t], d, &neg[t]))
            flags[t] |= PYSHL_SLOW;
    }
    return 0;
}

static inline int pyshl_count_targets(const int64_t *idx, Py_ssize_t m, int64_t n, int64_t lo,
                                      int64_t span, int64_t *counts) {
    Py_ssize_t j;
    int64_t t;
    for (j = 0; j < m; j++) {
        if ((t = pyshl_target(idx, j, n, lo, span)) < 0)
            return -1;
        counts[t]++;
    }
    return 0;
}

#define PYSHL_AHEAD 32

/* Add each update to its own target, t at first + 8t, all of one kind: for
   batches whose targets are too spread out to combine.  The adds are bound
   by memory latency, so the target of update j + PYSHL_AHEAD is prefetched.  Returns
   how many int additions were skipped (they would overflow); *changed counts
   indices that moved out of range since they were checked. */
static inline Py_ssize_t pyshl_add_each(char *first, int is_float, const int64_t *idx,
                                        Py_ssize_t m, int64_t n, int64_t lo, int64_t span,
                                        const int64_t *int_deltas, const double *float_deltas,
                                        Py_ssize_t step, Py_ssize_t *first_skipped,
                                        Py_ssize_t *changed) {
    Py_ssize_t j, skipped = 0;
    int64_t t, old, ahead[PYSHL_AHEAD];    /* the targets of j .. j + PYSHL_AHEAD - 1 */
    char *p;
    for (j = 0; j < PYSHL_AHEAD && j < m; j++)
        if ((ahead[j] = pyshl_target(idx, j, n, lo, span)) >= 0)
            __builtin_prefetch(first + 8 * ahead[j], 1, 3);
    for (j = 0; j < m; j++) {
        t = ahead[j % PYSHL_AHEAD];
        if (j + PYSHL_AHEAD < m
                && (ahead[j % PYSHL_AHEAD] = pyshl_target(idx, j + PYSHL_AHEAD, n, lo, span)) >= 0)
            __builtin_prefetch(first + 8 * ahead[j % PYSHL_AHEAD], 1, 3);
        if (t < 0) {
            (*changed)++;
            continue;
        }
        p = first + 8 * t;
        if (is_float)
            pyshl_fetch_add_f64(p, float_deltas ? float_deltas[j * step]
                                                : (double)int_deltas[j * step]);
        else if (pyshl_fetch_add_i64(p, int_deltas[j * step], &old)) {
            if (skipped++ == 0)
                *first_skipped = j;
        }
    }
    return skipped;
}

static inline int pyshl_sum_f64(const int64_t *idx, Py_ssize_t m, int64_t n, int64_t lo,
                                int64_t span, const double *deltas, Py_ssize_t delta_step,
                                double *sums, uint8_t *flags) {
    Py_ssize_t j;
    int64_t t;
    for (j = 0; j < m; j++) {
        if ((t = pyshl_target(idx, j, n, lo, span)) < 0)
            return -1;
        sums[t] += deltas[j * delta_step];
        flags[t] |= PYSHL_TOUCHED;
    }
    return 0;
}

/* Add a target's combined int deltas (its positive part, then its negative
   part, atomically as one sum) -- but only if no order of adding them one at
   a time could overflow from the current value; then the result is exactly
   that of one-at-a-time adds.  0 if added; 1 if not (nothing is written). */
static inline int pyshl_add_combined_i64(char *p, int64_t pos, int64_t neg) {
    int64_t cur = __atomic_load_n((int64_t *)p, __ATOMIC_RELAXED), high, low;
    do {
        if (__builtin_add_overflow(cur, pos, &high) || __builtin_add_overflow(cur, neg, &low))
            return 1;
    } while (!__atomic_compare_exchange_n((int64_t *)p, &cur, high + neg, 1,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return 0;
}

/* A scan's run of ints and its count in one pass: how many of slots
   k..k+m-1 hold the target, if they are a regular run of format `word` (as
   pyshl_regular_run checks), else -1.  Formats, codes and values are read side
   by side, so that the run is streamed from memory once.  (For doubles the
   two passes of pyshl_regular_run and pyshl_count_f64 measure faster.) */
static inline Py_ssize_t pyshl_count_run_i64(const pyshl_layout *l, Py_ssize_t k, Py_ssize_t m,
                                             uint64_t word, int64_t target) {
    int64_t start, end, v;
    uint64_t f, bad = 0;
    const char *formats = l->formats + 8 * k, *codes = l->codes + k, *data;
    Py_ssize_t i, c = 0;
    memcpy(&start, l->offsets + 8 * k, 8);
    memcpy(&end, l->offsets + 8 * (k + m), 8);
    if (!((uint64_t)start <= (uint64_t)end && (uint64_t)end <= (uint64_t)l->data_size
          && (uint64_t)end - (uint64_t)start == 8 * (uint64_t)m))
        return -1;
    data = l->data + start;
    for (i = 0; i < m; i++) {
        memcpy(&f, formats + 8 * i, 8);
        memcpy(&v, data + 8 * i, 8);
        bad |= (f ^ word) | (uint8_t)codes[i];
        c += v == target;
    }
    return bad ? -1 : c;
}

/* Counting loop for scans of doubles: how many of m values equal the target. */
static inline Py_ssize_t pyshl_count_f64(const char *p, Py_ssize_t m, double target) {
    Py_ssize_t i, c = 0;
    double v;
    for (i = 0; i < m; i++) { memcpy(&v, p + 8 * i, 8); c += v == target; }
    return c;
}

#endif
