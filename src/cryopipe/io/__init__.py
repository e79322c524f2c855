"""Input and output: csmpl streams, Zarr stores and their schemas, Cait HDF5 import."""
