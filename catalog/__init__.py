"""vmkeep's DuckDB catalog: the index of repositories, restore points, packs and blocks.

Imports nothing of vmkeep's own; everything it returns is a frozen dataclass of its own.
"""
