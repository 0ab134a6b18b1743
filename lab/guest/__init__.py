"""A booted guest: QEMU under pexpect driven through its console (``guest``), the programs it runs
in the background (``background``), what the console printed (``transcript``, bounded; ``console``,
pure parsers), the shell programs sent to the guest (``shell``), the one timeout policy
(``timeouts``), and the path from a catalog entry to a guest (``kernel``).

May import: ``lab.errors``, ``lab.settings``, ``lab.host``, ``lab.kernels``, ``lab.boot``.
"""
