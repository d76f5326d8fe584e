"""The repository: on-disk format (packs, manifests, object files), locks and storage backends.

Knows nothing of vSphere, guests or the catalog. ``docs/FORMAT.md`` is its specification.
"""
