"""Results: JUnit XML files of one or many pytest runs into a kernel x test matrix, as a text table
and a self-contained HTML page.

May import: ``lab.errors``, ``lab.kernels``.
"""
