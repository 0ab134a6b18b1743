"""Load a BPF object with the guest's libbpf, one program at a time, and say what happened.

Runs INSIDE the guest, under the guest's /usr/bin/python3 (the standard library only),
and talks to libbpf.so.1 through ctypes: the library bpftool and most loaders are built on,
so what fails here fails for them, with libbpf's and the verifier's own words.

    bpfload.py report OBJ [--no-attach]   one JSON line: each program loaded/attached/rejected
    bpfload.py run OBJ [--trace-pipe]     load and attach everything, then stay (a lab's program)

``report`` loads each program alone (the others' autoload off), so one bad program does
not hide the verdict on the rest. libbpf prints its warnings and, on a failed load, the
verifier log to stderr; that stream is captured per program by pointing fd 2 at a file.
"""

import ctypes
import json
import os
import sys
import tempfile
import time

_LIB = None


def libbpf():
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        ptr = ctypes.c_void_p
        for name, res, args in (
            ("bpf_object__open_file", ptr, [ctypes.c_char_p, ptr]),
            ("bpf_object__next_program", ptr, [ptr, ptr]),
            ("bpf_object__load", ctypes.c_int, [ptr]),
            ("bpf_object__close", None, [ptr]),
            ("bpf_program__name", ctypes.c_char_p, [ptr]),
            ("bpf_program__section_name", ctypes.c_char_p, [ptr]),
            ("bpf_program__set_autoload", ctypes.c_int, [ptr, ctypes.c_bool]),
            ("bpf_program__attach", ptr, [ptr]),
            ("bpf_link__destroy", ctypes.c_int, [ptr]),
            ("libbpf_major_version", ctypes.c_uint32, []),
            ("libbpf_minor_version", ctypes.c_uint32, []),
        ):
            function = getattr(lib, name)
            function.restype, function.argtypes = res, args
        _LIB = lib
    return _LIB


def version():
    lib = libbpf()
    return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"


class Stderr:
    """fd 2 pointed at a temporary file for the duration: libbpf's messages, as text."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()


def open_object(path):
    obj = libbpf().bpf_object__open_file(path.encode(), None)
    if not obj:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot open {path}: {os.strerror(errno)}")
    return obj


def programs(obj):
    lib, found, prog = libbpf(), [], None
    while True:
        prog = lib.bpf_object__next_program(obj, prog)
        if not prog:
            return found
        found.append(prog)


def describe(prog):
    lib = libbpf()
    return lib.bpf_program__name(prog).decode(), lib.bpf_program__section_name(prog).decode()


def attach_all(obj):
    """Attach every program whose section says how; (links, [(name, errno)] of those that failed)."""
    lib, links, failed = libbpf(), [], []
    for prog in programs(obj):
        link = lib.bpf_program__attach(prog)
        if link:
            links.append(link)
        else:
            failed.append((describe(prog)[0], ctypes.get_errno()))
    return links, failed


def try_one(path, index, attach):
    """Load program number *index* of *path* alone (and attach it): its verdict as a dict."""
    lib = libbpf()
    with Stderr() as err:
        obj = open_object(path)
        try:
            progs = programs(obj)
            for i, prog in enumerate(progs):
                lib.bpf_program__set_autoload(prog, i == index)
            name, section = describe(progs[index])
            verdict = {"name": name, "section": section, "loaded": False, "attached": None, "errno": 0}
            status = lib.bpf_object__load(obj)
            if status == 0:
                verdict["loaded"] = True
                if attach:
                    link = lib.bpf_program__attach(progs[index])
                    verdict["attached"] = bool(link)
                    if link:
                        lib.bpf_link__destroy(link)
                    else:
                        verdict["errno"] = ctypes.get_errno()
            else:
                verdict["errno"] = -status
        finally:
            lib.bpf_object__close(obj)
    verdict["log"] = err.text
    return verdict


def report(path, attach):
    result = {"libbpf": None, "object": path, "error": "", "log": "", "programs": []}
    try:
        result["libbpf"] = version()
        with Stderr() as err:
            obj = open_object(path)
            count = len(programs(obj))
            libbpf().bpf_object__close(obj)
        result["programs"] = [try_one(path, i, attach) for i in range(count)]
        if not count:
            result["error"] = "the object has no BPF programs"
    except OSError as exc:
        result["error"] = str(exc)
        result["log"] = err.text if "err" in locals() else ""
    print("EBPF-LAB-LOAD " + json.dumps(result), flush=True)
    return 0


def run(path, trace_pipe):
    """Load and attach all of *path*, say so, then stay until killed (relaying trace_pipe if asked)."""
    lib = libbpf()
    obj = open_object(path)
    status = lib.bpf_object__load(obj)
    if status:
        print(f"bpfload: failed to load {path}: {os.strerror(-status)}", file=sys.stderr, flush=True)
        return 1
    links, failed = attach_all(obj)
    for name, errno in failed:
        print(f"bpfload: failed to attach program '{name}': {os.strerror(errno)}", file=sys.stderr, flush=True)
    if failed:
        return 1
    print(f"bpfload: attached {len(links)} program(s)", flush=True)
    if trace_pipe:
        for base in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
            if os.path.exists(base + "/trace_pipe"):
                with open(base + "/trace_pipe", "rb", buffering=0) as pipe:
                    while True:
                        sys.stdout.write(pipe.readline().decode("utf-8", "replace"))
                        sys.stdout.flush()
    while True:
        time.sleep(3600)


def main(argv):
    if len(argv) < 2 or argv[0] not in ("report", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "report":
        return report(argv[1], attach="--no-attach" not in argv[2:])
    return run(argv[1], trace_pipe="--trace-pipe" in argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
