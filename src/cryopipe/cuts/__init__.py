"""cuts: see the modules; `stage` holds what the workflow rules read, call and write."""
