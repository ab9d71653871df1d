"""Atoll core library: catalog, services, backends, data path and CLI."""

__version__ = "0.1.0"
