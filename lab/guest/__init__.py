"""A booted guest: QEMU under pexpect driven through its console (``guest``), what the console
prints (``console``, pure parsers), the shell programs sent to the guest (``shell``), the one
timeout policy (``timeouts``), and the path from a catalog entry to a guest (``kernel``).

May import: ``lab.errors``, ``lab.settings``, ``lab.host``, ``lab.kernels``, ``lab.boot``.
"""
