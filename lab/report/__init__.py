"""Results: JUnit XML files of one or many pytest runs into a kernel x test matrix, as a text table
and a self-contained HTML page (``report``); ``lab load``'s kernel x program table (``loads``);
the terminal table both use (``grid``).

May import: ``lab.errors``, ``lab.kernels``, ``lab.guest``.
"""
