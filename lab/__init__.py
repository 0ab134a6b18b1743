"""ebpf-lab: eBPF programs run in throw-away VMs booted with real Linux kernels.

Layers, each importing only from the ones above it in this list:

- ``lab.errors``, ``lab.settings``: the exception hierarchy; the cache and environment settings.
- ``lab.host``: the host machine: finding and running its programs, cache locks, shipped files.
- ``lab.kernels``: what to boot: the catalog, architectures, fetching kernels, root filesystems.
- ``lab.boot``: how to boot it: QEMU/virtme-ng command lines, prepared boots, the accelerator,
  the guest's init scripts.
- ``lab.guest``: a booted guest driven through its console, and the path from a catalog entry to one.
- ``lab.labs``: labs (data) and running one in a guest, with feedback for students.
- ``lab.report``: JUnit results into a kernel x test matrix, as text and HTML.
- ``lab.pytest_plugin``, ``lab.cli``: the two front ends, pytest and the ``lab`` command.
"""
