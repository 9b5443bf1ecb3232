"""allegro-ops: operate dated batch job schedules.

The public API is the Workspace (one method per operator action), the status enums and the
typed errors. Widgets, the CLI and notebooks use only these names.
"""
from .errors import ActionRefused, AllegroOpsError, BadInput, InvalidConfig, NotFound, StoreBusy, WorkItemError
from .jobs import ItemInput, JobContext, JobType, register
from .service import Workspace, parse_date
from .states import ExecutionStatus, JobAction, JobStatus, Phase, ScheduleAction, WorkItemStatus

__all__ = [
    "Workspace",
    "parse_date",
    "ExecutionStatus",
    "JobStatus",
    "WorkItemStatus",
    "Phase",
    "ScheduleAction",
    "JobAction",
    "AllegroOpsError",
    "BadInput",
    "NotFound",
    "InvalidConfig",
    "ActionRefused",
    "StoreBusy",
    "WorkItemError",
    "JobType",
    "JobContext",
    "ItemInput",
    "register",
]
__version__ = "0.1.0"
