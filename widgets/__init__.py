"""ipywidgets components of the operations dashboard. They call the allegro_ops service API;
allegro_ops never imports them."""
from __future__ import annotations

from typing import Any

__all__ = ["build_dashboard", "Dashboard"]


def __getattr__(name: str) -> Any:
    """Import the widgets on first use, so that widgets.view_state and widgets.views load without ipywidgets."""
    if name in __all__:
        from . import dashboard

        return getattr(dashboard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
