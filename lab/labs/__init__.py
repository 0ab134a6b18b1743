"""Labs: each directory here is one (``lab.toml``, a README, a reference program); ``runner`` loads
and runs them in a guest, ``feedback`` turns a failure into what a student reads, ``constraints``
parses kernel version constraints (``>=5.8``).

May import: everything below ``lab.guest`` and ``lab.guest`` itself.
"""
