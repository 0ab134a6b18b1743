"""Split the selected kernels across N CI jobs: ``--shard K/N``.

A shard holds whole kernels, so each kernel still boots once (in one job) and the
shards together run every target exactly once. The split depends only on the kernel
ids and their costs, never on the order the catalog listed them in, so every job of
a CI matrix computes the same split on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lab.errors import UsageError
from lab.kernels.catalog import id_order

T = TypeVar("T")

#: Cost of a kernel whose architecture the runner must emulate instead of running natively;
#: an emulated foreign CPU (arm64 on x86_64) is several times slower than the host's own.
FOREIGN_ARCH_COST = 4.0

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based, as people count CI jobs) of ``total``."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"

    @property
    def runs_host_tests(self) -> bool:
        """Tests that boot no kernel run in shard 1 only, so they too run once in all."""
        return self.index == 1


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> ``Shard(2, 4)``; anything else is a :class:`UsageError` that says why."""
    match = _SHARD.match(text or "")
    if not match:
        raise UsageError(f"--shard {text!r} is not K/N", hint="e.g. --shard 1/4 (shard 1 of 4; K counts from 1)")
    index, total = int(match[1]), int(match[2])
    if total < 1:
        raise UsageError(f"--shard {text}: N must be at least 1", hint="e.g. --shard 1/4")
    if not 1 <= index <= total:
        raise UsageError(f"--shard {text}: K must be between 1 and {total}", hint=f"use 1/{total} … {total}/{total}")
    return Shard(index=index, total=total)


def split(ids: Iterable[str], *, total: int, costs: Mapping[str, float] | None = None) -> list[list[str]]:
    """Every kernel id in exactly one of ``total`` shards, balanced by cost.

    Greedy longest-first: the dearest kernel goes to the least loaded shard (the
    lowest-numbered on a tie). With equal costs this is round-robin over the sorted
    ids. Ties between kernels break on the id, so the result never depends on input order.
    """
    if total < 1:
        raise UsageError(f"cannot split kernels into {total} shards", hint="N must be at least 1")
    cost = costs or {}
    ordered = sorted(set(ids), key=lambda kid: (-cost.get(kid, 1.0), id_order(kid)))
    shards: list[list[str]] = [[] for _ in range(total)]
    load = [0.0] * total
    for kid in ordered:
        target = min(range(total), key=lambda i: (load[i], len(shards[i]), i))
        shards[target].append(kid)
        load[target] += cost.get(kid, 1.0)
    return [sorted(s, key=id_order) for s in shards]


def select(items: Sequence[T], *, shard: Shard, key, costs: Mapping[str, float] | None = None) -> list[T]:  # type: ignore[no-untyped-def]
    """The items (kernel specs) of ``shard``, in their original order; ``key(item)`` gives the kernel id."""
    mine = set(split((key(item) for item in items), total=shard.total, costs=costs)[shard.index - 1])
    return [item for item in items if key(item) in mine]


def kernel_costs(specs: Iterable) -> dict[str, float]:  # type: ignore[type-arg]
    """Kernel id -> cost for :func:`split`: a kernel the host must emulate (``spec.foreign``) costs more.

    Every CI job computes this on its own runner, so jobs of one architecture agree on the split.
    """
    return {s.id: FOREIGN_ARCH_COST if s.foreign else 1.0 for s in specs}


def ci_matrix(specs: Sequence, *, shards: int | None = None) -> list[dict[str, str]]:  # type: ignore[type-arg]
    """GitHub Actions ``strategy.matrix`` entries: one per shard (default: one per kernel).

    Each entry says which ``--shard K/N`` to run and, for the job's name and its
    kernel-cache key, which kernels (``kernel``) and guest architectures (``arch``)
    that shard boots, costed as :func:`kernel_costs` does on the runner. More shards than
    kernels would leave jobs with nothing to boot, so N is capped.
    """
    total = max(1, min(shards or len(specs), len(specs)))
    by_id = {s.id: s for s in specs}
    entries = []
    for index, ids in enumerate(split(by_id, total=total, costs=kernel_costs(specs)), start=1):
        arches = sorted({by_id[i].arch.name for i in ids})
        entries.append({"shard": f"{index}/{total}", "kernel": ",".join(ids), "arch": ",".join(arches)})
    return entries
