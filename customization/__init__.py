"""Atoll's image customization engine: snf-image properties, one module per task, the Ganeti OS definition."""
