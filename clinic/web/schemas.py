"""Base classes for API request and response schemas (declared once; validated and documented)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Input(BaseModel):
    """Request bodies and queries: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorBody(Output):
    code: str
    message: str
    fields: dict[str, str] = {}


class ErrorEnvelope(Output):
    error: ErrorBody


class Ok(Output):
    ok: bool = True


T = TypeVar("T")


class Page(Output, Generic[T]):
    items: list[T]
