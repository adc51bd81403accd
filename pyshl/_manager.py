"""SharedMemoryManager: the standard manager, handing out pyshl lists."""

from multiprocessing import managers, util

from pyshl._codec import ShareableList
from pyshl._shm import SharedMemory, resource_tracker

__all__ = ["SharedMemoryManager"]


def _destroy(name):
    """Unlink a segment the manager handed out; one already unlinked is skipped.

    The creating process registered it with the resource tracker it shares
    with the manager: attaching with track=True and unlinking unregisters it
    again, so shutdown leaves no tracker warnings.
    """
    util.debug("pyshl manager: unlinking %r" % name)
    try:
        segment = SharedMemory(name, track=True)
    except FileNotFoundError:
        return
    segment.close()
    try:
        segment.unlink()
    except FileNotFoundError:
        pass


class _Server(managers.Server):
    """The manager process: it also keeps the names of the segments handed out."""

    public = managers.Server.public + ["track_segment", "release_segment", "list_segments"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.segment_names = []

    def track_segment(self, c, segment_name):
        self.segment_names.append(segment_name)

    def release_segment(self, c, segment_name):
        self.segment_names.remove(segment_name)
        _destroy(segment_name)

    def list_segments(self, c):
        return list(self.segment_names)

    def shutdown(self, c):
        for name in self.segment_names:
            _destroy(name)
        self.segment_names = []
        return super().shutdown(c)


class SharedMemoryManager(getattr(managers, "SharedMemoryManager", managers.BaseManager)):
    """A ``multiprocessing.managers.SharedMemoryManager`` whose lists are pyshl's.

    ``ShareableList(sequence)`` returns a ``pyshl.ShareableList`` and
    ``SharedMemory(size)`` a ``pyshl.SharedMemory``, each tracked by the
    manager process and unlinked when the manager shuts down
    (``with SharedMemoryManager() as smm:`` or ``smm.shutdown()``).  Segments
    unlinked earlier by their users are skipped.  (On Python 3.6 and 3.7,
    which have no SharedMemoryManager, it is a BaseManager with the same
    methods.)
    """

    _Server = _Server

    def __init__(self, address=None, authkey=None, serializer="pickle", ctx=None, **kwargs):
        # BaseManager's arguments, named for help() and inspect (kwargs: its
        # shutdown_timeout on 3.11+).  Start the resource tracker before the
        # manager process, so that both share it (bpo-36867).
        resource_tracker().ensure_running()
        managers.BaseManager.__init__(self, address, authkey, serializer, ctx, **kwargs)

    def SharedMemory(self, size):
        """A new SharedMemory of ``size`` bytes, unlinked at the manager's shutdown."""
        return self._hand_out(lambda: SharedMemory(None, create=True, size=size, track=True))

    def ShareableList(self, sequence):
        """A new pyshl ShareableList of ``sequence``, unlinked at the manager's shutdown."""
        return self._hand_out(lambda: ShareableList(sequence, track=True))

    def _hand_out(self, make):
        """make() a list or segment and have the manager track it.  The manager is
        reached first, so that nothing is created when it cannot be (not started)."""
        with self._Client(self._address, authkey=self._authkey) as conn:
            made = make()
            shm = getattr(made, "shm", made)
            try:
                managers.dispatch(conn, None, "track_segment", (shm.name,))
            except BaseException:
                shm.close()
                shm.unlink()
                raise
        return made
