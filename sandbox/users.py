"""The portal's people: an admin and two ordinary users, one of them without CRM access.

Methods: `user.admin`, `user.current`, `profile` and `department.get`.
https://apidocs.bitrix24.com/api-reference/common/users/index.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.errors import ApiError
from sandbox.portal import CallContext, MethodResult

ADMIN_ID = 1


@dataclass(frozen=True)
class User:
    """A portal employee."""

    id: int
    name: str
    last_name: str
    email: str
    is_admin: bool
    crm_access: bool
    gender: str = ""


USERS: dict[int, User] = {
    1: User(1, "John", "Smith", "john.smith@example.com", True, True, gender="M"),
    2: User(2, "Mary", "Jones", "mary.jones@example.com", False, True, gender="F"),
    3: User(3, "Peter", "Brown", "peter.brown@example.com", False, False),
}

DEPARTMENT = {"ID": "1", "NAME": "Sandbox Ltd", "SORT": 500}


def user_by_id(user_id: int) -> User | None:
    """The user with this ID, or None."""
    return USERS.get(user_id)


def context_for(user_id: int, auth_kind: str) -> CallContext:
    """The CallContext of a request made as `user_id` (an unknown user has no rights)."""
    user = USERS.get(user_id)
    if user is None:
        return CallContext(user_id=user_id, is_admin=False, crm_access=False, auth_kind=auth_kind)
    return CallContext(
        user_id=user.id, is_admin=user.is_admin, crm_access=user.crm_access, auth_kind=auth_kind
    )


def _current(ctx: CallContext) -> User:
    user = USERS.get(ctx.user_id)
    if user is None:
        raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    return user


def user_admin(params: dict[str, Any], ctx: CallContext) -> MethodResult:
    """`user.admin`: true for a portal administrator."""
    return MethodResult(result=ctx.is_admin)


def user_current(params: dict[str, Any], ctx: CallContext) -> MethodResult:
    """`user.current`: the calling user's card (scope `user`)."""
    user = _current(ctx)
    return MethodResult(
        result={
            "ID": str(user.id),
            "ACTIVE": True,
            "NAME": user.name,
            "LAST_NAME": user.last_name,
            "EMAIL": user.email,
            "LAST_LOGIN": "2024-08-29T10:29:54+00:00",
            "DATE_REGISTER": "2023-08-24T03:00:00+00:00",
            "IS_ONLINE": "Y",
            "TIMESTAMP_X": "24.08.2023 13:19:39",
            "LAST_ACTIVITY_DATE": "2024-08-29 10:30:11",
            "PERSONAL_GENDER": user.gender,
            "PERSONAL_BIRTHDAY": "",
            "UF_EMPLOYMENT_DATE": "",
            "UF_DEPARTMENT": [1],
        }
    )


def profile(params: dict[str, Any], ctx: CallContext) -> MethodResult:
    """`profile`: the calling user's basics, no scope needed."""
    user = _current(ctx)
    return MethodResult(
        result={
            "ID": str(user.id),
            "ADMIN": user.is_admin,
            "NAME": user.name,
            "LAST_NAME": user.last_name,
            "PERSONAL_GENDER": user.gender,
            "TIME_ZONE": "",
        }
    )


def department_get(params: dict[str, Any], ctx: CallContext) -> MethodResult:
    """`department.get`: the portal's single department (filter by `ID` honoured)."""
    wanted = params.get("ID", params.get("id"))
    rows = [dict(DEPARTMENT)] if wanted in (None, "", "1", 1) else []
    return MethodResult(result=rows, total=len(rows))


METHODS = {
    "user.admin": user_admin,
    "user.current": user_current,
    "profile": profile,
    "department.get": department_get,
}
