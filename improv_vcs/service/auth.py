"""Bearer tokens with ``read`` and ``write`` scopes (``write`` includes
``read``), from a JSON file or an environment variable:

    {"tokens": [{"name": "ingest", "sha256": "<hex of the token>", "scopes": ["write"]},
                {"name": "dashboard", "token": "<the token>", "scopes": ["read"]}]}

Prefer ``sha256`` (the file then holds no secret). Presented tokens are
hashed and compared in constant time; tokens are never logged or echoed.
Anonymous reading is off unless asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import InvalidInputError
from ..core.http import AuthError

Scope = Literal["read", "write"]
TOKENS_ENV = "IMPROV_SERVE_TOKENS"


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    token: str | None = Field(default=None, min_length=16)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_secret(self) -> TokenEntry:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give either token or sha256")
        return self

    @property
    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.token.encode()).hexdigest()  # type: ignore[union-attr]


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: tuple[TokenEntry, ...] = ()


class Access:
    """Who may do what."""

    def __init__(self, entries: tuple[TokenEntry, ...] = (), anonymous_read: bool = False):
        self._entries = [(bytes.fromhex(e.digest), e.name, set(e.scopes)) for e in entries]
        self.anonymous_read = anonymous_read

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, anonymous_read: bool = False
    ) -> Access:
        """Tokens from ``path``, else from ``$IMPROV_SERVE_TOKENS`` (JSON), else none."""
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidInputError(
                    f"cannot read the tokens file {path}: {exc.strerror or exc}"
                ) from None
        else:
            text = os.environ.get(TOKENS_ENV, "")
        if not text.strip():
            return cls((), anonymous_read)
        try:
            parsed = TokensFile.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            where = path or f"${TOKENS_ENV}"
            first = (
                exc.errors()[0]["msg"]
                if isinstance(exc, ValidationError)
                else str(exc).splitlines()[0]
            )
            raise InvalidInputError(f"the tokens in {where} are invalid: {first}") from None
        return cls(parsed.tokens, anonymous_read)

    @property
    def configured(self) -> bool:
        return bool(self._entries) or self.anonymous_read

    def check(self, authorization: str | None, scope: Scope) -> str:
        """The name of the caller allowed ``scope``, or :class:`AuthError`
        (401 without valid credentials, 403 without the scope)."""
        if authorization is None:
            if scope == "read" and self.anonymous_read:
                return "anonymous"
            raise AuthError("this server needs a bearer token (Authorization: Bearer …)", 401)
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise AuthError("use 'Authorization: Bearer <token>'", 401)
        presented = hashlib.sha256(token.strip().encode()).digest()
        for digest, name, scopes in self._entries:
            if hmac.compare_digest(presented, digest):
                if scope in scopes or (scope == "read" and "write" in scopes):
                    return name
                raise AuthError(f"this token may not {scope}", 403)
        raise AuthError("unknown token", 401)
