"""Ganeti adapters: ExtStorage verbs, OS-definition and hook glue, the RAPI client and the node installer."""
