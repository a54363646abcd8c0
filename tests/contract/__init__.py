"""The family contract (docs/design.md), one case module per family: ``tests/contract/<family>.py``."""
