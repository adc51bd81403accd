"""Python code run from inside every public call: the cases of tests/test_callbacks.py.

Each case builds a list, then makes one public call during which Python code
runs -- an argument's __index__, __eq__, __array__, __float__, ..., a custom
sequence, a str subclass's methods, or a GC finalizer -- and that code closes
the list, unlinks it or mutates an argument.  The call must then either raise
a clear exception (ValueError mentioning "closed" once the list is closed) or
complete correctly, and the case must leave no segment and nothing registered
with the resource tracker.

Run by tests/test_callbacks.py in subprocesses, so that a crash is a failure
rather than the end of the run.  Run directly:

    python tests/callback_cases.py [CASE_ID ...]     (no id: every case)

It prints "START <id>" before each case and "RESULT <json>" after it.
"""
import faulthandler
import gc
import json
import os
import pickle
import sys
import traceback

import numpy as np

from pyshl import ShareableList

SHM_DIR = "/dev/shm"
INTS = [10, 20, 30, 40]
FLOATS = [0.5, 1.5, 2.5]
MIXED = [1, "text", 2.5, None, b"raw"]
NUMBERS = [1, 2.5, True]             # numeric, but not one type: arrays go item by item

# The actions a callback performs, on `box`, the one-item list holding the
# only other reference to the ShareableList.
CLOSE_ACTIONS = ("close", "shm.close", "close+del")
ACTIONS = CLOSE_ACTIONS + ("shm.unlink",)


def _close_and_drop(box):
    # Nothing but the call in progress keeps the list now: without a pin of
    # its own, the C code would be left reading unmapped memory.
    box.pop().close()
    gc.collect()


_ACTION_FUNCS = {
    "close": lambda box: box[0].close(),
    "shm.close": lambda box: box[0].shm.close(),
    "close+del": _close_and_drop,
    "shm.unlink": lambda box: box[0].shm.unlink(),
}


class Once:
    """A callback: its action, done the first time it is called."""

    def __init__(self, action):
        self.action = action
        self.ran = False

    def __call__(self):
        if not self.ran:
            self.ran = True
            self.action()


# ---------------------------------------------------------------------------
# Objects whose protocol methods run the callback


class Index:
    """An index that is not an int: __index__ runs the callback."""

    def __init__(self, value, callback):
        self.value, self.callback = value, callback

    def __index__(self):
        self.callback()
        return self.value


class BigIndex:
    """A delta whose __index__ is 2**70 and whose __float__ runs the callback."""

    def __init__(self, callback):
        self.callback = callback

    def __index__(self):
        return 2**70

    def __float__(self):
        self.callback()
        return float(2**70)


class IntSub(int):
    """An int subclass whose conversions run the callback."""

    def __int__(self):
        self.callback()
        return int.__int__(self)

    def __index__(self):
        self.callback()
        return int.__int__(self)

    def __float__(self):
        self.callback()
        return float(int.__int__(self))


class FloatSub(float):
    """A float subclass whose conversions run the callback."""

    def __float__(self):
        self.callback()
        return float.__float__(self)

    def __int__(self):
        self.callback()
        return int(float.__float__(self))


class Float32Sub(np.float32):
    """A NumPy scalar subclass whose conversion to float runs the callback."""

    def __float__(self):
        self.callback()
        return np.float32.__float__(self)


def hooked(cls, value, callback):
    obj = cls(value)
    obj.callback = callback
    return obj


class Eq:
    """A value whose __eq__ runs the callback and answers `answer`."""

    def __init__(self, callback, answer):
        self.callback, self.answer = callback, answer

    def __eq__(self, other):
        self.callback()
        return self.answer

    __hash__ = None


class Truth:
    """What an __eq__ returns: its __bool__ runs the callback and says False."""

    def __init__(self, callback):
        self.callback = callback

    def __bool__(self):
        self.callback()
        return False


class Allocating:
    """A value whose __eq__ allocates a container: the collector may run there."""

    def __eq__(self, other):
        return [other] == []

    __hash__ = None


class EqTruth(Eq):
    def __eq__(self, other):
        return Truth(self.callback)


class ArrayLike:
    """An array-like whose __array__ runs the callback."""

    def __init__(self, array, callback):
        self.array, self.callback = np.asarray(array), callback

    def __array__(self, dtype=None, copy=None):
        self.callback()
        return self.array if dtype is None else self.array.astype(dtype)


class DtypeOf:
    """Something NumPy takes as a dtype: its `dtype` property runs the callback."""

    def __init__(self, dtype, callback):
        self._dtype, self.callback = np.dtype(dtype), callback

    @property
    def dtype(self):
        self.callback()
        return self._dtype


class Seq:
    """A sequence with only __len__ and __getitem__."""

    def __init__(self, items, callback, where):
        self.items, self.callback, self.where = list(items), callback, where

    def __len__(self):
        if self.where == "__len__":
            self.callback()
        return len(self.items)

    def __getitem__(self, k):
        if self.where == "__getitem__":
            self.callback()
        return self.items[k]


class IterSeq(Seq):
    def __iter__(self):
        self.callback()
        return iter(list(self.items))


class ListSub(list):
    """A list subclass whose __iter__ runs the callback."""

    def __iter__(self):
        self.callback()
        return list.__iter__(self)


class Finalizer:
    """A garbage reference cycle whose finalizer runs armed's callback -- or,
    with a delay, leaves another such cycle for the next collection to find."""

    def __init__(self, armed, delay):
        self.armed, self.delay = armed, delay
        self.cycle = self

    def __del__(self):
        if self.delay and not self.armed.over:
            Finalizer(self.armed, self.delay - 1)
        else:
            self.armed.run()


class Armed:
    """Make a GC finalizer run at the first allocation of a container inside a call.

    A garbage cycle with a finalizer is made while the collector is off, its
    threshold set to 1 and its count pushed past it; call() enables it just
    before calling, so that the first tracked allocation in the C code (a
    list, a tuple, a NumPy array...) collects the cycle.
    """

    def __init__(self, callback, delay=0):
        self.callback, self.delay = callback, delay
        self.errors = []
        self.over = False

    def __enter__(self):
        gc.collect()
        gc.disable()
        self.threshold = gc.get_threshold()
        gc.set_threshold(1)
        Finalizer(self, self.delay)   # unreachable at once: only the collector frees it
        self.filler = [[] for _ in range(4)]
        return self

    def call(self, outcome, fn, arg):
        # Everything allocated beforehand: nothing here makes a container.
        gc.enable()
        try:
            outcome.result = fn(arg)
        except Exception as exc:
            outcome.exc = exc

    def run(self):
        try:
            self.callback()
        except BaseException as exc:   # an exception in __del__ would only be printed
            self.errors.append("the finalizer's action raised %r" % exc)

    def __exit__(self, *exc_info):
        self.over = True
        gc.set_threshold(*self.threshold)
        gc.enable()
        gc.collect()                  # a finalizer that did not run during the call runs now


# ---------------------------------------------------------------------------
# The run of one case


class Run:
    """Names, handles and leftovers of one case."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.handles = []
        self.callbacks = []
        self.count = 0

    def once(self, action):
        """A callback doing `action` once; the case reports whether it ran."""
        callback = Once(action)
        self.callbacks.append(callback)
        return callback

    @property
    def ran(self):
        return any(c.ran for c in self.callbacks)

    def name(self):
        self.count += 1
        return "%s%d" % (self.prefix, self.count)

    def new_list(self, items):
        """A list made inside a function: the returned box holds the only reference."""
        sl = ShareableList(items, name=self.name())
        self.handles.append(sl.shm)    # for cleanup; a closed shm pins no mapping
        return [sl]

    def read(self, box, name):
        """The items as a fresh handle attached by name sees them (or the open handle
        if the name was unlinked)."""
        if os.path.exists(os.path.join(SHM_DIR, name)):
            other = ShareableList(name=name)
            try:
                return other.tolist()
            finally:
                other.close()
        if box and not box[0].closed:
            return box[0].tolist()
        raise AssertionError("the segment is unlinked and the list closed: nothing to read")

    def cleanup(self):
        """Dispose of what the case made; report segments and registrations left over."""
        problems = []
        for shm in self.handles:
            shm.close()
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
        left = sorted(n for n in os.listdir(SHM_DIR) if n.startswith(self.prefix))
        if left:
            problems.append("segments left behind: %s" % left)
            for n in left:
                os.unlink(os.path.join(SHM_DIR, n))
        for name in sorted(_tracked):
            if name.startswith("/" + self.prefix):
                problems.append("%r is still registered with the resource tracker "
                                "(a 'leaked' warning at exit)" % name)
                _unregister(name, "shared_memory")
        for name in _untracked_twice:
            if name.startswith("/" + self.prefix):
                problems.append("%r was unregistered from the resource tracker while not "
                                "registered (a KeyError in the tracker)" % name)
        return problems


class Outcome:
    """What a call returned, or the exception it raised."""

    def __init__(self, call=None):
        self.exc = self.result = None
        if call is not None:
            try:
                self.result = call()
            except Exception as exc:
                self.exc = exc

    def __str__(self):
        if self.exc is not None:
            return "raised %s: %s" % (type(self.exc).__name__, self.exc)
        return "returned %s" % _short(self.result)


def _short(value):
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


class Raises:
    """An expected result that is an exception (index() of a missing value)."""

    def __init__(self, exc_type, words):
        self.exc_type, self.words = exc_type, words

    def matches(self, exc):
        return isinstance(exc, self.exc_type) and self.words in str(exc)

    def __repr__(self):
        return "%s(...%s...)" % (self.exc_type.__name__, self.words)


def _is_closed_error(exc):
    return isinstance(exc, ValueError) and "closed" in str(exc)


def judge(outcome, state, *, items, result, after, closed, lenient=False, also=()):
    """The problems with a call's outcome and the items it left; none when right.

    closed: the callback closed the list during the call.  The call must then
    raise ValueError('... closed ...') having written nothing -- or, if
    lenient (it may legitimately have done its work first), complete
    correctly.  Otherwise it must complete correctly: return `result` (a
    value, a predicate or Raises) and leave `after`.  `also` lists the
    (type, words) of other exceptions accepted, with nothing written.
    """
    exc = outcome.exc
    closed_error = "ValueError('... closed ...')"
    if exc is not None and not (isinstance(result, Raises) and result.matches(exc)):
        if not ((closed and _is_closed_error(exc))
                or any(isinstance(exc, t) and words in str(exc) for t, words in also)):
            return ["%s; expected %s" % (outcome, closed_error if closed else _short(result))]
        if state != items:
            return ["%s, but the items changed: %r, were %r" % (outcome, state, items)]
        return []
    if closed and not lenient:
        return ["%s after the callback closed the list; expected %s" % (outcome, closed_error)]
    problems = []
    if not (result(outcome.result) if callable(result)
            else exc is not None or outcome.result == result):
        problems.append("%s; expected %s" % (outcome, _short(result)))
    if state != after:
        problems.append("%s, but the items are %r; expected %r" % (outcome, state, after))
    return problems


# ---------------------------------------------------------------------------
# The cases

CASES = {}


def call_case(case_id, items, call, result, after, action, make_hook=None, *,
              lenient=False, also=(), finalizer=None):
    """A case: call(sl, hook) where hook = make_hook(callback) runs `action`;
    or, with finalizer=delay, call(sl) while a GC finalizer runs it."""
    def run_case(run):
        box = run.new_list(items)
        name = box[0].shm.name
        callback = run.once(lambda: _ACTION_FUNCS[action](box))
        if finalizer is not None:
            outcome = Outcome()
            with Armed(callback, finalizer) as armed:
                armed.call(outcome, call, box[0])
                ran = callback.ran
            errors = armed.errors
        else:
            hook = make_hook(callback)
            outcome = Outcome(lambda: call(box[0], hook))
            ran, errors = callback.ran, []
        try:
            state = run.read(box, name)
        except Exception as exc:
            state = "unreadable: %r" % exc
        closed = ran and action in CLOSE_ACTIONS
        return outcome, ran, errors + judge(outcome, state, items=items, result=result,
                                            after=after, closed=closed,
                                            lenient=lenient, also=also)
    CASES[case_id] = run_case


# __index__ of an index, slice bound or position: (call, position, call(sl, i),
# result, items after).
INDEX_CALLS = [
    ("sl[i]", 1, lambda sl, i: sl[i], 20, INTS),
    ("sl[i]=v", 1, lambda sl, i: sl.__setitem__(i, 99), None, [10, 99, 30, 40]),
    ("sl[i:b]", 1, lambda sl, i: sl[i:3], [20, 30], INTS),
    ("sl[a:i]", 3, lambda sl, i: sl[1:i], [20, 30], INTS),
    ("sl[::i]", 2, lambda sl, i: sl[::i], [10, 30], INTS),
    ("sl[i:b]=seq", 1, lambda sl, i: sl.__setitem__(slice(i, 3), [7, 8]), None,
     [10, 7, 8, 40]),
    ("sl[a:i]=seq", 3, lambda sl, i: sl.__setitem__(slice(1, i), [7, 8]), None,
     [10, 7, 8, 40]),
    ("sl[::i]=seq", 2, lambda sl, i: sl.__setitem__(slice(None, None, i), [7, 8]), None,
     [7, 20, 8, 40]),
    ("view(i,b)", 1, lambda sl, i: sl.view(i, 3).tolist(), [20, 30], INTS),
    ("view(a,i)", 3, lambda sl, i: sl.view(1, i).tolist(), [20, 30], INTS),
    ("_get_packing_format(i)", 1, lambda sl, i: sl._get_packing_format(i), "q", INTS),
    ("fetch_add(i,d)", 1, lambda sl, i: sl.fetch_add(i, 5), 20, [10, 25, 30, 40]),
    ("compare_exchange(i,e,d)", 1, lambda sl, i: sl.compare_exchange(i, 20, 21), True,
     [10, 21, 30, 40]),
    ("load(i)", 1, lambda sl, i: sl.load(i), 20, INTS),
    ("store(i,v)", 1, lambda sl, i: sl.store(i, 5), None, [10, 5, 30, 40]),
]
for _call, _pos, _fn, _result, _after in INDEX_CALLS:
    for _action in ACTIONS:
        call_case("__index__|%s|%s" % (_call, _action), INTS, _fn, _result, _after, _action,
                  lambda cb, _pos=_pos: Index(_pos, cb))

# __eq__ of the value scanned for (and __bool__ of what it returns).
EQ_HOOKS = [
    ("__eq__->False", lambda cb: Eq(cb, False), {"count": 0, "in": False}),
    ("__eq__->True", lambda cb: Eq(cb, True), {"count": 5, "in": True}),
    ("__bool__", lambda cb: EqTruth(cb, None), {"count": 0, "in": False}),
]
for _hook, _make, _answers in EQ_HOOKS:
    _found = _answers["in"]
    for _call, _fn, _result in [
            ("count(x)", lambda sl, x: sl.count(x), _answers["count"]),
            ("index(x)", lambda sl, x: sl.index(x),
             0 if _found else Raises(ValueError, "not in")),
            ("x in sl", lambda sl, x: x in sl, _found)]:
        for _action in ACTIONS:
            # A match found by the very comparison that closed the list is an
            # answer; counting must go on to the other items, and cannot.
            call_case("%s|%s|%s" % (_hook, _call, _action), MIXED, _fn, _result, MIXED,
                      _action, _make, lenient=_found and _call != "count(x)")

# __array__ of array arguments, and a `dtype` property run when NumPy reads a dtype.
ARRAY_CALLS = [
    ("view(dtype=)", INTS, lambda sl, h: sl.view(dtype=h).tolist(), INTS, INTS,
     lambda cb: DtypeOf(np.int64, cb), {}),
    ("add_at(__array__,d)", INTS, lambda sl, h: sl.add_at(h, 1), None, [11, 21, 30, 40],
     lambda cb: ArrayLike([0, 1], cb), {}),
    ("add_at(i,__array__)", INTS, lambda sl, h: sl.add_at([0, 1], h), None, [11, 22, 30, 40],
     lambda cb: ArrayLike([1, 2], cb), {}),
    # NumPy makes an object array of these: refusing it is as right as using __index__.
    ("add_at([__index__],d)", INTS, lambda sl, h: sl.add_at(h, 1), None, [11, 21, 30, 40],
     lambda cb: [Index(0, cb), Index(1, cb)], {"also": [(TypeError, "integer")]}),
    ("add_at(i,[int_subclass])", INTS, lambda sl, h: sl.add_at([0, 1], h), None,
     [11, 22, 30, 40], lambda cb: [hooked(IntSub, 1, cb), hooked(IntSub, 2, cb)], {}),
    # Whether NumPy reads dtype= before or after it asks the list for its
    # array is NumPy's business: after, the call legitimately completed.
    ("asarray(sl,dtype=)", INTS, lambda sl, h: np.asarray(sl, dtype=h).tolist(),
     [10.0, 20.0, 30.0, 40.0], INTS, lambda cb: DtypeOf(np.float64, cb), {"lenient": True}),
    ("asarray(mixed,dtype=)", NUMBERS, lambda sl, h: np.asarray(sl, dtype=h).tolist(),
     [1.0, 2.5, 1.0], NUMBERS, lambda cb: DtypeOf(np.float64, cb), {"lenient": True}),
]
for _call, _items, _fn, _result, _after, _make, _kw in ARRAY_CALLS:
    for _action in ACTIONS:
        call_case("__array__|%s|%s" % (_call, _action), _items, _fn, _result, _after, _action,
                  _make, **_kw)

# Conversions of values and deltas: int/float subclasses, NumPy scalar
# subclasses, objects with __index__.  A conversion that is never called
# leaves nothing to close: the call must then simply complete.
_FLOAT_AFTER = [0.5, 1.75, 2.5]
_UNSUPPORTED = {"also": [(TypeError, "not 'Index'")]}
NUMBER_CALLS = [
    ("sl[i]=int_subclass", INTS, lambda sl, h: sl.__setitem__(1, h), None, [10, 99, 30, 40],
     lambda cb: hooked(IntSub, 99, cb), {}),
    ("sl[i]=float_subclass", INTS, lambda sl, h: sl.__setitem__(1, h), None,
     [10, 0.5, 30, 40], lambda cb: hooked(FloatSub, 0.5, cb), {}),
    ("sl[i]=float32_subclass", INTS, lambda sl, h: sl.__setitem__(1, h), None,
     [10, 0.5, 30, 40], lambda cb: hooked(Float32Sub, 0.5, cb), {}),
    ("sl[i]=__index__", INTS, lambda sl, h: sl.__setitem__(1, h), None, [10, 99, 30, 40],
     lambda cb: Index(99, cb), _UNSUPPORTED),
    ("fetch_add(i,int_subclass)", INTS, lambda sl, h: sl.fetch_add(1, h), 20,
     [10, 25, 30, 40], lambda cb: hooked(IntSub, 5, cb), {}),
    ("fetch_add(i,__index__)", INTS, lambda sl, h: sl.fetch_add(1, h), 20, [10, 25, 30, 40],
     lambda cb: Index(5, cb), {}),
    ("fetch_add(i,float_subclass)", FLOATS, lambda sl, h: sl.fetch_add(1, h), 1.5,
     _FLOAT_AFTER, lambda cb: hooked(FloatSub, 0.25, cb), {}),
    ("fetch_add(i,float32_subclass)", FLOATS, lambda sl, h: sl.fetch_add(1, h), 1.5,
     _FLOAT_AFTER, lambda cb: hooked(Float32Sub, 0.25, cb), {}),
    # __index__ gives 2**70, past int64: adding it to a float item takes a
    # float, and that conversion closes the list.
    ("fetch_add(float,2**70 with __float__)", FLOATS, lambda sl, h: sl.fetch_add(1, h), 1.5,
     [0.5, 1.5 + 2.0**70, 2.5], lambda cb: BigIndex(cb), {}),
    ("compare_exchange(i,__index__,d)", INTS, lambda sl, h: sl.compare_exchange(1, h, 21),
     True, [10, 21, 30, 40], lambda cb: Index(20, cb), {}),
    ("compare_exchange(i,e,__index__)", INTS, lambda sl, h: sl.compare_exchange(1, 20, h),
     True, [10, 21, 30, 40], lambda cb: Index(21, cb), {}),
    ("compare_exchange(float,float32_subclass,d)", FLOATS,
     lambda sl, h: sl.compare_exchange(1, h, 0.75), True, [0.5, 0.75, 2.5],
     lambda cb: hooked(Float32Sub, 1.5, cb), {}),
    ("store(i,__index__)", INTS, lambda sl, h: sl.store(1, h), None, [10, 5, 30, 40],
     lambda cb: Index(5, cb), {}),
    ("store(float,float32_subclass)", FLOATS, lambda sl, h: sl.store(1, h), None,
     [0.5, 0.25, 2.5], lambda cb: hooked(Float32Sub, 0.25, cb), {}),
]
for _call, _items, _fn, _result, _after, _make, _kw in NUMBER_CALLS:
    for _action in ACTIONS:
        call_case("__float__/__int__|%s|%s" % (_call, _action), _items, _fn, _result, _after,
                  _action, _make, **_kw)

# A custom sequence given to slice assignment.
SEQUENCE_HOOKS = [
    ("__len__", lambda cb: Seq([7, 8], cb, "__len__")),
    ("__getitem__", lambda cb: Seq([7, 8], cb, "__getitem__")),
    ("__iter__", lambda cb: IterSeq([7, 8], cb, None)),
    ("list_subclass.__iter__", lambda cb: _list_sub([7, 8], cb)),
]


def _list_sub(items, callback):
    seq = ListSub(items)
    seq.callback = callback
    return seq


for _hook, _make in SEQUENCE_HOOKS:
    for _action in ACTIONS:
        call_case("%s|sl[a:b]=seq|%s" % (_hook, _action), INTS,
                  lambda sl, seq: sl.__setitem__(slice(0, 2), seq), None, [7, 8, 30, 40],
                  _action, _make)

def _loop(position):
    """for x in sl, the body running the callback after item `position`."""
    def call(sl, callback):
        seen = []
        for x in sl:
            seen.append(x)
            if len(seen) == position:
                callback()
        return seen
    return call


for _action in ACTIONS:
    call_case("loop body|for x in sl (first item)|%s" % _action, INTS, _loop(1), INTS, INTS,
              _action, lambda cb: cb)
    # Closing after the last item: stopping cleanly or raising are both right.
    call_case("loop body|for x in sl (last item)|%s" % _action, INTS, _loop(4), INTS, INTS,
              _action, lambda cb: cb, lenient=True)

# A GC finalizer runs inside the call, at an allocation.  It may run before
# or after the call has done its work: raising "closed" (having written
# nothing) and completing correctly are both right.
FINALIZER_CALLS = [
    ("list(sl)", MIXED, list, MIXED, MIXED),
    ("tolist()", MIXED, lambda sl: sl.tolist(), MIXED, MIXED),
    ("repr(sl)", MIXED, repr,
     lambda r: r.startswith("ShareableList(%r, name=" % MIXED) or r.startswith("<closed"),
     MIXED),
    ("sl[a:b]", MIXED, lambda sl: sl[0:5], MIXED, MIXED),
    ("sl[::2]", MIXED, lambda sl: sl[::2], [1, 2.5, b"raw"], MIXED),
    ("sl[a:b]=seq", MIXED, lambda sl: sl.__setitem__(slice(0, 2), ["ab", 3]), None,
     ["ab", 3, 2.5, None, b"raw"]),
    ("sl[i]=str", MIXED, lambda sl: sl.__setitem__(1, "abc"), None, [1, "abc", 2.5, None,
                                                                      b"raw"]),
    ("format", MIXED, lambda sl: sl.format, "q8sdxxxxxx?x8s", MIXED),
    ("_type_counts()", MIXED, lambda sl: sl._type_counts(),
     {"int": 1, "float": 1, "None": 1, "str": 1, "bytes": 1}, MIXED),
    ("len(sl)", MIXED, len, 5, MIXED),
    ("pickle.dumps(sl)", MIXED, pickle.dumps, lambda r: isinstance(r, bytes), MIXED),
    ("count(str)", MIXED, lambda sl: sl.count("text"), 1, MIXED),
    ("count(x), __eq__ allocating", MIXED, lambda sl: sl.count(Allocating()), 0, MIXED),
    ("index(bytes)", MIXED, lambda sl: sl.index(b"raw"), 4, MIXED),
    ("str in sl", MIXED, lambda sl: "text" in sl, True, MIXED),
    ("view()", INTS, lambda sl: sl.view().tolist(), INTS, INTS),
    ("view(dtype=)", INTS, lambda sl: sl.view(dtype=np.int64).tolist(), INTS, INTS),
    ("asarray(sl)", INTS, lambda sl: np.asarray(sl).tolist(), INTS, INTS),
    ("asarray(mixed)", NUMBERS, lambda sl: np.asarray(sl).tolist(), [1.0, 2.5, 1.0], NUMBERS),
    ("add_at(list,d)", INTS, lambda sl: sl.add_at([0, 1], 1), None, [11, 21, 30, 40]),
    ("add_at(array,array)", INTS, lambda sl: sl.add_at(np.array([0, 1]), np.array([1, 2])),
     None, [11, 22, 30, 40]),
    ("fetch_add(i,d)", INTS, lambda sl: sl.fetch_add(1, 5), 20, [10, 25, 30, 40]),
    ("for x in sl", MIXED, lambda sl: [x for x in sl], MIXED, MIXED),
]
for _call, _items, _fn, _result, _after in FINALIZER_CALLS:
    for _action in ACTIONS:
        call_case("finalizer|%s|%s" % (_call, _action), _items, _fn, _result, _after, _action,
                  lenient=True, finalizer=0)
    # Later collections reach further into the call.
    for _delay in (1, 2):
        for _action in ("close", "close+del"):
            call_case("finalizer, collection %d|%s|%s" % (_delay + 1, _call, _action), _items,
                      _fn, _result, _after, _action, lenient=True, finalizer=_delay)


# -- mutating an argument ------------------------------------------------------

def mutation_case(case_id, items, call, results, also=()):
    """call(sl) mutates its own argument; `results` lists the right (result,
    items after) pairs, and `also` the exceptions accepted (nothing written)."""
    def run_case(run):
        box = run.new_list(items)
        name = box[0].shm.name
        outcome = Outcome(lambda: call(box[0], run))
        state = run.read(box, name)
        candidates = [judge(outcome, state, items=items, result=r, after=a, closed=False,
                            also=also) for r, a in results]
        return outcome, run.ran, min(candidates, key=len)
    CASES[case_id] = run_case


def _grow_while_iterated(sl, run):
    seq = ListSub([7, 8])
    seq.callback = run.once(lambda: seq.append(9))
    sl[0:2] = seq


def _shrink_while_indexed(sl, run):
    seq = Seq([7, 8], run.once(lambda: seq.items.pop()), "__getitem__")
    sl[0:2] = seq


def _slice_bound_mutates_values(mutate):
    def call(sl, run):
        values = [7, 8]
        sl[Index(0, run.once(lambda: mutate(values))):2] = values
    return call


_SIZE = (ValueError, "size")
mutation_case("mutate|sl[a:b]=list_subclass growing in __iter__", INTS,
              _grow_while_iterated, [(None, [7, 8, 30, 40])], also=[_SIZE])
mutation_case("mutate|sl[a:b]=seq shrinking in __getitem__", INTS,
              _shrink_while_indexed, [(None, [7, 8, 30, 40])], also=[_SIZE])
mutation_case("mutate|sl[__index__:b]=values, appended to", INTS,
              _slice_bound_mutates_values(lambda v: v.append(9)),
              [(None, [7, 8, 30, 40])], also=[_SIZE])
mutation_case("mutate|sl[__index__:b]=values, a value made too long", INTS,
              _slice_bound_mutates_values(lambda v: v.__setitem__(0, "x" * 100)),
              [(None, [7, 8, 30, 40])], also=[(ValueError, "exceeds")])
mutation_case("mutate|sl[__index__:b]=values, cleared", INTS,
              _slice_bound_mutates_values(lambda v: v.clear()),
              [(None, [7, 8, 30, 40])], also=[_SIZE])


def _add_at_mutating(change, mutated_index_array):
    """add_at(indices, deltas) where one argument's __array__ mutates the other."""
    def call(sl, run):
        indices, deltas = np.array([0, 1]), np.array([1, 2])
        if mutated_index_array:
            sl.add_at(indices, ArrayLike(deltas, run.once(lambda: change(indices))))
        else:
            sl.add_at(ArrayLike(indices, run.once(lambda: change(deltas))), deltas)
    return call


mutation_case("mutate|add_at(indices,__array__) sets an index out of range", INTS,
              _add_at_mutating(lambda a: a.__setitem__(0, 99), True),
              [(None, [11, 22, 30, 40])], also=[(IndexError, "99")])
mutation_case("mutate|add_at(indices,__array__) changes an index", INTS,
              _add_at_mutating(lambda a: a.__setitem__(0, -1), True),
              [(None, [11, 22, 30, 40]), (None, [10, 22, 30, 41])])
mutation_case("mutate|add_at(__array__,deltas) changes a delta", INTS,
              _add_at_mutating(lambda a: a.__setitem__(0, 5), False),
              [(None, [11, 22, 30, 40]), (None, [15, 22, 30, 40])])


# -- the constructor -----------------------------------------------------------

LONG = "x" * 40
ORIGINAL = [LONG, 7, b"raw"]
MUTATIONS = {
    "shrink": (lambda seq: seq.__setitem__(0, "y"), ["y", 7, b"raw"]),
    "grow": (lambda seq: seq.__setitem__(0, "z" * 100), ["z" * 100, 7, b"raw"]),
    "append": (lambda seq: seq.append(8), ORIGINAL + [8]),
    "clear": (lambda seq: seq.clear(), []),
    "unstorable": (lambda seq: seq.__setitem__(1, object()), None),
}
CONSTRUCTOR_ERRORS = (RuntimeError, ValueError, TypeError)


def constructor_case(case_id, build, candidates):
    """build(run) -> (ShareableList(...), more candidates) may raise a clean error
    (then no segment may be left), or must give a list holding one of the
    candidate item lists, read alike by every handle: its header agrees with
    its slots."""
    def run_case(run):
        built = []
        outcome = Outcome(lambda: built.append(build(run)) or built[0][0])
        if outcome.exc is not None:
            if isinstance(outcome.exc, CONSTRUCTOR_ERRORS):
                return outcome, run.ran, []
            return outcome, run.ran, ["%s; expected a list or RuntimeError, ValueError or "
                                   "TypeError" % outcome]
        sl, extra = built[0]
        run.handles.append(sl.shm)
        return outcome, run.ran, check_built(sl, [c for c in candidates + extra if c is not None])
    CASES[case_id] = run_case


def check_built(sl, candidates):
    problems = []
    name = sl.shm.name
    items = sl.tolist()
    if items not in candidates:
        problems.append("built %s; expected one of %s" % (_short(items), _short(candidates)))
    if not os.path.exists(os.path.join(SHM_DIR, name)):
        return problems + ["the list's shm.name %r names no segment" % name]
    try:
        other = ShareableList(name=name)
        seen, fmt = other.tolist(), other.format
        other.close()
        if (seen, fmt) != (items, sl.format):
            problems.append("another handle reads %s (format %r), the creator %s (%r)"
                            % (_short(seen), fmt, _short(items), sl.format))
    except Exception as exc:
        problems.append("another handle cannot read the list: %r" % exc)
    if sys.version_info >= (3, 9):
        from multiprocessing.shared_memory import ShareableList as StdList
        try:
            registered = "/" + name in _tracked
            std = StdList(name=name)
            # The standard library registers what it attaches (gh-82300);
            # the tracker keeps a set, so only a new entry is to be undone.
            if not registered and "/" + name in _tracked:
                _unregister("/" + name, "shared_memory")
            try:
                seen = list(std)
            finally:
                std.shm.close()
            if seen != items:
                problems.append("the standard library's ShareableList reads %s, pyshl %s"
                                % (_short(seen), _short(items)))
        except Exception as exc:
            problems.append("the standard library's ShareableList cannot read it: %r" % exc)
    return problems


class Name(str):
    """A segment name whose method `hook` runs the callback, then str's own."""

    def __new__(cls, text, hook, callback):
        self = str.__new__(cls, text)
        self.hook, self.callback = hook, callback
        return self

    def _run(self, method):
        if self.hook == method:
            self.callback()

    def lstrip(self, *a):
        self._run("lstrip")
        return str.lstrip(self, *a)

    def encode(self, *a, **k):
        self._run("encode")
        return str.encode(self, *a, **k)

    def __contains__(self, x):
        self._run("__contains__")
        return str.__contains__(self, x)

    def __len__(self):
        self._run("__len__")
        return str.__len__(self)

    def __hash__(self):
        self._run("__hash__")
        return str.__hash__(self)

    def __eq__(self, other):
        self._run("__eq__")
        return str.__eq__(self, other)

    def __str__(self):
        self._run("__str__")
        return str.__str__(self)

    def __add__(self, other):
        self._run("__add__")
        return str.__add__(self, other)

    def __radd__(self, other):
        self._run("__radd__")
        return str.__add__(other, self)

    def __getitem__(self, k):
        self._run("__getitem__")
        return str.__getitem__(self, k)

    def __iter__(self):
        self._run("__iter__")
        return str.__iter__(self)


def _named(hook, mutation):
    change, mutated = MUTATIONS[mutation]

    def build(run):
        seq = list(ORIGINAL)
        name = Name(run.name(), hook, run.once(lambda: change(seq)))
        return ShareableList(seq, name=name), []
    return build, [ORIGINAL, mutated]


for _mutation in MUTATIONS:
    constructor_case("str subclass name|ShareableList(seq,name=S).lstrip|mutate seq: %s"
                     % _mutation, *_named("lstrip", _mutation))
for _hook in ["encode", "__contains__", "__len__", "__hash__", "__eq__", "__str__",
              "__add__", "__radd__", "__getitem__", "__iter__"]:
    constructor_case("str subclass name|ShareableList(seq,name=S).%s|mutate seq: shrink"
                     % _hook, *_named(_hook, "shrink"))


class OtherName(Name):
    """A name whose lstrip() answers another name: the segment must be the one
    shm.name says, whichever the list settles on."""

    def lstrip(self, *a):
        return self.other


def _other_name(run):
    name = OtherName(run.name(), None, None)
    name.other = run.name()
    return ShareableList(list(ORIGINAL), name=name), []


constructor_case("str subclass name|ShareableList(seq,name=S).lstrip|another name",
                 _other_name, [ORIGINAL])


class MutatingSequence:
    """Read through the old sequence protocol (__getitem__ until IndexError), it
    mutates itself at item 0; records what it gave."""

    def __init__(self, items, mutate):
        self.items, self.mutate, self.yielded = list(items), mutate, []

    def __getitem__(self, k):
        item = self.items[k]
        self.yielded.append(item)
        if k == 0:
            self.mutate(self.items)
        return item


class MutatingIterable(MutatingSequence):
    """The same, iterated with __iter__."""

    def __iter__(self):
        k = 0
        while k < len(self.items):
            yield self[k]
            k += 1


def _iterable(cls, mutation):
    def build(run):
        seq = cls(ORIGINAL, MUTATIONS[mutation][0])
        sl = ShareableList(seq, name=run.name())
        return sl, [seq.yielded]
    return build


for _cls, _what in [(MutatingIterable, "iterable"), (MutatingSequence, "sequence")]:
    for _mutation in ["shrink", "append", "clear"]:
        constructor_case("%s mutating itself|ShareableList(seq)|mutate seq: %s"
                         % (_what, _mutation), _iterable(_cls, _mutation), [])


def _list_subclass_iter(run):
    # An int subclass makes the list be converted, through ListSub.__iter__.
    seq = ListSub([hooked(IntSub, 1, lambda: None), LONG, 7])
    seq.callback = run.once(lambda: seq.__setitem__(1, "y"))
    return ShareableList(seq, name=run.name()), []


constructor_case("list subclass|ShareableList(seq).__iter__|mutate seq: shrink",
                 _list_subclass_iter, [[1, LONG, 7], [1, "y", 7]])


def _converted_item(cls, value):
    def build(run):
        seq = []
        item = hooked(cls, value, run.once(lambda: (seq.__setitem__(1, "y"), seq.append(8))))
        seq += [item, LONG, 7]
        return ShareableList(seq, name=run.name()), []
    return build, [[value, LONG, 7], [value, "y", 7, 8]]


constructor_case("item conversion|ShareableList([int_subclass,...])|mutate seq",
                 *_converted_item(IntSub, 1))
constructor_case("item conversion|ShareableList([float32_subclass,...])|mutate seq",
                 *_converted_item(Float32Sub, 1.5))


def _finalizer_mutates(mutation, delay):
    change, mutated = MUTATIONS[mutation]

    def build(run):
        seq = list(ORIGINAL)
        name = run.name()
        outcome = Outcome()
        with Armed(run.once(lambda: change(seq)), delay) as armed:
            armed.call(outcome, lambda items: ShareableList(items, name=name), seq)
        if outcome.exc is not None:
            raise outcome.exc
        return outcome.result, []
    return build, [ORIGINAL, mutated]


# The list is planned, then its segment made (Python code, allocating),
# then filled: collections 1, 3 and 5 fall before and inside that window.
for _mutation, _delay in [("shrink", 0), ("shrink", 2), ("shrink", 4), ("grow", 2),
                          ("append", 2), ("unstorable", 2)]:
    constructor_case("finalizer, collection %d|ShareableList(seq)|mutate seq: %s"
                     % (_delay + 1, _mutation), *_finalizer_mutates(_mutation, _delay))


# ---------------------------------------------------------------------------
# The runner

# What the resource tracker holds (a set of names, as it keeps them), seen
# from this process, so that a leak is blamed on its case.
_tracked = set()
_untracked_twice = []
_unregister = None


def _follow_the_tracker():
    global _unregister
    from pyshl import _shm
    resource_tracker = _shm.resource_tracker()   # the standard one, or pyshl's on 3.7
    register, unregister = resource_tracker.register, resource_tracker.unregister

    def following_register(name, rtype):
        _tracked.add(name)
        register(name, rtype)

    def following_unregister(name, rtype):
        if name in _tracked:
            _tracked.remove(name)
            unregister(name, rtype)
        else:
            _untracked_twice.append(name)

    resource_tracker.register = following_register
    resource_tracker.unregister = _unregister = following_unregister


def main(case_ids):
    faulthandler.enable()             # a crash prints where it happened
    _follow_the_tracker()
    unknown = [c for c in case_ids if c not in CASES]
    if unknown:
        raise SystemExit("unknown cases: %s" % unknown)
    for number, case_id in enumerate(case_ids or list(CASES)):
        print("START " + case_id, flush=True)
        faulthandler.dump_traceback_later(30, exit=True)    # a hang ends the process
        run = Run("psm_cb%d_%d_" % (os.getpid(), number))
        try:
            outcome, ran, problems = CASES[case_id](run)
            text = str(outcome)
        except Exception:
            ran, text = None, "the case itself failed"
            problems = [traceback.format_exc()]
        finally:
            faulthandler.cancel_dump_traceback_later()
        problems += run.cleanup()
        print("RESULT " + json.dumps({"case": case_id, "outcome": text, "hook_ran": ran,
                                      "problems": problems}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
