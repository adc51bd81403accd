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

/* Slot k (0 <= k < n) if its two offsets lie in the data area and span at
   least 8 bytes, as every numeric slot must; NULL otherwise.  Its format
   entry and code are returned too: this is the whole check that the fast
   paths of reads, writes, atomics and add_at make before touching a number. */
static inline char *pyshl_slot8(const pyshl_layout *l, Py_ssize_t k,
                                uint64_t *format, int *code) {
    int64_t start = pyshl_load_i64(l->offsets + 8 * k);
    int64_t end = pyshl_load_i64(l->offsets + 8 * k + 8);
    *format = pyshl_load_u64(l->formats + 8 * k);
    *code = (uint8_t)l->codes[k];
    if ((uint64_t)start <= (uint64_t)end && (uint64_t)end <= (uint64_t)l->data_size
            && end - start >= 8)
        return l->data + start;
    return NULL;
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
    if (start < 0 || end > l->data_size || end - start != 8 * (int64_t)m)
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

/* 0 on success (*old is the previous value); 1 if the sum would overflow
   int64, in which case nothing is written. */
static inline int pyshl_fetch_add_i64(char *p, int64_t delta, int64_t *old) {
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

/* Counting loops for scans: how many of m 8-byte values equal the target. */
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

#endif
