"""The one error type the service raises for anything a client did wrong (or that is unavailable).

The api turns it into ``{"error": {"code", "message", "target"}}`` with its status.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


def bad_request(code: str, message: str, target: str | None = None) -> ApiError:
    return ApiError(400, code, message, target)


def unprocessable(code: str, message: str, target: str | None = None) -> ApiError:
    return ApiError(422, code, message, target)


def not_found(code: str, message: str, target: str | None = None) -> ApiError:
    return ApiError(404, code, message, target)


def conflict(code: str, message: str, target: str | None = None) -> ApiError:
    return ApiError(409, code, message, target)
