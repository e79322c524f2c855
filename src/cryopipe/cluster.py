"""What a SLURM partition offers, and the check that no job asks for more.

A SLURM job that asks for more CPUs (or memory) than any node of its partition has is accepted by
``sbatch`` on clusters that do not enforce partition limits at submission (``EnforcePartLimits=NO``,
SLURM's default) and then pends forever with reason ``PartitionConfig``; Snakemake waits without a
word. The workflow checks every job's request against the partition before it submits anything
(`check_requests`), and fails with one line naming the job, what it asked for and the ``--cores N``
that fits. Group jobs ask for the CPUs of the most threads their jobs could use at once, at most
``--cores``: that is the number to lower.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class PartitionLimits:
    """The largest node of a SLURM partition: CPUs and memory (MiB) one job can get on it."""

    partition: str
    cpus: int
    mem_mb: int


def parse_sinfo(text: str, *, partition: str | None = None) -> PartitionLimits:
    """Limits of `partition` (None or "": the default one, marked ``*``) from the output of
    ``sinfo -h -N -o "%P %c %m"`` (one line per node and partition: name, CPUs, memory in MiB).

    Raises InputError if the partition has no nodes, naming the partitions there are.
    """
    nodes: dict[str, list[tuple[int, int]]] = {}
    default = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        name, cpus, mem = parts[0], parts[1].rstrip("+"), parts[2].rstrip("+")
        if name.endswith("*"):
            name = name[:-1]
            default = name
        try:
            nodes.setdefault(name, []).append((int(cpus), int(mem)))
        except ValueError:
            continue
    want = partition or default
    if want is None or want not in nodes:
        which = f"partition {partition!r}" if partition else "default partition"
        raise InputError(f"SLURM: sinfo shows no {which} (partitions: {', '.join(sorted(nodes)) or 'none'}); "
                         f"set CRYOPIPE_SLURM_PARTITION to one of them")
    return PartitionLimits(want, max(c for c, _ in nodes[want]), max(m for _, m in nodes[want]))


def sinfo_nodes(*, timeout: float = 30.0) -> str:
    """This cluster's ``sinfo -h -N -o "%P %c %m"`` (for `parse_sinfo`); InputError if sinfo is
    missing, hangs or fails."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%P %c %m"], capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise InputError("SLURM: sinfo not found; run Snakemake with the slurm executor on a node of the "
                         "cluster") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"SLURM: sinfo did not answer within {timeout:g} s (is slurmctld running?)") from None
    if proc.returncode != 0:
        raise InputError(f"SLURM: sinfo failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    return proc.stdout


def check_requests(jobs, limits: PartitionLimits) -> None:
    """InputError (one line) for the first job asking for more than the partition's largest node.

    Parameters
    ----------
    jobs : iterable of (name, cpus, mem_mb): what each job will ask of SLURM (``--cpus-per-task``,
        ``--mem`` in MiB; mem_mb None: not asked); name as Snakemake shows it (rule and wildcards,
        or the group).
    limits : the partition's `PartitionLimits`
    """
    for name, cpus, mem_mb in jobs:
        if cpus is not None and int(cpus) > limits.cpus:
            raise InputError(f"SLURM: job {name} asks for {int(cpus)} CPUs, but the nodes of partition "
                             f"{limits.partition} have at most {limits.cpus}: it would pend forever "
                             f"(PartitionConfig); run with --cores {limits.cpus}")
        if mem_mb is not None and int(mem_mb) > limits.mem_mb:
            raise InputError(f"SLURM: job {name} asks for {int(mem_mb)} MiB of memory, but the nodes of "
                             f"partition {limits.partition} have at most {limits.mem_mb}: it would pend "
                             f"forever (PartitionConfig); lower the mem_mb of its rule(s) with "
                             f"--set-resources RULE:mem_mb=N")
