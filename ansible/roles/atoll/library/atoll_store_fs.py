#!/usr/bin/python
"""Ansible module: the Atoll store on a dedicated XFS with reflink=1, made, recorded in fstab, mounted."""

from __future__ import annotations

import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.formatters import human_to_bytes

DOCUMENTATION = r"""
module: atoll_store_fs
short_description: Put the Atoll store on a dedicated XFS with reflink
description:
  - Makes an XFS with reflink=1 on O(src) when O(src) holds no filesystem, records the mount in O(fstab)
    and mounts it on O(path). A device that holds any other filesystem is never formatted.
  - O(src) is a block device (partition, LV) or a regular file, which is mounted through a loop device;
    with O(size) a missing file is created sparse first.
  - A non-empty O(path) that is not yet a mount point is refused: mounting over it would hide a store.
options:
  src: {description: Block device or image file., type: path, required: true}
  path: {description: Mount point (the store directory)., type: path, required: true}
  size: {description: "Size of an image file to create, e.g. 20G; empty: O(src) must exist.", type: str}
  opts: {description: Mount options., type: str, default: defaults}
  mkfs_options: {description: mkfs.xfs options., type: list, elements: str, default: ["-m", "reflink=1"]}
  fstab: {description: The fstab file to record the mount in., type: path, default: /etc/fstab}
"""

EXAMPLES = r"""
- name: Put the store on a dedicated XFS
  atoll_store_fs:
    src: /dev/vg0/atoll
    path: /var/lib/atoll
"""


def probe_fstype(module: AnsibleModule, src: str) -> str:
    """The filesystem type on ``src``, or "" when blkid finds none (exit code 2)."""
    blkid = module.get_bin_path("blkid", required=True)
    rc, out, err = module.run_command([blkid, "-p", "-o", "value", "-s", "TYPE", src])
    if rc == 2:
        return ""
    if rc != 0:
        module.fail_json(msg=f"blkid {src} failed: {err.strip()}")
    return out.strip()


def fstab_escape(field: str) -> str:
    return field.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def update_fstab(module: AnsibleModule, fstab: str, path: str, line: str) -> bool:
    """Make ``line`` the one entry for mount point ``path``; return whether the file changed."""
    try:
        with open(fstab) as f:
            old = f.read().splitlines()
    except FileNotFoundError:
        old = []
    new, placed = [], False
    for entry in old:
        fields = entry.split()
        if fields and not fields[0].startswith("#") and len(fields) > 1 and fields[1] == fstab_escape(path):
            if not placed:
                new.append(line)
                placed = True
            continue
        new.append(entry)
    if not placed:
        new.append(line)
    if new == old:
        return False
    if not module.check_mode:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(fstab) or ".", prefix=".fstab.")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(new) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, fstab)
    return True


def mount_device(path: str) -> tuple[int, int] | None:
    """major:minor of the filesystem mounted on ``path`` (the last mount there), or None."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for entry in f:
            fields = entry.split()
            if fields[4].encode().decode("unicode_escape") == path:
                major, minor = fields[2].split(":")
                found = (int(major), int(minor))
    return found


def backs(src: str, device: tuple[int, int]) -> bool:
    """Whether the filesystem on ``device`` comes from ``src`` (the device itself, or a loop on the file)."""
    st = os.stat(src)
    if stat.S_ISBLK(st.st_mode):
        return (os.major(st.st_rdev), os.minor(st.st_rdev)) == device
    backing = f"/sys/dev/block/{device[0]}:{device[1]}/loop/backing_file"
    try:
        with open(backing) as f:
            return os.path.realpath(f.read().strip()) == os.path.realpath(src)
    except OSError:
        return False


def ensure_image(module: AnsibleModule, src: str, size: str) -> bool:
    if os.path.exists(src):
        return False
    if not size:
        module.fail_json(msg=f"{src} does not exist (give a size to create an image file there)")
    if not module.check_mode:
        os.makedirs(os.path.dirname(src), exist_ok=True)
        with open(src, "wb") as f:
            f.truncate(human_to_bytes(size))
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "path": {"type": "path", "required": True},
            "size": {"type": "str", "default": ""},
            "opts": {"type": "str", "default": "defaults"},
            "mkfs_options": {"type": "list", "elements": "str", "default": ["-m", "reflink=1"]},
            "fstab": {"type": "path", "default": "/etc/fstab"},
        },
        supports_check_mode=True,
    )
    src, path = module.params["src"], module.params["path"].rstrip("/") or "/"
    device = mount_device(path)
    if device is None and os.path.isdir(path) and os.listdir(path):
        module.fail_json(msg=f"{path} is not empty: move its files away before mounting a filesystem there")
    changes = []
    if ensure_image(module, src, module.params["size"]):
        changes.append(f"created image file {src}")
        if module.check_mode:
            module.exit_json(changed=True, changes=changes)
    mode = os.stat(src).st_mode
    if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
        module.fail_json(msg=f"{src} is neither a block device nor a regular file")

    fstype = probe_fstype(module, src)
    if fstype == "":
        changes.append(f"made an XFS on {src}")
        if not module.check_mode:
            mkfs = module.get_bin_path("mkfs.xfs", required=True)
            module.run_command([mkfs, "-q", *module.params["mkfs_options"], src], check_rc=True)
    elif fstype != "xfs":
        module.fail_json(msg=f"{src} holds a {fstype} filesystem: refusing to format it as XFS")

    opts = module.params["opts"]
    if stat.S_ISREG(mode) and "loop" not in opts.split(","):
        opts += ",loop"
    line = f"{fstab_escape(src)} {fstab_escape(path)} xfs {opts} 0 0"
    if update_fstab(module, module.params["fstab"], path, line):
        changes.append(f"recorded the mount in {module.params['fstab']}")

    if device is None:
        changes.append(f"mounted {src} on {path}")
        if not module.check_mode:
            os.makedirs(path, exist_ok=True)
            mount = module.get_bin_path("mount", required=True)
            module.run_command([mount, "-t", "xfs", "-o", opts, src, path], check_rc=True)
    elif not backs(src, device):
        module.fail_json(msg=f"{path} is already a mount point of another filesystem (not {src})")
    module.exit_json(changed=bool(changes), changes=changes, src=src, path=path, fstab_line=line)


if __name__ == "__main__":
    main()
