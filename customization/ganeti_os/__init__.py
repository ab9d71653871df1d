"""The Ganeti OS definition ``atoll`` (API 20): installs an instance by customizing its cloned disk."""
