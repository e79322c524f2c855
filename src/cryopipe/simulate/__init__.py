"""Simulation: noise from a power spectrum, pulse templates, streams and labelled records."""
