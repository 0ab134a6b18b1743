"""What to boot: the catalog of kernels (``catalog``, data in ``builtin``, the top-level ``kernels/``),
architectures (``arches``), Debian packages through a private apt (``apt``), kernels in the cache
(``fetch``) and root filesystems for guests that cannot use the host's programs (``rootfs``,
``pybuilder``).

May import: ``lab.errors``, ``lab.settings``, ``lab.host``.
"""
