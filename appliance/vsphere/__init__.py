"""vSphere adapter (pyvmomi): inventory, snapshots, CBT, disk transport. Nothing `vim.*` leaves
this package. Built in the vSphere issue; the package exists now so the import contracts hold."""
