"""The run configuration: validation with short messages, per-run settings, canonical values.

The Snakefile hands the user's config (defaults already filled from the JSON schema) to
`resolve_runs`; every rule then reads a run's settings through `run_section`. Knows nothing of
Snakemake.

Per-run settings: a run may override any key of the detector sections (`PER_RUN_SECTIONS`) under
`runs.<name>.<section>.<key>`; the global section (with the schema's defaults) applies to every
other key.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

from .errors import ConfigError, CryopipeError, InputError
from .io.sources import RunFiles, describe_run_files

PER_RUN_SECTIONS = ("trigger", "characterize", "calibrate", "efficiency", "labels", "features", "testpulse")
PATH_KEYS = ("csmpl", "par", "test_stamps", "dig_stamps", "rdt", "con", "ljh", "noise_ljh")
RUN_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def load_schema(path: str | Path) -> dict:
    """The config schema, with the enum of `cleaning.models` taken from the model registry."""
    import yaml

    from .cleaning.architectures import MODEL_NAMES

    with open(path) as f:
        schema = yaml.safe_load(f)
    schema["properties"]["cleaning"]["properties"]["models"]["items"]["enum"] = list(MODEL_NAMES)
    return schema


def coerce_strings(value, schema: dict):
    """`value` with every string that the schema wants as a number, boolean or null, and that reads
    as one in YAML, turned into it (dicts and lists changed in place). Snakemake's `--config
    'section={key: 6}'` passes nested values as strings."""
    import yaml

    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, v in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce_strings(v, sub)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [coerce_strings(v, schema["items"]) for v in value]
        return value
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if not isinstance(value, str) or "string" in types:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    fits = {"integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
            "boolean": lambda x: isinstance(x, bool), "null": lambda x: x is None}
    return parsed if any(t in fits and fits[t](parsed) for t in types) else value


def check(config: dict, schema: dict) -> None:
    """Raise ConfigError (one short paragraph: where, what, what is allowed) if `config` breaks
    the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "top level"
    raise ConfigError(f"config: at {where}: {_short(error)}")


def _short(error) -> str:
    """The validator's message without the offending instance or the whole schema."""
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' (?:was|were) unexpected", error.message)
        allowed = sorted(error.schema.get("properties", {}))
        return (f"unknown key {extra[0] if extra else error.message!s}"
                + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
    if error.validator == "oneOf":
        return ("a run needs exactly one data source: csmpl (+ par, test_stamps, dig_stamps), rdt (+ par, con), "
                "ljh (+ noise_ljh) or simulate")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    message = error.message
    return message if len(message) < 300 else message[:300] + " ..."


def resolve_runs(config: dict, schema: dict) -> dict:
    """Each run's complete settings: its own keys plus every per-run section merged over the
    global one, validated, with canonical numbers and paths.

    Raises ConfigError naming the run and the problem (unsafe run name, duplicate channel names,
    an override key the section does not have).
    """
    runs = {}
    for name, run in config["runs"].items():
        if not RUN_NAME.match(name) or ".." in name:
            raise ConfigError(f"config: run name {name!r} is not allowed: use letters, digits, '_', '-', "
                              f"'.' (no '/', no '..', not starting with '.')")
        runs[name] = _resolve_run(name, run, config, schema)
    _check_channel_hints((config.get("calibrate") or {}).get("expected"), runs)
    heights = (config.get("characterize") or {}).get("sev_height_range")
    _check_height_ranges(heights, "characterize.sev_height_range")
    _check_channel_hints(heights, runs, key="characterize.sev_height_range")
    return runs


def _check_height_ranges(setting, where: str) -> None:
    """`characterize.sev_height_range` (one [low, high] or {channel: [low, high]}, V) has 0 <= low < high."""
    if setting is None:
        return
    for name, (low, high) in (setting.items() if isinstance(setting, dict) else [("", setting)]):
        if not 0 <= low < high:
            raise ConfigError(f"config: {where}{f'.{name}' if name else ''} is [{low:g}, {high:g}] V: it needs "
                              "0 <= low < high")


def _check_channel_hints(expected, runs: dict, run: str | None = None, key: str = "calibrate.expected") -> None:
    """A setting given per channel (`calibrate.expected`, `characterize.sev_height_range`) names
    channels that exist: a run's own its channels, the global one a channel of some run (a misspelt
    name would silently not apply)."""
    if not isinstance(expected, dict):
        return
    names = runs[run]["channels"] if run else sorted({c for r in runs.values() for c in r["channels"]})
    unknown = sorted(set(expected) - set(names))
    if unknown:
        where = f"runs.{run}.{key}" if run else key
        owner = f"run {run!r} has" if run else "the runs have"
        raise ConfigError(f"config: {where} names channel(s) {', '.join(map(repr, unknown))}, but {owner} "
                          f"only {', '.join(names)}")


def _resolve_run(name: str, run: dict, config: dict, schema: dict) -> dict:
    out = {k: copy.deepcopy(v) for k, v in run.items() if k not in PER_RUN_SECTIONS}
    run_schema = schema["properties"]["runs"]["additionalProperties"]["properties"]
    for key, sub in run_schema.items():
        if "default" in sub:
            out.setdefault(key, copy.deepcopy(sub["default"]))
    for section in PER_RUN_SECTIONS:
        merged = copy.deepcopy(config.get(section, {}))
        _merge(merged, run.get(section) or {})
        sub = schema["properties"][section]
        coerce_strings(merged, sub)
        try:
            check(merged, sub)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("config: at ", f"config: run {name!r}, {section}: at ", 1)) from None
        out[section] = merged
    for key in ("csmpl", "ljh", "noise_ljh"):
        if isinstance(out.get(key), str):
            out[key] = [out[key]]
    for key in PATH_KEYS:
        if key in out:
            out[key] = ([os.path.normpath(p) for p in out[key]] if isinstance(out[key], list)
                        else os.path.normpath(out[key]))
    files = describe_run_files(out)   # read lazily: each file once, when a setting needs it
    if "ljh" in out:
        _ljh_settings(name, run, out, files)
    out.setdefault("polarity", 1)   # no schema default: an LJH header's 'Inverted' must not clash with it
    _stream_settings(name, out, files)
    out["channels"] = _channel_names(name, out, files)
    out["roles"] = _roles(name, out)
    if "simulate" in out:         # checked here, not first in the simulate_stream job (a typo would rerun all)
        from .simulate.stream import validate_simulation

        try:
            validate_simulation(out["simulate"], out["channels"], out["sample_frequency"])
        except CryopipeError as exc:
            raise ConfigError(f"config: run {name!r}: {exc}") from None
    _check_channel_hints((run.get("calibrate") or {}).get("expected"), {name: out}, name)
    heights = (run.get("characterize") or {}).get("sev_height_range")
    _check_height_ranges(heights, f"runs.{name}.characterize.sev_height_range")
    _check_channel_hints(heights, {name: out}, name, key="characterize.sev_height_range")
    return out


def _roles(name: str, run: dict) -> dict:
    """Channel roles (phonon, light) of the run: given, or the channels named so (else none)."""
    roles = dict(run.get("roles") or {})
    if not roles and {"phonon", "light"} <= set(run["channels"]):
        roles = {"phonon": "phonon", "light": "light"}
    for role, channel in roles.items():
        if channel not in run["channels"]:
            raise ConfigError(f"config: run {name!r}: roles.{role} {channel!r} is not one of its channels "
                              f"({', '.join(run['channels'])})")
    return roles


def _stream_settings(name: str, run: dict, files: RunFiles) -> None:
    """sample_frequency (Hz, float) and record_length (samples, int): the run's keys, checked
    against its par file where one is given."""
    if run.get("par"):
        fixed = files.parameter_settings
        for key, value in (("sample_frequency", fixed["sample_frequency"]), ("record_length", fixed["record_length"])):
            if key in run and float(run[key]) != value:
                raise ConfigError(f"config: run {name!r}: {key} {run[key]} disagrees with {value:g} in {run['par']}")
            run[key] = value
    elif "rdt" in run:
        raise ConfigError(f"config: run {name!r}: an rdt run needs its par file (par: ...)")
    for key in ("sample_frequency", "record_length"):
        if key not in run:
            raise ConfigError(f"config: run {name!r}: {key} is required (or a par file that gives it)")
    run["sample_frequency"] = float(run["sample_frequency"])
    run["record_length"] = int(run["record_length"])
    if "start_time" in run and ("csmpl" not in run or run.get("par")):
        raise ConfigError(f"config: run {name!r}: start_time is for a csmpl stream without a par file "
                          f"(the par file{' ' + run['par'] if run.get('par') else ''} gives the start time)")
    if run.get("test_stamps") and not run.get("dig_stamps"):
        raise ConfigError(f"config: run {name!r}: test_stamps need the run's dig_stamps file (to align the DAQ clock)")
    if run.get("noise_ljh") and "ljh" not in run:
        raise ConfigError(f"config: run {name!r}: noise_ljh belongs to an ljh run")
    if (run.get("test_stamps") or run.get("dig_stamps")) and "csmpl" not in run:
        raise ConfigError(f"config: run {name!r}: test_stamps / dig_stamps belong to a csmpl stream")


def _ljh_settings(name: str, given: dict, run: dict, files: RunFiles) -> None:
    """Sample frequency, record length, pretrigger and polarity of an LJH run from its headers
    (keys the user gave must agree), and `ljh_mode` resolved to "records" or "stream".

    auto: a continuous stream when every record starts where the previous one ended (the frame
    counter advances by exactly one record), else triggered records. In stream mode cryopipe
    triggers the stream itself: `record_length` is then the record window it cuts (default the
    files' record length) and the trigger sits at record_length // 4, as for every stream.
    """
    try:
        info = files.header_settings
    except InputError as exc:
        raise ConfigError(f"config: run {name!r}: {exc}") from None
    mode = run.get("ljh_mode", "auto")
    if mode == "auto":
        mode = "stream" if files.continuous and files.n_records > 1 else "records"
    elif mode == "stream" and not files.continuous:
        raise ConfigError(f"config: run {name!r}: ljh_mode stream, but {run['ljh'][0]} is not a continuous "
                          f"stream: {files.gaps}")
    run["ljh_mode"] = mode
    header = {"sample_frequency": info["sample_frequency"]}
    if mode == "records":
        header.update(record_length=info["record_length"], pretrigger=info["pretrigger"])
    if "polarity" in info:
        header["polarity"] = info["polarity"]
    for key, value in header.items():
        if key in given and not math.isclose(float(given[key]), float(value), rel_tol=1e-9):
            raise ConfigError(f"config: run {name!r}: {key} {given[key]} disagrees with {value:g} in the "
                              f"header of {run['ljh'][0]}")
        run[key] = value
    if mode == "stream":
        run.setdefault("record_length", info["record_length"])
        run["pretrigger"] = int(run["record_length"]) // 4
    if run.get("noise_ljh"):
        try:
            noise = files.noise_settings
        except InputError as exc:
            raise ConfigError(f"config: run {name!r}: {exc}") from None
        if len(run["noise_ljh"]) != len(run["ljh"]):
            raise ConfigError(f"config: run {name!r}: {len(run['noise_ljh'])} noise_ljh files for "
                              f"{len(run['ljh'])} ljh files (one per channel)")
        if (noise["record_length"] != run["record_length"]
                or noise["sample_frequency"] != info["sample_frequency"]):
            raise ConfigError(f"config: run {name!r}: noise records of {run['noise_ljh'][0]} "
                              f"({noise['record_length']} samples at {noise['sample_frequency']:g} Hz) differ from "
                              f"the run's ({run['record_length']} samples at {info['sample_frequency']:g} Hz)")


def _channel_names(name: str, run: dict, files: RunFiles) -> list[str]:
    """The run's channel names (default ch0, ch1, ...), one per channel of its data source."""
    n = files.n_channels
    if n is None:
        n = len(run["simulate"].get("channels", [])) or 2
    names = run.get("channels") or [f"ch{i}" for i in range(n)]
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise ConfigError(f"config: run {name!r}: duplicate channel names {', '.join(dup)}")
    if len(names) != n:
        raise ConfigError(f"config: run {name!r}: {len(names)} channel names for {n} channels")
    return list(names)


def _merge(base: dict, over: dict) -> None:
    """Merge `over` into `base` key by key (nested dicts merge, everything else replaces)."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def canonical(value):
    """`value` with every mapping's keys sorted and integral floats as floats: params compare by
    value, so reordering keys in a config file does not rerun anything."""
    return json.loads(json.dumps(value, sort_keys=True))


def run_section(runs: dict, run: str, section: str, *keys: str) -> dict:
    """The named keys (all if none) of a run's resolved section, canonical."""
    sec = runs[run][section]
    return canonical({k: sec[k] for k in keys} if keys else sec)
