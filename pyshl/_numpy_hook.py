"""pyshl's NumPy set-up, run when NumPy is imported, so that `import pyshl` stays quick.

The set-up registers multiprocessing's reducer for arrays over pyshl segments
(so that they travel by reference) and checks NumPy's array layout for the
element atomics (pyshl._views does both when imported).  `import pyshl` runs
it at once if NumPy is already imported, and otherwise has it run the moment
NumPy's import completes: whether an array travels by reference never depends
on what ran before.
"""

import sys
import warnings

__all__ = ["when_numpy_imported"]


def _set_up():
    try:
        import pyshl._views  # noqa: F401  (registers; learns the layout)
    except Exception as exc:       # never break the import of NumPy itself
        warnings.warn("pyshl could not set up its NumPy support: %r" % (exc,), RuntimeWarning,
                      stacklevel=2)


class _AfterExec:
    """A loader that runs NumPy's own loader, then pyshl's set-up."""

    def __init__(self, loader, watcher):
        self._loader = loader
        self._watcher = watcher

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # The module's own loader is put back before its code runs.
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        # Watched until NumPy's import succeeds (a failed one may be retried).
        _stop_watching(self._watcher)
        _set_up()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _NumpyWatcher:
    """A meta path finder that finds nothing itself: for `numpy`, it wraps
    the loader that the finders after it give (importlib.util.find_spec
    gets the wrapped spec too, which is harmless)."""

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "numpy" or self._finding:
            return None
        self._finding = True
        try:
            for finder in list(sys.meta_path):
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(name, path, target) if finder is not self and find_spec \
                    else None
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._finding = False
        if spec.loader is not None and hasattr(spec.loader, "exec_module") and \
                not isinstance(spec.loader, _AfterExec):
            spec.loader = _AfterExec(spec.loader, self)
        return spec


def _stop_watching(watcher):
    try:
        sys.meta_path.remove(watcher)
    except ValueError:
        pass


def when_numpy_imported():
    """Set pyshl's NumPy support up now if NumPy is imported, else when it is."""
    if "numpy" in sys.modules:
        _set_up()
    elif not any(isinstance(f, _NumpyWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _NumpyWatcher())
