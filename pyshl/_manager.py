"""SharedMemoryManager: the standard manager, handing out pyshl lists."""

from multiprocessing import managers, util

from pyshl._codec import SharedMemory, ShareableList

__all__ = ["SharedMemoryManager"]


class _SegmentTracker(managers._SharedMemoryTracker):
    """The manager process's record of its segments, destroyed with pyshl's SharedMemory.

    The creating process registered each segment with the resource tracker
    that it shares with the manager; attaching with track=True and unlinking
    here unregisters it again, so shutdown leaves no tracker warnings.  A
    segment the user already unlinked is skipped, not an error.
    """

    def destroy_segment(self, segment_name):
        util.debug("Destroy segment %r" % segment_name)
        self.segment_names.remove(segment_name)
        try:
            segment = SharedMemory(segment_name, track=True)
        except FileNotFoundError:
            return
        segment.close()
        try:
            segment.unlink()
        except FileNotFoundError:
            pass


class _Server(managers.SharedMemoryServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tracker = self.shared_memory_context
        self.shared_memory_context = _SegmentTracker(tracker.shared_memory_context_name, [])


class SharedMemoryManager(managers.SharedMemoryManager):
    """A ``multiprocessing.managers.SharedMemoryManager`` whose lists are pyshl's.

    ``ShareableList(sequence)`` returns a ``pyshl.ShareableList`` and
    ``SharedMemory(size)`` a ``pyshl.SharedMemory`` (the standard class's
    subclass), each tracked by the manager process and unlinked when the
    manager shuts down (``with SharedMemoryManager() as smm:`` or
    ``smm.shutdown()``).  Segments unlinked earlier by their users are skipped.
    """

    _Server = _Server

    def SharedMemory(self, size):
        """A new SharedMemory of ``size`` bytes, unlinked at the manager's shutdown."""
        return self._track(SharedMemory(None, create=True, size=size, track=True))

    def ShareableList(self, sequence):
        """A new pyshl ShareableList of ``sequence``, unlinked at the manager's shutdown."""
        sl = ShareableList(sequence, track=True)
        self._track(sl.shm)
        return sl

    def _track(self, shm):
        with self._Client(self._address, authkey=self._authkey) as conn:
            try:
                managers.dispatch(conn, None, "track_segment", (shm.name,))
            except BaseException:
                shm.close()
                shm.unlink()
                raise
        return shm
