"""The .npy header of a shared array's segment, read without NumPy (the CLI lists arrays with it).

Everything here treats the segment as untrusted input: the header is copied
out of shared memory first, checked field by field, and parsed without
evaluating code (ast.literal_eval, after a bound on its length and nesting).
"""

import ast
import re
import struct
import sys
import warnings

__all__ = ["MAGIC", "read_header", "simple_dtype"]

MAGIC = b"\x93NUMPY"
ALIGN = 64                   # where pyshl puts the data: a multiple of this
_HEADER_LIMIT = 1 << 20      # a longer header is refused unread
_NESTING_LIMIT = 64          # brackets in a header (structured dtypes nest)
_MAX_DIMS = 64               # NumPy's limit


def _outside_strings(text):
    """(how deeply brackets nest in `text`, `text` with the contents of its
    string literals blanked), for the checks made before literal_eval."""
    depth = deepest = 0
    quote = None
    escaped = False
    kept = []
    for c in text:
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = None
            kept.append(c if quote is None else " ")
            continue
        if c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
        kept.append(c)
    return deepest, "".join(kept)


def refusal(name, why):
    return ValueError("shared memory segment %r does not hold a shared array: %s" % (name, why))


def read_header(memory, size, written, name):
    """(descr, shape, fortran_order, data offset) from the .npy header at the
    start of `memory` (a segment of `size` bytes, of which the first
    `written` may be read).  Raises ValueError for anything malformed.  The
    descr is as the header has it: the caller turns it into a dtype."""
    if written < len(MAGIC) + 4 or bytes(memory[:len(MAGIC)]) != MAGIC:
        raise refusal(name, "no .npy header (pyshl.attach attaches arrays that pyshl.empty, "
                            "zeros, full or array made, or any .npy image)")
    major, minor = memory[6], memory[7]
    if major not in (1, 2, 3) or minor != 0:
        raise refusal(name, "unknown .npy format version %d.%d" % (major, minor))
    length_bytes = 2 if major == 1 else 4
    prefix = len(MAGIC) + 2 + length_bytes
    if written < prefix:
        raise refusal(name, "the header is cut short")
    header_length = struct.unpack("<H" if length_bytes == 2 else "<I",
                                  bytes(memory[8:prefix]))[0]
    if header_length > _HEADER_LIMIT:
        raise refusal(name, "a header of %d bytes (the limit is %d)"
                      % (header_length, _HEADER_LIMIT))
    end = prefix + header_length
    if end > size:
        raise refusal(name, "the header runs past the end of the segment")
    if end > written:
        raise refusal(name, "the header is on pages that were never written (a sparse file)")
    raw = bytes(memory[prefix:end])              # a private copy: parsed from here on
    try:
        text = raw.decode("utf8" if major == 3 else "latin1")
    except UnicodeDecodeError:
        raise refusal(name, "the header is not valid UTF-8") from None
    simple = _SIMPLE_HEADER.match(text)
    if simple:             # what np.save and pyshl write for a plain dtype: no literal_eval
        descr, fortran, dims = simple.groups()
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
        if len(shape) > _MAX_DIMS or any(n > sys.maxsize for n in shape):
            raise refusal(name, "the shape is not a tuple of at most %d ints from 0 to %d"
                          % (_MAX_DIMS, sys.maxsize))
        return descr, shape, fortran == "True", end
    nesting, code = _outside_strings(text)
    if nesting > _NESTING_LIMIT:
        raise refusal(name, "the header nests brackets more than %d deep" % _NESTING_LIMIT)
    if _LONG_NUMBER.search(code):     # (converting one takes time quadratic in its length)
        raise refusal(name, "the header has a number of more than 40 characters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # SyntaxWarnings of odd literals
            fields = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise refusal(name, "the header is not a Python literal") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise refusal(name, "the header is not a dict of descr, fortran_order and shape")
    shape, fortran_order = fields["shape"], fields["fortran_order"]
    if not isinstance(fortran_order, bool):
        raise refusal(name, "fortran_order is %r" % (fortran_order,))
    if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS or \
            not all(type(n) is int and 0 <= n <= sys.maxsize for n in shape):
        raise refusal(name, "the shape is not a tuple of at most %d ints from 0 to %d"
                      % (_MAX_DIMS, sys.maxsize))
    return fields["descr"], shape, fortran_order, end


# The header np.save and pyshl write for a dtype given by one string, with a
# shape as repr() writes a tuple: (), (3,), (3, 4).
_DIM = r"(?:0|[1-9][0-9]{0,19})"
_SIMPLE_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[a-zA-Z][0-9]{0,20}(?:\[[a-zA-Z]{1,3}\])?)', "
    r"'fortran_order': (True|False), "
    r"'shape': \((|%s,|%s(?:, %s)+)\), \} *\n?$" % (_DIM, _DIM, _DIM), re.ASCII)
# A number literal of more than 40 characters (any base, underscores too).
_LONG_NUMBER = re.compile(r"[0-9][0-9a-zA-Z_]{40}", re.ASCII)
_SIMPLE = re.compile(r"^([<>|=]?)([biufcSUVMm])([0-9]+)(\[[a-zA-Z]+\])?$", re.ASCII)
_NAMES = {"b": "bool", "i": "int%d", "u": "uint%d", "f": "float%d", "c": "complex%d",
          "S": "S%d", "U": "U%d", "V": "V%d", "M": "datetime64", "m": "timedelta64"}


def has_objects(descr):
    """Does a descr (as a header has it) hold Python objects ('O' anywhere)?"""
    if isinstance(descr, str):
        return descr.lstrip("<>|=")[:1] == "O"
    if isinstance(descr, tuple) and descr:       # (base, shape): a sub-array
        return has_objects(descr[0])
    if isinstance(descr, list):                  # fields: (name, descr[, shape])
        return any(isinstance(field, tuple) and len(field) >= 2 and has_objects(field[1])
                   for field in descr)
    return False


def simple_dtype(descr):
    """(NumPy's name for a simple descr such as '<f4', its itemsize), or
    (a short description, None) for structured and other descrs."""
    match = _SIMPLE.match(descr) if isinstance(descr, str) else None
    if not match:
        return ("structured" if isinstance(descr, list) else "%.40r" % (descr,)), None
    order, kind, count, unit = match.groups()
    count = int(count)
    itemsize = 4 * count if kind == "U" else count
    name = _NAMES[kind]
    if kind in "iufc":
        name %= 8 * count
    elif kind in "SUV":
        name %= count
    if unit:
        name += unit
    if order == ">" and itemsize > 1:
        name = ">" + name
    return name, itemsize
