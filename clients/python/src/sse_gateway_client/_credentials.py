"""Credentials the app holds. They travel in request headers only, never in a URL, and their
`repr` hides the secret."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Bearer:
    """A JWT (or an API key) sent as `Authorization: Bearer TOKEN`."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key sent as `X-API-Key: KEY`."""

    key: str = field(repr=False)


Credential = Bearer | ApiKey


def credential_headers(credential: Credential | None) -> dict[str, str]:
    """The request headers that present `credential` (none for `None`)."""
    if isinstance(credential, Bearer):
        return {"Authorization": f"Bearer {credential.token}"}
    if isinstance(credential, ApiKey):
        return {"X-API-Key": credential.key}
    return {}
