"""efficiency: `injection` (pulses injected onto noise, trigger/cut efficiency curves and their fits),
`stage` (what the workflow rules read, call and write)."""
