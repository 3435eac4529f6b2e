"""Users and roles. Passwords are hashed with Argon2id (argon2-cffi); there is no default
password: the first admin comes from STUDIO_ADMIN_PASSWORD or gets a printed one-time password."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from backend.runtime import Runtime
from db.schema import ROLES, User

_hasher = PasswordHasher()
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
MIN_PASSWORD = 8


class UserError(ValueError):
    """Bad user input (unknown user, taken name, weak password...)."""


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _info(u: User) -> UserInfo:
    return UserInfo(u.id, u.name, u.role)


def add_user(rt: Runtime, name: str, password: str, role: str = "rater") -> UserInfo:
    if not NAME_RE.match(name or ""):
        raise UserError("user name must be 2-64 letters, digits or _ . @ -")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    with rt.store.session() as s:
        if s.scalar(select(User).where(User.name == name)):
            raise UserError(f"user {name!r} already exists")
        user = User(name=name, password_hash=_hasher.hash(password), role=role)
        s.add(user)
        s.flush()
        return _info(user)


def authenticate(rt: Runtime, name: str, password: str) -> UserInfo | None:
    """The user if name and password match an active account, else None (same for both cases)."""
    with rt.store.session() as s:
        user = s.scalar(select(User).where(User.name == name, User.active))
        if user is None:
            _hasher.hash("timing-equalizer")  # do the same work as a real check
            return None
        try:
            _hasher.verify(user.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            return None
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        return _info(user)


def get_user(rt: Runtime, user_id: int) -> UserInfo | None:
    with rt.store.session() as s:
        user = s.get(User, user_id)
        return _info(user) if user and user.active else None


def find_user(rt: Runtime, name: str) -> UserInfo:
    with rt.store.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserError(f"unknown user {name!r}")
        return _info(user)


def list_users(rt: Runtime) -> list[dict]:
    with rt.store.session() as s:
        rows = s.scalars(select(User).order_by(User.id)).all()
        return [
            {"id": u.id, "name": u.name, "role": u.role, "active": u.active,
             "created_at": u.created_at}
            for u in rows
        ]


def set_role(rt: Runtime, name: str, role: str) -> UserInfo:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    with rt.store.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserError(f"unknown user {name!r}")
        if user.role == "admin" and role != "admin" and _admin_count(s) <= 1:
            raise UserError("cannot demote the last admin")
        user.role = role
        return _info(user)


def set_password(rt: Runtime, name: str, password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    with rt.store.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserError(f"unknown user {name!r}")
        user.password_hash = _hasher.hash(password)


def _admin_count(s) -> int:
    return s.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.active))


def ensure_first_admin(rt: Runtime) -> str | None:
    """Create the first admin if there is none. Returns a one-time password to print, or None.

    Name from STUDIO_ADMIN_USER (default "admin"); password from STUDIO_ADMIN_PASSWORD, else a
    random one shown once (change it with `python -m backend users passwd`)."""
    with rt.store.session() as s:
        if _admin_count(s):
            return None
    name = os.environ.get("STUDIO_ADMIN_USER", "admin")
    password = os.environ.get("STUDIO_ADMIN_PASSWORD")
    one_time = None
    if not password:
        one_time = password = secrets.token_urlsafe(12)
    add_user(rt, name, password, role="admin")
    return one_time
