"""The pytest plugin (entry point ``pytest11``): the ``kernel`` and ``vm`` fixtures, the
``--kernel``/``--arch`` axes, markers, shards and the kernel x test summary.

May import: every other layer but ``lab.cli``.
"""
