"""Small shared helpers: processes, sizes, names, rollback."""
