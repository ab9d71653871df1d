"""The data path drivers: attachers (loop, QSD FUSE/NBD, rbd), QMP, the Ceph connection and libvirt XML.

The service that records attachments and runs live operations is ``provider.services.datapath``."""
