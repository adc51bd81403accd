import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# PYSHL_SANITIZE=1 builds the extensions with AddressSanitizer and
# UndefinedBehaviorSanitizer; any report aborts the process, so it fails the
# test that caused it.  Run with the ASan runtime preloaded (see .ci/run).
# PYSHL_SANITIZE=thread builds them with ThreadSanitizer, for an interpreter
# built --with-thread-sanitizer.
compile_args = ["-O3"]
link_args = []
sanitize = os.environ.get("PYSHL_SANITIZE")
if sanitize:
    if sanitize == "thread":
        flags = ["-fsanitize=thread", "-O1", "-g"]
    else:
        flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                 "-fno-omit-frame-pointer", "-O1", "-g"]
    compile_args = flags
    link_args = flags

# The core's concerns are included into _codec.pyx: a change to any of them
# rebuilds it.
core_parts = ["pyshl/_codec.pxd", "pyshl/_mapping.pxd", "pyshl/_region.h", "pyshl/_slots.h", "pyshl/_formats.pxi",
              "pyshl/_slots.pxi", "pyshl/_construction.pxi", "pyshl/_scans.pxi",
              "pyshl/_atomics.pxi", "pyshl/_aggregate.pxi", "pyshl/_elements.pxi",
              "pyshl/_elements.h", "pyshl/_locks.pxi",
              "pyshl/_lock.h", "pyshl/_claims.h", "pyshl/_list.pxi"]

extensions = [
    Extension("pyshl._mapping", ["pyshl/_mapping.pyx"], depends=["pyshl/_mapping.pxd", "pyshl/_region.h"],
              extra_compile_args=compile_args, extra_link_args=link_args),
    Extension("pyshl._codec", ["pyshl/_codec.pyx"], depends=core_parts,
              extra_compile_args=compile_args, extra_link_args=link_args),
]


class cythonize_then_build_ext(build_ext):
    """Cythonize only when the extensions are built, so that an sdist ships the
    .pyx sources and never generated C."""

    def run(self):
        from Cython.Build import cythonize
        for extension, compiled in zip(self.extensions,
                                       cythonize(self.extensions, language_level=3)):
            extension.sources = compiled.sources      # the generated .c files
        super().run()


setup(ext_modules=extensions, cmdclass={"build_ext": cythonize_then_build_ext})
