"""vSphere adapter (pyvmomi): session and certificate pinning, inventory, snapshots, CBT, disk
transport (reads and uploads), restore targets, the Snapshot Hunter. It returns frozen values of
its own, with one exception: `jobs/vm_backup.py` reads a VM's devices and configuration from the
pyVmomi VM object itself (issue 12 lists it)."""
