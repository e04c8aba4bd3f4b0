"""The error a sandbox method raises; the wire layer renders it as Bitrix24 does."""

from __future__ import annotations


class ApiError(Exception):
    """A Bitrix24 REST error: `{"error": code, "error_description": description}` with `status`.

    https://apidocs.bitrix24.com/api-reference/common/system/error-codes.html
    """

    def __init__(self, code: str, description: str = "", status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body Bitrix24 sends for this error."""
        return {"error": self.code, "error_description": self.description}
