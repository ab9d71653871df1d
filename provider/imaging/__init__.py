"""Disk image formats: a header inspector that runs before any tool touches the data, bounded
conversion with ``qemu-img convert`` and a guarded HTTP fetcher (a drivers-layer library)."""
