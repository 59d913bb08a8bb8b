"""Torch-free reads of the catalog and the dynamics shards: regions, selections, data maps.

Imports neither torch nor textual: the app and the command line read through it."""
