"""Extraction engines: many inputs into one output file. `local` runs a resumable job in this
process; `ray_engine` spreads the work over a Ray cluster."""
