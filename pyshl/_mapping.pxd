# The shared mapping of a whole segment: its declared fields, for cimport.

from libc.stdint cimport int64_t, uint64_t


cdef extern from "_region.h":
    ctypedef struct pyshl_region:
        char* addr
        Py_ssize_t size
    void region_init "pyshl_region_init"(pyshl_region* r, char* addr, Py_ssize_t size) nogil
    void region_setup "pyshl_region_setup"() nogil
    bint region_enter "pyshl_region_enter"(pyshl_region* r) nogil
    void region_leave "pyshl_region_leave"(pyshl_region* r) nogil
    bint region_enter_brief "pyshl_region_enter_brief"(pyshl_region* r) nogil
    void region_leave_brief "pyshl_region_leave_brief"(pyshl_region* r) nogil
    void region_close "pyshl_region_close"(pyshl_region* r) nogil
    bint region_closed "pyshl_region_closed"(const pyshl_region* r) nogil
    void write_begin "pyshl_write_begin"(pyshl_region* r) nogil
    void write_end "pyshl_write_end"(pyshl_region* r) nogil
    void items_lock "pyshl_items_lock"(pyshl_region* r) nogil
    void items_unlock "pyshl_items_unlock"(pyshl_region* r) nogil
    uint64_t read_ticket "pyshl_read_ticket"(const pyshl_region* r) nogil
    bint read_overlapped "pyshl_read_overlapped"(const pyshl_region* r, uint64_t ticket) nogil
    int64_t guess_load "pyshl_guess_load"(const int64_t* p) nogil
    void guess_store "pyshl_guess_store"(int64_t* p, int64_t v) nogil
    long exchange_long "pyshl_exchange_long"(long* p, long v) nogil
    long load_long "pyshl_load_long"(const long* p) nogil
    Py_ssize_t index_take "pyshl_index_take"(Py_ssize_t* p) nogil
    Py_ssize_t index_load "pyshl_index_load"(const Py_ssize_t* p) nogil


cdef class Mapping:
    cdef pyshl_region region       # where it is mapped, and who is using it
    cdef readonly bint readonly    # mapped PROT_READ: exports are read-only buffers
    cdef readonly object name      # the segment's name (None for an anonymous mapping)
    cdef readonly object identity  # (st_dev, st_ino) of the file mapped: which segment it is
    cdef readonly Py_ssize_t first_hole   # the offset of the first unwritten page, else the size
