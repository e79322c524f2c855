"""`cryopipe` command line: what users do outside the Snakemake DAG.

  cryopipe schema [KIND]          print the layout of every store (or one)
  cryopipe inspect STORE [--verify]  validate a store (--verify: every chunk's checksum), print its summary
  cryopipe simulate OUT_DIR       write the default simulated stream (csmpl + truth store)
  cryopipe predict INPUT --output OUT.npz   cleaning scores of a records store, Cait HDF5, LJH or .npz
  cryopipe import-cait H5 OUT.zarr          Cait HDF5 events -> records store
  cryopipe view RUN_DIR [--port P]          look at a run in the browser (scatter, traces, cuts, hand labels)
  cryopipe evaluate-hand-labels RUN_DIR     a model's decisions against the run's hand labels
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import CryopipeError, InputError


def _schema(args) -> None:
    from .io.stores import STORES

    kinds = [args.kind] if args.kind else list(STORES)
    for k in kinds:
        if k not in STORES:
            raise CryopipeError(f"unknown store kind {k!r}; known: {', '.join(STORES)}")
        print(STORES[k].describe())


def _inspect(args) -> None:
    import xarray as xr

    from .io.stores import STORES, open_store, store_kind, verify_store

    path = Path(args.store)
    if not path.exists():
        raise CryopipeError(f"{path}: no such store")
    kind = args.kind
    if kind is None:
        kind = store_kind(path)
        if kind == "hand_labels":               # the viewer's labels: not a pipeline store, no checksums
            if args.verify:
                raise CryopipeError(f"{path}: a hand-labels store (written by cryopipe view) has no chunk "
                                    "checksums; inspect it without --verify")
            _inspect_hand_labels(path)
            return
        if kind not in STORES:
            raise CryopipeError(f"{path}: store has no known store_kind attribute ({kind!r})")
    if args.verify:
        problems = verify_store(path)
        if problems:
            for line in problems[:20]:
                print(line, file=sys.stderr)
            more = f" (first 20 shown)" if len(problems) > 20 else ""
            raise CryopipeError(f"{path}: {len(problems)} problem(s) found by --verify{more}; "
                                "rerun the job that writes the store")
    ds = open_store(path, kind)
    with xr.set_options(display_max_rows=40):
        print(ds)
    if args.verify:
        print(f"{path}: every chunk verified against its checksum")


def _inspect_hand_labels(path: Path) -> None:
    """Print a hand-labels store (written by `cryopipe view`) and its current label per class."""
    from collections import Counter

    from .cleaning.hand_labels import current_hand_labels, read_hand_labels

    ds = read_hand_labels(path, missing_ok=False)
    print(ds)
    current = current_hand_labels(ds)
    counts = Counter(current.values())
    print(f"{path}: {ds.sizes.get('entry', 0)} entries, {len(current)} labelled (event, channel) pairs"
          + "".join(f"\n  {label}: {n}" for label, n in sorted(counts.items())))


def _simulate(args) -> None:
    from .io.stores import write_store
    from .simulate.stream import DEFAULT_SIMULATION, simulate_stream

    sim = dict(DEFAULT_SIMULATION)
    if args.duration:
        sim["duration"] = args.duration
    if args.seed is not None:
        sim["seed"] = args.seed
    out = Path(args.out_dir)
    names = [f"ch{i}" for i in range(len(sim["channels"]))] if not args.channels else args.channels.split(",")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory; OUT_DIR is the directory the csmpl files go to")
    taken = [p.name for p in [out / f"{n}.csmpl" for n in names] + [out / "truth.zarr"] if p.exists()]
    if taken:
        raise InputError(f"{out}: already holds {', '.join(taken)}; delete them or choose another OUT_DIR "
                         f"(nothing is overwritten)")
    paths, truth = simulate_stream(out, sim, args.sample_frequency, names)
    write_store(truth, out / "truth.zarr", "truth")
    for p in paths:
        print(p)


def _check_output_place(out: Path) -> None:
    """CryopipeError where `out` could not be written: its nearest existing ancestor is no folder
    or not writable (nothing is created here)."""
    place = out.absolute().parent
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise CryopipeError(f"{out}: cannot write there: {place} is a file, not a folder")
    if not os.access(place, os.W_OK):
        raise CryopipeError(f"{out}: cannot write there: {place} is not writable")


def _predict(args) -> None:
    import numpy as np

    from .cleaning.calibration import UNSURE_BAND
    from .cleaning.universal import predict_file, resolve_model

    if args.batch < 1:
        raise CryopipeError(f"--batch: must be >= 1, got {args.batch}")
    if args.cutoff is not None and not 0.0 <= args.cutoff <= 1.0:
        raise CryopipeError(f"--cutoff: must lie in [0, 1], got {args.cutoff}")
    out = Path(args.output)
    if out.suffix != ".npz":
        raise CryopipeError(f"{out}: --output must be an .npz file")
    _check_output_place(out)     # before the work: an unwritable place fails at once
    model, meta = resolve_model(args.model)
    if args.cutoff is None:  # the model's own operating point (chosen on its validation set)
        args.cutoff = float(meta.get("cutoff", 0.5))
    from .cleaning.predict import describe_invalid

    result = predict_file(args.input, model, batch=args.batch, pretrigger=args.pretrigger, invert=args.invert)
    invalid = describe_invalid(result["valid"], what=str(args.input))
    if invalid:
        print(f"cryopipe predict: warning: {invalid}", file=sys.stderr)
    with np.errstate(invalid="ignore"):
        result["accepted"] = result["score"] >= args.cutoff
    from .cleaning.predict import describe_lines, rate_warnings, record_warnings

    for w in record_warnings(int(result["n_samples"]), result["constant"],
                             trained_lengths=(meta.get("training") or {}).get("record_lengths"),
                             what=f"records of {args.input}"):
        print(f"cryopipe predict: warning: {w}", file=sys.stderr)

    if result["line_frequencies"].size:
        n_runs = result["score"].shape[0] if result["score"].ndim == 2 else 1
        per_run = [result["line_frequencies"][result["line_channel"] == c] for c in range(n_runs)]
        print(f"cryopipe predict: line pickup found in {args.input} and removed before the network: "
              f"{describe_lines(per_run, window_seconds=_window_seconds(args.input, result))}", file=sys.stderr)

    from .cleaning.trigger_check import polarity_warning, trigger_mismatch

    declared = int(result["pretrigger"]) if bool(result["pretrigger_declared"]) else None
    for c, (sign, rise) in enumerate(zip(result["pulse_polarity"], result["rise_sample"])):
        run = f"{args.input}" + (f" (channel {c})" if len(result["rise_sample"]) > 1 else "")
        said = [polarity_warning(int(sign), what=run),
                trigger_mismatch(None if np.isnan(rise) else float(rise), int(result["n_samples"]), declared, what=run)]
        for w in filter(None, said):
            print(f"cryopipe predict: warning: {w}", file=sys.stderr)
    called = None
    if "class_probability" in result:
        top = np.argmax(np.nan_to_num(result["class_probability"], nan=-1.0), axis=-1)
        called = np.asarray(result["class_names"])[top]
    for w in rate_warnings(result["accepted"], result["valid"], ood=result.get("ood"), what=f"records of {args.input}",
                           called=called):
        print(f"cryopipe predict: warning: {w}", file=sys.stderr)
    result["cutoff"] = np.float64(args.cutoff)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez(tmp, **result)
    tmp.replace(out)
    n, k, bad = result["score"].size, int(result["accepted"].sum()), int((~result["valid"]).sum())
    unscored = f" ({bad} not scored: NaN/inf samples, valid = False)" if bad else ""
    ood, unsure = result.get("ood"), result.get("unsure")
    flags = (f"; {int(ood.sum())} flagged ood (unlike the training data; {int((ood & ~result['accepted']).sum())} "
             f"of them rejected)" if ood is not None else "")
    if unsure is not None:
        lo, hi = UNSURE_BAND
        flags += f"; {int(unsure.sum())} unsure (calibrated P(clean) {lo}-{hi})"
    print(f"{out}: {n - bad} records scored with {meta.get('name', args.model)}{unscored}; "
          f"{k} accepted at cutoff {args.cutoff}{flags}")


def _window_seconds(path, result) -> float | None:
    """Duration (s) of the records' window the network saw in `predict_file`'s result, where the input
    declares its sample frequency; else None."""
    from .cleaning.predict import window_duration
    from .io.record_files import input_sample_frequency

    return window_duration(int(result["n_samples"]), int(result["pretrigger"]), input_sample_frequency(path))


def _import_cait(args) -> None:
    import numpy as np

    from .io.cait import cait_records
    from .io.stores import write_store

    names = args.channels.split(",") if args.channels else None
    if not Path(args.h5).is_file():
        raise CryopipeError(f"{args.h5}: no such file")
    fs = args.sample_frequency
    if fs is None:   # Cait files do not store it
        fs = 25_000.0
        print(f"{args.h5}: Cait files do not store the sample frequency; {fs:.0f} Hz assumed (--sample-frequency "
              f"to set it)", file=sys.stderr)
    ds = cait_records(args.h5, sample_frequency=fs, channel_names=names)
    write_store(ds, args.output, "records")
    kinds = ds["record_kind"].values.astype(str)
    pulser = int(np.isin(kinds, ("testpulse", "controlpulse")).sum())
    print(f"{args.output}: {ds.sizes['event']} records ({int((kinds == 'noise').sum())} noise, {pulser} test/control "
          f"pulses) of {ds.sizes['channel']} channels x {ds.sizes['sample']} samples at {fs:.6g} Hz")


def _view(args) -> None:
    from .view import serve

    serve(args.run, port=args.port, cuts_file=args.cuts_file, show=args.show)


def _evaluate_hand_labels(args) -> None:
    import glob
    import json

    from .cleaning.hand_labels import (
        evaluate_hand_labels,
        evaluate_model_on_hand_labels,
        format_report,
        read_hand_labels,
    )
    from .io.stores import open_store

    run = Path(args.run)
    if not run.is_dir():
        raise CryopipeError(f"{run}: no such run directory (give results/<run>)")
    if args.epochs is not None and not args.fine_tune:
        raise CryopipeError("--epochs: only with --fine-tune OUT.pt (the number of fine-tuning passes)")
    from .view.server import RUN_STORES

    if not any((run / name).exists() for name in RUN_STORES):
        raise CryopipeError(f"{run}: not a run folder (none of {', '.join(RUN_STORES)}); give results/<run>")
    hand = read_hand_labels(run / "hand_labels.zarr", missing_ok=False)
    if args.fine_tune:
        from .cleaning.hand_labels import fine_tune_on_hand_labels

        res = fine_tune_on_hand_labels(hand, open_store(run / "records.zarr", "records"), args.fine_tune,
                                       model_spec=args.model or "universal",
                                       epochs=10 if args.epochs is None else args.epochs)
        print(f"{res['checkpoint']}: fine-tuned on {res['n_train_records']} hand-labelled records; "
              f"{res['n_holdout_events']} labelled events held out")
        for when in ("before", "after"):
            if when in res:
                print(f"{when} fine-tuning, on the held-out hand labels:\n{format_report(res[when])}")
        if "after" in res:
            ba = [res[w]["balanced_accuracy"] for w in ("before", "after")]
            if ba[1] < ba[0]:
                print(f"cryopipe evaluate-hand-labels: warning: fine-tuning lowered the held-out balanced accuracy "
                      f"({ba[0]:.3f} -> {ba[1]:.3f}): keep the original model", file=sys.stderr)
        print(f"{res['checkpoint']}: uncalibrated (the original's temperature, OOD thresholds and cutoff do not "
              f"carry over): no ood / unsure flags, cutoff 0.5")
        if args.output:
            Path(args.output).write_text(json.dumps(res, indent=1, default=float))
        return
    if args.model:
        results = [evaluate_model_on_hand_labels(hand, open_store(run / "records.zarr", "records"),
                                                 model_spec=args.model,
                                                 cutoff=args.cutoff)]
    else:
        paths = sorted(glob.glob(str(run / "predictions" / "*.zarr")))
        if not paths:
            raise CryopipeError(f"{run}/predictions: no predictions store; pass --model universal or a checkpoint")
        results = [evaluate_hand_labels(hand, open_store(p, "predictions")) for p in paths]
    for r in results:
        print(format_report(r))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1, default=float))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cryopipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"cryopipe {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("schema", help="print store layouts")
    s.add_argument("kind", nargs="?")
    s.set_defaults(func=_schema)

    s = sub.add_parser("inspect", help="validate a store and print a summary")
    s.add_argument("store")
    s.add_argument("--kind", help="store kind (default: read from the store's attrs)")
    s.add_argument("--verify", action="store_true",
                   help="read every chunk and check it against the checksums written with the store")
    s.set_defaults(func=_inspect)

    s = sub.add_parser("simulate", help="write the default simulated stream")
    s.add_argument("out_dir")
    s.add_argument("--duration", type=float, help="s")
    s.add_argument("--seed", type=int)
    s.add_argument("--sample-frequency", type=float, default=25000.0, help="Hz")
    s.add_argument("--channels", help="comma-separated channel names")
    s.set_defaults(func=_simulate)

    s = sub.add_parser("predict", help="cleaning scores of records (records store, Cait HDF5, LJH, .npz or .npy)")
    s.add_argument("input", help="records store (Zarr), Cait HDF5 file (events/event), NIST LJH file, .npz with 'records' "
                        "or .npy array of records")
    s.add_argument("--model", default="universal", help="'universal' (shipped) or a checkpoint path x.pt")
    s.add_argument("--output", required=True, help="OUT.npz: score, accepted, class_probability, class_names")
    s.add_argument("--cutoff", type=float, default=None,
                   help="accept records with score >= cutoff (default: the model's own cutoff, else 0.5)")
    s.add_argument("--batch", type=int, default=4096, help="records per forward pass")
    s.add_argument("--pretrigger", type=int, default=None,
                   help="trigger sample of the records (default: the input's own, e.g. an LJH file's trigger "
                        "sample (Presamples, + 3 for non-DASTARD writers) or a records store's attr; else N/4)")
    s.add_argument("--invert", action="store_true",
                   help="multiply the records by -1 first: for negative-going pulses (the networks know positive "
                        "ones; an LJH file's 'Inverted' header is applied already)")
    s.set_defaults(func=_predict)

    s = sub.add_parser("import-cait", help="import a Cait HDF5 file's events into a records store")
    s.add_argument("h5")
    s.add_argument("output", help="OUTPUT.zarr")
    s.add_argument("--sample-frequency", type=float, default=None,
                   help="Hz (Cait files do not store it; default 25000, said when assumed)")
    s.add_argument("--channels", help="comma-separated names for the file's channels (default ch0, ch1, ...)")
    s.set_defaults(func=_import_cait)
    s = sub.add_parser("view", help="look at a run in the browser (local web app)")
    s.add_argument("run", help="results/<run>")
    s.add_argument("--port", type=int, default=5006)
    s.add_argument("--cuts-file", help="where saved cuts go (default: RUN/cuts.yaml, started from the run's cuts)")
    s.add_argument("--show", action="store_true", help="open a browser tab")
    s.set_defaults(func=_view)

    s = sub.add_parser("evaluate-hand-labels", help="evaluate a model's decisions on the run's hand labels")
    s.add_argument("run", help="results/<run> (with hand_labels.zarr from cryopipe view)")
    s.add_argument("--model", help="score the labelled records with 'universal' or a checkpoint x.pt "
                                   "(default: use the run's predictions/*.zarr)")
    s.add_argument("--cutoff", type=float, default=None, help="with --model (default: the model's own)")
    s.add_argument("--output", help="also write the results as JSON")
    s.add_argument("--fine-tune", metavar="OUT.pt", help="fine-tune --model (default universal) on the hand labels "
                   "(30 %% of the labelled events held out), save it here, evaluate before and after")
    s.add_argument("--epochs", type=int, default=None, help="with --fine-tune (default 10)")
    s.set_defaults(func=_evaluate_hand_labels)
    return p


def main(*, argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CryopipeError as exc:
        print(f"cryopipe {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:   # e.g. `cryopipe schema | head`: the reader stopped; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # Python's own flush at exit must not fail again
        return 0
    except OSError as exc:     # an output path that cannot be written: a file in the way, no permission, disk full
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cryopipe {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
