"""Many worker processes aggregating into one shared histogram, with no lock.

The example lives in the package so that ``pyshl demo`` can run it: read (and
copy) ``pyshl/demo.py``.  This script runs it:

    python examples/aggregate.py [--workers 4] [--requests 2000000]
"""
from pyshl.demo import main

if __name__ == "__main__":
    main()
