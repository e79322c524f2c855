"""What a SLURM partition offers, and the check that no job asks for more.

A SLURM job that asks for more CPUs (or memory) than any node of its partition has is accepted by
``sbatch`` on clusters that do not enforce partition limits at submission (``EnforcePartLimits=NO``,
SLURM's default) and then pends forever with reason ``PartitionConfig``; Snakemake waits without a
word. The workflow checks every job's request against the partition before it submits anything
(`check_requests`), and fails with one line naming the job, what it asked for and the ``--cores N``
that fits (or what to change for memory and GPUs). Group jobs ask for the CPUs of the most
threads their jobs could use at once, at most ``--cores``: that is the number to lower.
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
    gpus: int | None = None      # GPUs (gres gpu) of the node with the most; None: not known


def gres_gpus(gres: str | None) -> int:
    """GPUs in a SLURM gres string: ``gpu:1``, ``gpu:a100:4(S:0-1)``, ``gpu`` (1), ``(null)`` (0);
    entries separated by commas, only those named gpu count."""
    total = 0
    for entry in str(gres or "").split(","):
        entry = entry.split("(")[0].strip()
        fields = entry.split(":")
        if fields[0] != "gpu":
            continue
        total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def parse_sinfo(text: str, *, partition: str | None = None) -> PartitionLimits:
    """Limits of `partition` (None or "": the default one, marked ``*``) from the output of
    ``sinfo -h -N -o "%P %c %m %G"`` (one line per node and partition: name, CPUs, memory in MiB
    and, where given, the node's gres: its GPUs).

    Raises InputError if the partition has no nodes, naming the partitions there are.
    """
    nodes: dict[str, list[tuple[int, int, int | None]]] = {}
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
            nodes.setdefault(name, []).append((int(cpus), int(mem), gres_gpus(parts[3]) if len(parts) > 3 else None))
        except ValueError:
            continue
    want = partition or default
    if want is None or want not in nodes:
        which = f"partition {partition!r}" if partition else "default partition"
        raise InputError(f"SLURM: sinfo shows no {which} (partitions: {', '.join(sorted(nodes)) or 'none'}); "
                         f"set CRYOPIPE_SLURM_PARTITION to one of them")
    gpus = [g for *_, g in nodes[want] if g is not None]
    return PartitionLimits(want, max(n[0] for n in nodes[want]), max(n[1] for n in nodes[want]),
                           max(gpus) if gpus else None)


def sinfo_nodes(*, timeout: float = 30.0) -> str:
    """This cluster's ``sinfo -h -N -o "%P %c %m %G"`` (for `parse_sinfo`); InputError if sinfo is
    missing, hangs or fails."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%P %c %m %G"], capture_output=True, text=True,
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
    jobs : iterable of (name, cpus, mem_mb[, gpus]): what each job will ask of SLURM
        (``--cpus-per-task``, ``--mem`` in MiB, ``--gres`` GPUs; None: not asked); name as Snakemake
        shows it (rule and wildcards, or the group).
    limits : the partition's `PartitionLimits`
    """
    change = ("in a copy of profiles/slurm/config.yaml (its set-resources; --set-resources on the command "
              "line would replace that whole list)")
    for name, cpus, mem_mb, *rest in jobs:
        gpus = rest[0] if rest else None
        if cpus is not None and int(cpus) > limits.cpus:
            raise InputError(f"SLURM: job {name} asks for {int(cpus)} CPUs, but the nodes of partition "
                             f"{limits.partition} have at most {limits.cpus}: it would pend forever "
                             f"(PartitionConfig); run with --cores {limits.cpus}")
        if mem_mb is not None and int(mem_mb) > limits.mem_mb:
            raise InputError(f"SLURM: job {name} asks for {int(mem_mb)} MiB of memory, but the nodes of "
                             f"partition {limits.partition} have at most {limits.mem_mb}: it would pend "
                             f"forever (PartitionConfig); lower the mem_mb of its rule(s) {change}")
        if gpus and limits.gpus is not None and int(gpus) > limits.gpus:
            raise InputError(f"SLURM: job {name} asks for {int(gpus)} GPU(s) (gres), but the nodes of partition "
                             f"{limits.partition} have at most {limits.gpus}: it would pend forever; choose a "
                             f"GPU partition (CRYOPIPE_SLURM_PARTITION) or delete the rule's gres line {change}")
