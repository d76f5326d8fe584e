"""Guest processing over SSH (quiescence scripts, WAL collection). Built in the guest-processing
issue; the package exists now so the import contracts hold."""
