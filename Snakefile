# cryopipe: csmpl streams -> triggered records -> features (and later stages), on Zarr stores.
# Usage: snakemake --cores all [--configfile my.yaml] [target]
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/common.smk"


wildcard_constraints:
    run="|".join(map(str, RUNS)),
    channel="[A-Za-z0-9_.-]+",


include: "workflow/rules/simulate.smk"
include: "workflow/rules/trigger.smk"
include: "workflow/rules/characterize.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/cleaning.smk"


localrules:
    all,


rule all:
    input:
        all_targets(),
    default_target: True
