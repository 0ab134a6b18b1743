"""What a guest printed on its console: kept bounded in memory, whole in the log file."""

from __future__ import annotations

import pexpect

#: Characters of console text, of one command's output and of a spawned process's output
#: kept in memory; the console log file has everything. A guest that floods its console
#: (`yes`, a program printing in a loop) sends some 200 KiB/s for as long as the command
#: timeout allows: kept whole, a session's memory would grow by that for every flood.
OUTPUT_KEPT = 4 * 2**20

class Transcript:
    """Console text in memory: the newest *keep* characters, in chunks as they came."""

    def __init__(self, *, keep: int) -> None:
        self._keep = keep
        self._chunks: list[str] = []
        self._size = 0
        #: Characters ever appended: a mark for since().
        self.total = 0
        #: Characters of command output pexpect was made to forget (see _Tee).
        self.dropped_output = 0

    def append(self, text: str) -> None:
        self._chunks.append(text)
        self._size += len(text)
        self.total += len(text)
        if self._size > 2 * self._keep:  # Trimmed at twice the size: amortized O(1) per chunk.
            kept = "".join(self._chunks)[-self._keep:]
            self._chunks, self._size = [kept], len(kept)

    def text(self) -> str:
        return "".join(self._chunks)[-self._keep:]

    def since(self, mark: int) -> str:
        """What was appended after *total* was *mark* (as much of it as is kept)."""
        return self.text()[-(self.total - mark):] if self.total > mark else ""


class Tee:
    """pexpect's logfile: the transcript on disk and in memory, and a bound on pexpect's own.

    pexpect keeps all output since the last match for ``child.before``, which has no
    bound of its own; it is cut here to its newest half of OUTPUT_KEPT when it outgrows
    that (through pexpect's private ``_before``, which every 4.x release has: without it
    only the bound is lost).
    """

    def __init__(self, file, transcript: Transcript, *, child: pexpect.spawn) -> None:  # type: ignore[no-untyped-def]
        self._file = file
        self._transcript = transcript
        self._child = child

    def write(self, text: str) -> None:
        self._transcript.append(text)
        before = getattr(self._child, "_before", None)
        if before is not None and before.tell() > OUTPUT_KEPT:
            kept = before.getvalue()[-OUTPUT_KEPT // 2:]
            self._transcript.dropped_output += before.tell() - len(kept)
            self._child._before = self._child.buffer_type()
            self._child._before.write(kept)
        self._file.write(text)
        # Flushed as it comes: the log is what a user reads while a guest hangs.
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()
