"""The vmkeep appliance: engine, repository format, vSphere adapter and CLI."""
