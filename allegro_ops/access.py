"""Who is acting and in which role.

The actor is what the audit log names: ``ALLEGRO_OPS_ACTOR`` when set (the scheduler sets
``scheduler``), else the JupyterHub user (``JUPYTERHUB_USER``, set by the hub for a user's
server), else the OS user.

The role (viewer or operator) comes from the workspace's ``access.yaml`` when it exists::

    default: viewer          # role of users not listed (viewer when omitted)
    users:
      alice: operator
      bob: viewer

The user looked up there is the JupyterHub user, else the OS user. The environment variable
``ALLEGRO_OPS_ROLE`` may lower that role to viewer, never raise it. Without access.yaml the
environment variable decides, and a workspace with neither belongs to its user: operator.
"""
from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, InvalidConfig
from .states import Role
from .yaml_files import read_mapping

__all__ = ["Access", "resolve_access", "ROLE_ENV", "ACCESS_FILE"]

ROLE_ENV = "ALLEGRO_OPS_ROLE"
ACTOR_ENV = "ALLEGRO_OPS_ACTOR"
HUB_USER_ENV = "JUPYTERHUB_USER"
ACCESS_FILE = "access.yaml"


@dataclass(frozen=True)
class Access:
    actor: str  # who the audit log names
    user: str  # who the role was looked up for
    role: Role
    source: str  # where the role came from, for messages and the dashboard

    def to_dict(self) -> dict[str, str]:
        return {"actor": self.actor, "user": self.user, "role": self.role.value, "source": self.source}


def parse_role(value: str, source: str) -> Role:
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        raise BadInput(f"bad role {value!r} in {source}: expected viewer or operator") from None


def resolve_access(home: str | Path, env: Mapping[str, str] | None = None, actor: str | None = None) -> Access:
    """The actor and role for a workspace, from the environment and <home>/access.yaml."""
    env = os.environ if env is None else env
    user = env.get(HUB_USER_ENV) or os_user()
    actor = actor or env.get(ACTOR_ENV) or user
    wanted = parse_role(env[ROLE_ENV], ROLE_ENV) if env.get(ROLE_ENV) else None
    path = Path(home) / ACCESS_FILE
    if not path.exists():
        if wanted is None:
            return Access(actor, user, Role.OPERATOR, "default (no access.yaml, no ALLEGRO_OPS_ROLE)")
        return Access(actor, user, wanted, ROLE_ENV)
    granted, source = _mapped_role(path, user)
    if wanted is Role.VIEWER and granted is Role.OPERATOR:
        return Access(actor, user, Role.VIEWER, f"{ROLE_ENV} (lowered from {source})")
    return Access(actor, user, granted, source)


def _mapped_role(path: Path, user: str) -> tuple[Role, str]:
    data = read_mapping(path, "a mapping with 'default' and 'users'")
    unknown = set(data) - {"default", "users"}
    if unknown:
        raise InvalidConfig(str(path), sorted(map(str, unknown))[0], "unknown key (expected default, users)")
    users = data.get("users") or {}
    if not isinstance(users, dict):
        raise InvalidConfig(str(path), "users", "expected a mapping of user names to roles")
    if user in users:
        return _role_in(users[user], path, f"users.{user}"), f"{ACCESS_FILE} (user {user})"
    default = data.get("default", Role.VIEWER.value)
    return _role_in(default, path, "default"), f"{ACCESS_FILE} (default for {user})"


def _role_in(value: object, path: Path, field: str) -> Role:
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        raise InvalidConfig(str(path), field, f"bad role {value!r}: expected viewer or operator") from None


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
