from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class StandardPagination(PageNumberPagination):
    """``?page=N`` and ``?page_size=N`` (up to 1000, enough for 255 aliases at once).

    A ``page_size`` that is not a whole number from 1 to 1000 is a 400 naming
    it: DRF's own pagination quietly used the default size instead (for
    ``-2.00001``, ``0`` or ``abc``) and cut 5000 down to 1000, so a client
    never learned that it asked for something else than it got.
    """

    page_size_query_param = "page_size"
    max_page_size = 1000
    page_size_message = f"Page size must be a whole number between 1 and {max_page_size}."

    def __init__(self) -> None:
        self.page_size = settings.API_PAGE_SIZE

    def get_page_size(self, request: Request) -> int | None:
        text = request.query_params.get(self.page_size_query_param)
        if text is None:
            return self.page_size
        try:
            size = int(text)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [self.page_size_message]})
        return size

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        # DRF reads an empty ``?page=`` as the first page; it is not a page number.
        if request.query_params.get(self.page_query_param) == "":
            raise ValidationError({self.page_query_param: [self.page_message]})
        return super().paginate_queryset(queryset, request, view)

    page_message = "Page must be a whole number from 1."

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(
                    minimum=1, maximum=self.max_page_size, default=self.page_size
                )
        return parameters
