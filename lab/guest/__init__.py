"""A booted guest: QEMU under pexpect driven through its console (``guest``), the programs it runs
in the background (``background``), what the console printed (``transcript``, bounded; ``console``,
pure parsers), the shell programs sent to the guest (``shell``), the one timeout policy
(``timeouts``), the path from a catalog entry to a guest (``kernel``), files into and out of a
guest (``files``), and BPF objects loaded by the guest's libbpf (``bpf_objects``, with the
guest-side ``guest_files/bpfload.py``) with the reasons a load fails (``verifier``, pure), and the
guest kernel's log (``kmsg``) with the splats in it (``splats``, pure).

May import: ``lab.errors``, ``lab.settings``, ``lab.host``, ``lab.kernels``, ``lab.boot``.
"""
