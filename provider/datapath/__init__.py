"""The data path: attach resources to hypervisors (block device, QEMU URI, libvirt XML) and run live
operations through what is attached."""

from provider.datapath.local import local_disk
from provider.datapath.model import Attachment

__all__ = ["Attachment", "local_disk"]
