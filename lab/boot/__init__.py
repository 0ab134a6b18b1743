"""How a guest boots: its configuration and virtme-ng command line (``config``), prepared boots
that start QEMU directly (``prepared``, with ``kimage`` and ``cpio``), KVM or TCG (``accel``),
and the scripts that run inside the guest (``guest_files/``).

May import: ``lab.errors``, ``lab.settings``, ``lab.host``, ``lab.kernels``.
"""
