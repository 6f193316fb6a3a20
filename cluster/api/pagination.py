from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    """``?page=N`` and ``?page_size=N`` (up to 1000, enough for 255 aliases at once)."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    def __init__(self) -> None:
        self.page_size = settings.API_PAGE_SIZE
