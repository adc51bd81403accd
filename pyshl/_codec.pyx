# cython: language_level=3, boundscheck=True, wraparound=True, cdivision=False
# cython: embedsignature=True, binding=False
"""The pyshl core: the ShareableList segment layout, item packing and
unpacking, slot access, construction, scans and atomics.

Segment layout (identical to the standard library's, 3.9+; native byte order):

    0                 int64 n
    8 + 8k, k=0..n    int64 offset of slot k, relative to the data area
    DS = 8(n+2)       data area; slot k is [DS+off_k, DS+off_(k+1))
    F = DS + off_n    n format entries, 8 NUL-padded bytes each
    C = F + 8n        n int8 codes: 0 number, 1 str, 2 bytes, 3 None

The segment is untrusted: any process may write anything into it.  Attaching
validates n and off_n against the segment size (O(1)); every access then
validates exactly the offsets it reads, so no pointer ever leaves the segment.

This file is the table of contents; each concern lives in its own file, all
compiled into this one C module so that the hot paths stay direct C calls.
"""

cimport cython
from cpython.buffer cimport PyObject_CheckBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_FromDouble
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsDouble, PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyIndex_Check, PyNumber_AsSsize_t, PyNumber_Index
from cpython.object cimport Py_EQ, PyObject_RichCompare, PyObject_RichCompareBool
from cpython.ref cimport Py_INCREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from cpython.slice cimport PySlice_Check
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.math cimport floor, isfinite
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memcpy, memset

from pyshl._mapping cimport Mapping

import functools
import os
import sys

from pyshl._shm import SharedMemory

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

cdef extern from "_slots.h":
    int64_t load_i64 "pyshl_load_i64"(const char* p) nogil
    void store_i64 "pyshl_store_i64"(char* p, int64_t v) nogil
    uint64_t load_u64 "pyshl_load_u64"(const char* p) nogil
    double i64_as_double "pyshl_i64_as_double"(int64_t v) nogil
    int64_t double_as_i64 "pyshl_double_as_i64"(double d) nogil
    char* slot8 "pyshl_slot8"(const pyshl_layout* l, Py_ssize_t k, uint64_t* format,
                             int* code) nogil
    int64_t regular_run "pyshl_regular_run"(const pyshl_layout* l, Py_ssize_t k,
                                            Py_ssize_t m, uint64_t word) nogil
    Py_ssize_t uniform_prefix "pyshl_uniform_prefix"(const pyshl_layout* l, Py_ssize_t k,
                                                    Py_ssize_t m, uint64_t word,
                                                    int64_t base) nogil
    int fetch_add_i64 "pyshl_fetch_add_i64"(char* p, int64_t delta, int64_t* old) nogil
    double fetch_add_f64 "pyshl_fetch_add_f64"(char* p, double delta) nogil
    bint cas_i64 "pyshl_cas_i64"(char* p, int64_t* expected, int64_t desired) nogil
    int64_t load_seq_i64 "pyshl_load_seq_i64"(const char* p) nogil
    void store_seq_i64 "pyshl_store_seq_i64"(char* p, int64_t v) nogil
    Py_ssize_t count_i64 "pyshl_count_i64"(const char* p, Py_ssize_t m, int64_t target) nogil
    Py_ssize_t count_f64 "pyshl_count_f64"(const char* p, Py_ssize_t m, double target) nogil

# The placeholder mapping of a closed (or never opened) list.
cdef Mapping _CLOSED = Mapping()

include "_formats.pxi"        # item kinds: the table, format entries, packing values
include "_slots.pxi"          # pinning, indexes, decoding one slot, reading and writing items
include "_construction.pxi"   # plan, fill and publish a new segment; attach to one
include "_scans.pxi"          # count, index and `in`, vectorised over runs of numbers
include "_atomics.pxi"        # fetch_add, compare_exchange, load, store, add_at
include "_list.pxi"           # the ShareableList class and its iterator
