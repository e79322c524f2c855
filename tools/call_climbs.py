"""Developer check: how often following the data down the call stack climbs back into a module
already on it (A -> B -> A), for the two paths issue 22 names.

    python tools/call_climbs.py [--duration 60]

Simulates a two-channel stream (`--duration` s, the default module) in a temporary directory, then
profiles (sys.setprofile) every call between cryopipe modules:
- the stream config into the trigger scan: `open_stream` and `trigger_one_channel` of both channels;
- the first pass's records into `characterize_channel` (phonon channel).
A climb back is a call into a module that is already on the stack below a different module; each
distinct chain is printed once with the function it entered.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path


def traced(fn, *args, **kwargs):
    """fn(*args, **kwargs) under the profiler: (result, {chain of modules: function entered})."""
    stack, climbs = [], {}

    def profile(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("cryopipe"):
            return
        if event == "call":
            if stack and module != stack[-1] and module in stack:
                climbs.setdefault(tuple(stack[stack.index(module):] + [module]), frame.f_code.co_name)
            stack.append(module)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        return fn(*args, **kwargs), climbs
    finally:
        sys.setprofile(None)


def report(what: str, climbs: dict) -> None:
    print(f"{what}: {len(climbs)} climb(s) back")
    for chain, function in climbs.items():
        steps = [m for i, m in enumerate(chain) if i == 0 or m != chain[i - 1]]
        print("   ", " -> ".join(steps), f"({function})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="s of simulated stream (default 60)")
    args = parser.parse_args(argv)

    import xarray as xr

    from cryopipe.characterize.stage import characterize_channel
    from cryopipe.io.sources import open_stream
    from cryopipe.simulate.stream import DEFAULT_SIMULATION, simulate_stream
    from cryopipe.trigger.stage import record_batches, trigger_one_channel

    fs, n, channels = 25_000.0, 16384, ["phonon", "light"]
    with tempfile.TemporaryDirectory() as tmp:
        sim = copy.deepcopy(DEFAULT_SIMULATION)
        sim.update(duration=args.duration, seed=3)
        paths, _ = simulate_stream(Path(tmp), sim, fs, channels)
        spec = dict(csmpl=[str(p) for p in paths], sample_frequency=fs, record_length=n, channels=channels)
        stream_cfg = dict(record_length=n, channels=channels)
        trigger_cfg = dict(threshold_sigma=5.0, holdoff=None, chunk_size=2**20, noise_records=100, seed=0,
                           segment_duration=None)

        def trigger():
            stream = open_stream(spec)
            return stream, [trigger_one_channel(stream, c, stream_cfg, trigger_cfg) for c in range(len(channels))]

        (stream, triggers), climbs = traced(trigger)
        report("stream config -> trigger scan", climbs)
        first, rest, _ = record_batches(stream, triggers, stream_cfg, {**trigger_cfg, "pulser_records": False})
        records = xr.concat([first, *rest], dim="event")
        cfg = dict(max_pulses=2000, max_noise_records=2000, min_pulses=5, min_pulse_snr=5.0, min_noise_records=10,
                   threshold_resolution=5.0)
        _, climbs = traced(characterize_channel, records.sel(channel=["phonon"]), cfg, "phonon")
        report("records -> characterize_channel", climbs)


if __name__ == "__main__":
    main()
