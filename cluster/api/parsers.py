"""The API's JSON parser: a body nested too deeply is a 400, not a 500.

Python's ``json`` decodes arrays and objects recursively, so a body of
100,000 ``[`` raises ``RecursionError``, which DRF's parser lets through (it
catches only ``ValueError``): every such request was a 500 with a traceback
in the log. This parser is the API's default (``REST_FRAMEWORK``); views whose
library fixes their own parsers (DRF's token view) get the same answer from
``cluster.api.exceptions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

BODY_TOO_DEEP = "JSON parse error - the request body nests arrays or objects too deeply."


def body_too_deep() -> ParseError:
    return ParseError(BODY_TOO_DEEP)


class JSONParser(parsers.JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise body_too_deep() from None
