"""Layer 3: turning traces and reports into text. Nothing here computes a number."""

from enum import StrEnum


class Format(StrEnum):
    """Output formats shared by every tabular command and the Python API."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
