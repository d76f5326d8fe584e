"""vSphere adapter (pyvmomi): session and certificate pinning, inventory, snapshots, CBT, the VM
configuration a backup records, disk transports (reads from the VM's host with service
tickets, through the vCenter or from a mounted datastore; uploads), restore targets, the
Snapshot Hunter. Its public functions take a session, moref ids and our own values, and return
frozen values of its own: nothing ``vim.*`` leaves it (pyVmomi plumbing is in ``_vim``)."""
