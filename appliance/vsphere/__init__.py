"""vSphere adapter (pyvmomi): session and certificate pinning, inventory, snapshots, CBT, the VM
configuration a backup records, disk transport (reads and uploads), restore targets, the
Snapshot Hunter. Its public functions take a session, moref ids and our own values, and return
frozen values of its own: nothing ``vim.*`` leaves it (pyVmomi plumbing is in ``_vim``)."""
