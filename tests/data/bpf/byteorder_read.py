"""The user-space half of byteorder.bpf.c, run in the guest: read the record's raw bytes and decode them.

    byteorder_read.py native    decodes with struct's '=' (the CPU's own byte order): portable
    byteorder_read.py little    decodes with '<' (little-endian, hard-coded): the bug, wrong on s390x

The raw bytes come from bpftool (``map dump -j``), as any loader's would from a map lookup.
"""

import json
import struct
import subprocess
import sys

ORDER = {"native": "=", "little": "<"}


def main(argv):
    dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "name", "records"], check=True,
                                     capture_output=True, text=True).stdout)
    raw = bytes(int(b, 16) for b in dump[0]["value"])
    magic, port, _ = struct.unpack(ORDER[argv[0]] + "IHH", raw)
    print(f"{sys.byteorder}-endian guest, decoded {argv[0]}: magic=0x{magic:08x} port={port}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
