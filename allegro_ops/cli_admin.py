"""Workspace administration commands: backup and restore (registered on the main CLI group)."""
from __future__ import annotations
