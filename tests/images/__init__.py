"""Test disk images: a synthetic tree and debootstrap trees in GPT/MBR x ext4/xfs/btrfs (see build.py)."""
