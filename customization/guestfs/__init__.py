"""Image access: the guest root filesystem through e2fsprogs (no root) or a loop mount (root)."""
