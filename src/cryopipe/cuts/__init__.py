"""cuts: `language` (the cut language, the default cuts, applying them), `stage` (what the labels
rule reads, calls and writes)."""
