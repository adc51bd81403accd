/* Atomics on the elements of NumPy arrays of any width, and add_at's kernels for them. */
#ifndef PYSHL_ELEMENTS_H
#define PYSHL_ELEMENTS_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_slots.h"       /* pyshl_index_range */

/* The head of NumPy's array object and dtype, as every NumPy from 1.7 to 2.x
   lays them out (NumPy 2 kept them for ABI compatibility).  pyshl is built
   without NumPy's headers, so _elements.pxi checks this layout against real
   arrays when NumPy is first imported, and keeps the array atomics off (they
   raise RuntimeError) if it ever differs. */
typedef struct {
    PyObject_HEAD
    char *data;
    int nd;
    Py_ssize_t *dimensions;
    Py_ssize_t *strides;
    PyObject *base;
    PyObject *descr;
    int flags;
} pyshl_ndarray;

typedef struct {
    PyObject_HEAD
    PyTypeObject *typeobj;
    char kind;
    char type;
    char byteorder;
    char former_flags;
    int type_num;
} pyshl_descr;

#define PYSHL_NPY_ALIGNED 0x0100
#define PYSHL_NPY_WRITEABLE 0x0400

/* Element kinds: the width in bytes, or'ed with the class. */
#define PYSHL_EL_SIGNED 0x10
#define PYSHL_EL_UNSIGNED 0x20
#define PYSHL_EL_FLOAT 0x40
#define PYSHL_EL_WIDTH(kind) ((kind) & 0x0f)

/* The element's bits, zero-extended. */
static inline uint64_t pyshl_el_load(const char *p, int width) {
    switch (width) {
    case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_SEQ_CST);
    case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_SEQ_CST);
    case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST);
    default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST);
    }
}

static inline void pyshl_el_store(char *p, int width, uint64_t bits) {
    switch (width) {
    case 1: __atomic_store_n((uint8_t *)p, (uint8_t)bits, __ATOMIC_SEQ_CST); break;
    case 2: __atomic_store_n((uint16_t *)p, (uint16_t)bits, __ATOMIC_SEQ_CST); break;
    case 4: __atomic_store_n((uint32_t *)p, (uint32_t)bits, __ATOMIC_SEQ_CST); break;
    default: __atomic_store_n((uint64_t *)p, bits, __ATOMIC_SEQ_CST);
    }
}

/* Wrapping integer add (two's complement: the same bits for signed and
   unsigned); returns the old bits. */
static inline uint64_t pyshl_el_add_int(char *p, int width, uint64_t delta) {
    switch (width) {
    case 1: return __atomic_fetch_add((uint8_t *)p, (uint8_t)delta, __ATOMIC_SEQ_CST);
    case 2: return __atomic_fetch_add((uint16_t *)p, (uint16_t)delta, __ATOMIC_SEQ_CST);
    case 4: return __atomic_fetch_add((uint32_t *)p, (uint32_t)delta, __ATOMIC_SEQ_CST);
    default: return __atomic_fetch_add((uint64_t *)p, delta, __ATOMIC_SEQ_CST);
    }
}

static inline int pyshl_el_cas_bits(char *p, int width, uint64_t *expected, uint64_t desired) {
    int done;
    switch (width) {
    case 1: { uint8_t e = (uint8_t)*expected;
        done = __atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)desired, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *expected = e; return done; }
    case 2: { uint16_t e = (uint16_t)*expected;
        done = __atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)desired, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *expected = e; return done; }
    case 4: { uint32_t e = (uint32_t)*expected;
        done = __atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)desired, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *expected = e; return done; }
    default:
        return __atomic_compare_exchange_n((uint64_t *)p, expected, desired, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
}

static inline double pyshl_bits_as_float(uint64_t bits, int width) {
    if (width == 4) {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

static inline uint64_t pyshl_float_as_bits(double value, int width) {
    if (width == 4) {
        float f = (float)value;
        uint32_t b;
        memcpy(&b, &f, 4);
        return b;
    }
    uint64_t bits;
    memcpy(&bits, &value, 8);
    return bits;
}

/* old + delta, computed in double and rounded once to the element's width:
   what NumPy's add gives for a float32 element and a float64 (or float32)
   delta.  Returns the old value. */
static inline double pyshl_el_add_float(char *p, int width, double delta) {
    uint64_t cur = pyshl_el_load(p, width);
    double old;
    do {
        old = pyshl_bits_as_float(cur, width);
    } while (!pyshl_el_cas_bits(p, width, &cur, pyshl_float_as_bits(old + delta, width)));
    return old;
}

/* Compare as Python compares floats (0.0 == -0.0, NaN equals nothing): 1 if
   the element held `expected` and now holds `desired`; else 0, *seen set to
   what it held. */
static inline int pyshl_el_cas_float(char *p, int width, double expected, double desired,
                                     double *seen) {
    uint64_t cur = pyshl_el_load(p, width);
    uint64_t want = pyshl_float_as_bits(desired, width);
    for (;;) {
        *seen = pyshl_bits_as_float(cur, width);
        if (*seen != expected)
            return 0;
        if (pyshl_el_cas_bits(p, width, &cur, want))
            return 1;
    }
}

/* add_at ---------------------------------------------------------------- */

/* Private wrapping sums per target of int deltas (delta_step 0: one scalar
   delta); 0, or -1 if an index changed meanwhile (nothing shared touched). */
static inline int pyshl_el_sum_int(const int64_t *idx, Py_ssize_t m, int64_t n, int64_t lo,
                                   int64_t span, const uint64_t *deltas, Py_ssize_t delta_step,
                                   uint64_t *sums) {
    Py_ssize_t j;
    int64_t k, t;
    for (j = 0; j < m; j++) {
        k = idx[j] < 0 ? idx[j] + n : idx[j];
        t = k - lo;
        if ((uint64_t)t >= (uint64_t)span)
            return -1;
        sums[t] += deltas[j * delta_step];
    }
    return 0;
}

/* The same sums in four interleaved tables (update j goes to table j % 4),
   for targets that repeat often: a histogram's updates to one bin then do
   not each wait for the previous one's store.  `tables` holds 4 * span
   zeroed sums; they are added into tables[0..span-1].  0, or -1 if an index
   is outside lo..lo+span-1 (checked before its add; nothing shared touched). */
#define PYSHL_EL_TARGET(j) \
    ((k = idx[j] < 0 ? idx[j] + n : idx[j]) - lo)
static inline int pyshl_el_sum4_int(const int64_t *idx, Py_ssize_t m, int64_t n, int64_t lo,
                                    int64_t span, const uint64_t *deltas, Py_ssize_t step,
                                    uint64_t *tables) {
    uint64_t *t1 = tables + span, *t2 = t1 + span, *t3 = t2 + span;
    Py_ssize_t j = 0;
    int64_t k, a, b, c, d;
    for (; j + 4 <= m; j += 4) {
        a = PYSHL_EL_TARGET(j);
        b = PYSHL_EL_TARGET(j + 1);
        c = PYSHL_EL_TARGET(j + 2);
        d = PYSHL_EL_TARGET(j + 3);
        if (((uint64_t)a >= (uint64_t)span) | ((uint64_t)b >= (uint64_t)span)
                | ((uint64_t)c >= (uint64_t)span) | ((uint64_t)d >= (uint64_t)span))
            return -1;
        tables[a] += deltas[j * step];
        t1[b] += deltas[(j + 1) * step];
        t2[c] += deltas[(j + 2) * step];
        t3[d] += deltas[(j + 3) * step];
    }
    for (; j < m; j++) {
        a = PYSHL_EL_TARGET(j);
        if ((uint64_t)a >= (uint64_t)span)
            return -1;
        tables[a] += deltas[j * step];
    }
    for (a = 0; a < span; a++)
        tables[a] += t1[a] + t2[a] + t3[a];
    return 0;
}

/* One atomic add per target whose private sum says it was touched: target t
   is the element at first + stride * t. */
static inline void pyshl_el_apply_int(char *first, Py_ssize_t stride, int width, int64_t span,
                                      const uint64_t *sums) {
    int64_t t;
    for (t = 0; t < span; t++)
        if (sums[t])                      /* adding 0 changes nothing */
            pyshl_el_add_int(first + stride * t, width, sums[t]);
}

static inline void pyshl_el_apply_float(char *first, Py_ssize_t stride, int width, int64_t span,
                                        const double *sums, const uint8_t *touched) {
    int64_t t;
    for (t = 0; t < span; t++)
        if (touched[t])
            pyshl_el_add_float(first + stride * t, width, sums[t]);
}

/* Copy m indices into private memory, then find their range there
   (pyshl_index_range's contract): -1 with *lo, *hi set, or the position of
   the first index outside -n..n-1.  Nothing can change the copy. */
static inline Py_ssize_t pyshl_el_copy_range(const int64_t *src, int64_t *dst, Py_ssize_t m,
                                             int64_t n, int64_t *lo, int64_t *hi) {
    memcpy(dst, src, (size_t)m * sizeof(int64_t));
    return pyshl_index_range(dst, m, n, lo, hi);
}

#define PYSHL_EL_AHEAD 32

/* Each update straight into its own target (targets too spread out to
   combine), the target of update j + PYSHL_EL_AHEAD prefetched while update
   j is added.  The indices are a private copy, checked (pyshl_el_copy_range):
   every one is in lo..lo+span-1; each is checked again as it is used all the
   same, and the count of any outside (skipped) is returned. */
static inline Py_ssize_t pyshl_el_add_each(char *first, Py_ssize_t stride, int kind,
                                           const int64_t *idx, Py_ssize_t m, int64_t n,
                                           int64_t lo, int64_t span, const uint64_t *ints,
                                           const double *floats, Py_ssize_t step) {
    Py_ssize_t j, changed = 0;
    int64_t k, t;
    int width = PYSHL_EL_WIDTH(kind);
    for (j = 0; j < PYSHL_EL_AHEAD && j < m; j++)
        if ((uint64_t)(t = PYSHL_EL_TARGET(j)) < (uint64_t)span)
            __builtin_prefetch(first + stride * t, 1, 3);
    for (j = 0; j < m; j++) {
        if (j + PYSHL_EL_AHEAD < m
                && (uint64_t)(t = PYSHL_EL_TARGET(j + PYSHL_EL_AHEAD)) < (uint64_t)span)
            __builtin_prefetch(first + stride * t, 1, 3);
        if ((uint64_t)(t = PYSHL_EL_TARGET(j)) >= (uint64_t)span) {
            changed++;
            continue;
        }
        if (kind & PYSHL_EL_FLOAT)
            pyshl_el_add_float(first + stride * t, width, floats[j * step]);
        else
            pyshl_el_add_int(first + stride * t, width, ints[j * step]);
    }
    return changed;
}

#endif
