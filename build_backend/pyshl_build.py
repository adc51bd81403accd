"""pyshl's build backend: setuptools', with the Cython release chosen for the
interpreter that builds (no environment marker tells a free-threaded one apart)."""

import sys
import sysconfig

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the PEP 517 hooks)


def _cython():
    # Cython 3.0 where it supports the Python: from 3.1 on, the generated
    # argument parsing takes a reference to every argument, which measurably
    # slows the per-call atomics (~1.5 ns of ~26, benchmarks/bench_peers.py).
    # Free-threaded builds need 3.1 or newer (freethreading_compatible).
    if sys.version_info >= (3, 14) or sysconfig.get_config_var("Py_GIL_DISABLED"):
        return ["Cython>=3.1"]
    return ["Cython>=3.0.11,<3.1"]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _cython()


if hasattr(_setuptools, "get_requires_for_build_editable"):      # setuptools 64+
    def get_requires_for_build_editable(config_settings=None):
        return _setuptools.get_requires_for_build_editable(config_settings) + _cython()
