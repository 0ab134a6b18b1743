"""The host machine: where its programs are (``tools``), one way to run them (``process``), locks and
atomic fills of the cache (``locks``), the files ebpf-lab ships (``resources``), SIGTERM as Ctrl-C
(``signals``), and what ``lab setup``/``lab doctor`` check (``setup``).

May import: ``lab.errors``, ``lab.settings``.
"""
