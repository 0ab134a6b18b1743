"""What to boot: the catalog of kernels (``catalog``, data in ``builtin``, the top-level ``kernels/``),
architectures (``arches``), Debian packages through a private apt (``apt``), kernels in the cache
(``fetch``, ``unpacked``) and root filesystems for guests that cannot use the host's programs
(``rootfs``, packed by ``diskimage``, their Python byte-compiled by ``bytecode`` with ``pybuilder``).

May import: ``lab.errors``, ``lab.settings``, ``lab.host``.
"""
