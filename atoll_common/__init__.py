"""Atoll's leaf package: the error base, the command runner, rollback and the boolean parser.

It imports nothing from ``provider`` or ``customization``, so both may build on it.
"""
