"""Compare every Zarr store under two result directories with xarray; print identical/different per store.

Usage: python tools/compare_stores.py DIR_A DIR_B [--ignore-attrs parameters,inputs,...] [--rtol 1e-6]

Stores are the ``*.zarr`` directories found under DIR_A (relative paths matched in DIR_B). Provenance
attrs (``--ignore-attrs``; default parameters, inputs, cryopipe_version, schema_version, code hashes,
chunk manifests)
are dropped from the dataset and every variable before ``xarray.testing.assert_identical``. For a
store that differs, each differing variable is listed with its largest absolute and relative
difference, and whether that is within ``--rtol``; differing attrs are listed by name. Exit status 1
if any store differs or is missing.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

PROVENANCE = ("parameters", "inputs", "cryopipe_version", "schema_version", "code", "code_version",
              "created", "manifest", "chunk_manifests")


def stores(root: Path) -> list[Path]:
    """Relative paths of the Zarr stores under root (not nested inside another store)."""
    out = []
    for p in sorted(root.rglob("*.zarr")):
        if p.is_dir() and not any(parent.suffix == ".zarr" for parent in p.relative_to(root).parents):
            out.append(p.relative_to(root))
    return out


def _open(path: Path, ignore) -> xr.Dataset:
    with warnings.catch_warnings():  # Snakemake's .snakemake_timestamp inside directory() outputs
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(path, consolidated=False).load()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in ignore}
    for v in ds.variables.values():
        v.attrs = {k: a for k, a in v.attrs.items() if k not in ignore}
    return ds


def _attrs_equal(a, b) -> bool:
    try:
        return bool(np.all(np.asarray(a) == np.asarray(b))) and np.shape(a) == np.shape(b)
    except Exception:
        return a == b


def differences(a: xr.Dataset, b: xr.Dataset, rtol: float) -> list[str]:
    """Lines describing how b differs from a (empty if identical)."""
    try:
        xr.testing.assert_identical(a, b)
        return []
    except AssertionError:
        pass
    lines = []
    for name in sorted(set(a.variables) | set(b.variables)):
        if name not in b.variables:
            lines.append(f"  {name}: only in A")
            continue
        if name not in a.variables:
            lines.append(f"  {name}: only in B")
            continue
        va, vb = a.variables[name], b.variables[name]
        if va.identical(vb):
            continue
        if va.dims != vb.dims or va.shape != vb.shape:
            lines.append(f"  {name}: dims/shape {va.dims}{va.shape} vs {vb.dims}{vb.shape}")
            continue
        if va.attrs != vb.attrs:
            keys = sorted(k for k in set(va.attrs) | set(vb.attrs) if not _attrs_equal(va.attrs.get(k), vb.attrs.get(k)))
            lines.append(f"  {name}: attrs differ ({', '.join(keys)})")
        if va.dtype.kind in "fc" and vb.dtype.kind in "fc":
            x, y = np.asarray(va.values, np.float64), np.asarray(vb.values, np.float64)
            same_nan = np.array_equal(np.isnan(x), np.isnan(y))
            d = np.abs(x - y)
            d = np.where(np.isnan(x) & np.isnan(y), 0.0, d)
            if np.any(d > 0) or not same_nan:
                scale = np.maximum(np.abs(x), np.abs(y))
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.where(d > 0, d / scale, 0.0)
                n = int(np.sum(d > 0))
                lines.append(f"  {name}: {n} of {x.size} values differ, max abs {np.nanmax(d):.3g}, max rel "
                             f"{np.nanmax(rel):.3g} ({'within' if np.nanmax(rel) <= rtol and same_nan else 'above'} "
                             f"rtol {rtol:g}){'' if same_nan else '; NaN positions differ'}")
        elif not np.array_equal(np.asarray(va.values), np.asarray(vb.values)):
            n = int(np.sum(np.asarray(va.values) != np.asarray(vb.values)))
            lines.append(f"  {name}: {n} of {va.size} values differ ({va.dtype} / {vb.dtype})")
        elif va.dtype != vb.dtype:
            lines.append(f"  {name}: dtype {va.dtype} vs {vb.dtype}")
    for k in sorted(set(a.attrs) | set(b.attrs)):
        if not _attrs_equal(a.attrs.get(k), b.attrs.get(k)):
            lines.append(f"  attr {k!r} differs" + ("" if k in a.attrs and k in b.attrs else " (only in one)"))
    return lines or ["  (differs in a way not itemised: coords order or encoding)"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir_a", type=Path)
    ap.add_argument("dir_b", type=Path)
    ap.add_argument("--ignore-attrs", default=",".join(PROVENANCE),
                    help="comma-separated attrs ignored on datasets and variables")
    ap.add_argument("--rtol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    ignore = set(filter(None, args.ignore_attrs.split(",")))
    bad = 0
    for rel in stores(args.dir_a):
        other = args.dir_b / rel
        if not other.is_dir():
            print(f"{rel}: missing in B")
            bad += 1
            continue
        lines = differences(_open(args.dir_a / rel, ignore), _open(other, ignore), args.rtol)
        print(f"{rel}: {'identical' if not lines else 'different'}")
        for line in lines:
            print(line)
        bad += bool(lines)
    for rel in stores(args.dir_b):
        if not (args.dir_a / rel).is_dir():
            print(f"{rel}: only in B")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
