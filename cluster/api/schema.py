"""The OpenAPI schema's error answers, added to every operation that can give them.

drf-spectacular documents the success code of each operation only. This
``AutoSchema`` adds, from what the operation itself declares:

- 400 (a field's rule, a malformed body or query parameter) where there is a
  request body or a query parameter;
- 401 (no or bad credentials) where the view authenticates;
- 403 (the role may not) where the view checks a permission;
- 404 where a path names an object, or ``?page=`` may be past the end;
- 429 where the view throttles.

The bodies are DRF's, as ``cluster.api.exceptions`` shapes them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What went wrong."}},
    "required": ["detail"],
}
MESSAGES = {"type": "array", "items": {"type": "string"}}
FIELD_ERRORS = {
    "type": "object",
    "description": (
        "Each field (or query parameter) that is wrong, with its rules' messages; "
        "non_field_errors for the request as a whole. A body that could not be read "
        "at all (malformed or too deeply nested JSON) gets detail instead."
    ),
    "properties": {"detail": {"type": "string"}, "non_field_errors": MESSAGES},
    "additionalProperties": MESSAGES,
}
COMPONENTS = {"ErrorDetail": DETAIL, "ValidationError": FIELD_ERRORS}
ERRORS = {
    "400": ("ValidationError", "The request breaks a rule; nothing was changed."),
    "401": ("ErrorDetail", "No credentials, or wrong ones."),
    "403": ("ErrorDetail", "The user's role may not do this."),
    "404": ("ErrorDetail", "No such object, or no such page."),
    "429": ("ErrorDetail", "Too many requests; retry after Retry-After seconds."),
}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        query = {p["name"] for p in parameters if p.get("in") == "query"}
        codes = {
            "400": "requestBody" in operation or bool(query),
            "401": bool(self.view.get_authenticators()),
            "403": self._needs_permission(),
            "404": any(p.get("in") == "path" for p in parameters) or "page" in query,
            "429": bool(self.view.get_throttles()),
        }
        responses = operation["responses"]
        for code, applies in codes.items():
            if applies and code not in responses:
                responses[code] = self._error_response(code)
        return operation

    def _needs_permission(self) -> bool:
        return any(not isinstance(p, AllowAny) for p in self.view.get_permissions())

    def get_auth(self) -> list[dict[str, Any]]:
        auths: list[dict[str, Any]] = super().get_auth()
        if not self._needs_permission():
            # A view open to all (the token endpoint) needs no credentials.
            auths.append({})
        return auths

    def _error_response(self, code: str) -> dict[str, Any]:
        name, description = ERRORS[code]
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=COMPONENTS[name]
        )
        self.registry.register_on_missing(component)
        return {
            "description": description,
            "content": {"application/json": {"schema": component.ref}},
        }
