"""The engine's jobs: each is a pure plan followed by an execute step."""
