import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

# PYSHL_SANITIZE=1 builds the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer; any report aborts the process, so it fails the
# test that caused it.  Run with the ASan runtime preloaded (see .ci/run).
compile_args = ["-O3"]
link_args = []
if os.environ.get("PYSHL_SANITIZE"):
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer", "-O1", "-g"]
    compile_args = flags
    link_args = flags

extension = Extension(
    "pyshl._codec",
    ["pyshl/_codec.pyx"],
    # shm_open lives in librt on glibc older than 2.34.
    libraries=["rt"] if sys.platform.startswith("linux") else [],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=cythonize([extension], language_level=3))
