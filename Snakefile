# cryopipe: raw detector data (csmpl streams, CRESST files) -> triggered records -> features,
# labels, cleaning, on Zarr stores.
# Usage: snakemake --cores all [target ...] [--configfile=my.yaml]
# Without --configfile the embedded demo (config/config.yaml) runs; with it, only that file and
# the schema's defaults apply.
import re
import sys

from snakemake.utils import min_version, validate

from cryopipe.config import check, coerce_strings, load_schema, resolve_runs
from cryopipe.errors import CryopipeError

min_version("9.0")

SCHEMA = f"{workflow.basedir}/workflow/schemas/config.schema.yaml"

if not workflow.overwrite_configfiles:
    workflow.configfile(f"{workflow.basedir}/config/config.yaml")

try:
    coerce_strings(config, load_schema(SCHEMA))  # --config 'trigger={threshold_sigma: 6}': '6' -> 6
    check(config, load_schema(SCHEMA))  # one short paragraph per problem
    validate(config, SCHEMA, set_default=True)
    RUNS = resolve_runs(config, load_schema(SCHEMA))
except CryopipeError as exc:  # the message alone, without traceback frames
    sys.exit(f"{type(exc).__name__}: {exc}")


include: "workflow/rules/common.smk"


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)),
    channel="[A-Za-z0-9_.-]+",


include: "workflow/rules/simulate.smk"
include: "workflow/rules/trigger.smk"
include: "workflow/rules/characterize.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/testpulse.smk"
include: "workflow/rules/efficiency.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/cleaning.smk"


onstart:
    check_cluster_requests()  # slurm executor: no job may ask for more than its partition's nodes have


localrules:
    all,


rule all:
    input:
        all_targets(),
    default_target: True
