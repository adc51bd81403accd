# The core's shared declarations: the C helpers of _slots.h and the list type's C fields.

from libc.stdint cimport int64_t, uint64_t

from pyshl._mapping cimport (
    Mapping, exchange_long, guess_load, guess_store, index_load, index_take, items_lock,
    items_unlock, load_long, pyshl_region, read_overlapped, read_ticket, region_close,
    region_closed,
    region_enter, region_enter_brief, region_leave, region_leave_brief, region_setup,
    write_begin, write_end)


cdef extern from "Python.h":
    # Cython's declarations of these lack the exact-type checks we need.
    bint PyLong_CheckExact(object o)
    bint PyFloat_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyBytes_CheckExact(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL


# The C helpers of slot access (see _slots.h).
cdef extern from "_slots.h":
    ctypedef struct pyshl_layout:
        const char* offsets
        char* data
        char* formats
        char* codes
        Py_ssize_t n
        int64_t data_size

    int64_t load_i64 "pyshl_load_i64"(const char* p) nogil
    void store_i64 "pyshl_store_i64"(char* p, int64_t v) nogil
    uint64_t load_u64 "pyshl_load_u64"(const char* p) nogil
    int load_code "pyshl_load_code"(const char* p) nogil
    void store_code "pyshl_store_code"(char* p, int code) nogil
    void copy_in "pyshl_copy_in"(char* dst, const char* src, Py_ssize_t n) nogil
    void copy_out "pyshl_copy_out"(char* dst, const char* src, Py_ssize_t n) nogil
    void zero_fill "pyshl_zero_fill"(char* dst, Py_ssize_t n) nogil
    double i64_as_double "pyshl_i64_as_double"(int64_t v) nogil
    int64_t double_as_i64 "pyshl_double_as_i64"(double d) nogil
    char* slot8 "pyshl_slot8"(
        const pyshl_layout* layout, Py_ssize_t k, uint64_t* format, int* code) nogil
    bint exact_int_value "pyshl_exact_int_value"(object value, int64_t* out)
    char* int_slot "pyshl_int_slot"(
        const pyshl_layout* layout, Py_ssize_t k, uint64_t int_format) nogil
    int64_t regular_run "pyshl_regular_run"(
        const pyshl_layout* layout, Py_ssize_t k, Py_ssize_t m, uint64_t word) nogil
    Py_ssize_t uniform_prefix "pyshl_uniform_prefix"(
        const pyshl_layout* layout, Py_ssize_t k, Py_ssize_t m, uint64_t word,
        int64_t base) nogil
    int fetch_add_i64 "pyshl_fetch_add_i64"(char* p, int64_t delta, int64_t* old) nogil
    int fetch_add_i64_from "pyshl_fetch_add_i64_from"(
        char* p, int64_t delta, int64_t guess, int64_t* old) nogil
    double fetch_add_f64 "pyshl_fetch_add_f64"(char* p, double delta) nogil
    bint cas_i64 "pyshl_cas_i64"(char* p, int64_t* expected, int64_t desired) nogil
    int64_t load_seq_i64 "pyshl_load_seq_i64"(const char* p) nogil
    void store_seq_i64 "pyshl_store_seq_i64"(char* p, int64_t v) nogil
    Py_ssize_t count_run_i64 "pyshl_count_run_i64"(
        const pyshl_layout* layout, Py_ssize_t k, Py_ssize_t m, uint64_t word,
        int64_t target) nogil
    Py_ssize_t count_f64 "pyshl_count_f64"(const char* p, Py_ssize_t m, double target) nogil


cdef class ShareableList:
    cdef readonly object shm
    cdef Mapping _map             # set once by construction, never replaced (_CLOSED before)
    cdef pyshl_layout _layout     # where the tables are in _map
    cdef long _creator_pid        # the pid that created the segment; 0 when attached
    cdef long _bound              # __init__ has begun: a second call is refused
    cdef int64_t _seen[64]        # fetch_add's guesses: what item k held, at k % 64
    cdef long _claims             # its file's serial among lock claims (_claims.h), 0: none
    cdef object __weakref__
