"""How S3 failures are classified: server-side trouble is 'unavailable', not a user mistake."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from approvals.registry import NotFoundError, RegistryError, UnavailableError
from approvals.registry.store import ObjectStore


class _FailingClient:
    """An S3 client whose every GetObject answers with one error response."""

    def __init__(self, code: str, status: int) -> None:
        self.response: Any = {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    def get_object(self, **kwargs: Any) -> Any:
        raise ClientError(self.response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503), ("", 502)],
)
def test_server_side_failures_are_unavailable(code: str, status: int) -> None:
    store = ObjectStore(_FailingClient(code, status), "models")  # type: ignore[arg-type]
    with pytest.raises(UnavailableError, match="failed"):
        store.get("registry/versions/v1.json")


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [("AccessDenied", 403, RegistryError), ("NoSuchBucket", 404, NotFoundError)],
)
def test_client_side_failures_stay_user_errors(code: str, status: int, kind: type) -> None:
    store = ObjectStore(_FailingClient(code, status), "models")  # type: ignore[arg-type]
    with pytest.raises(kind) as info:
        store.get("registry/versions/v1.json")
    assert not isinstance(info.value, UnavailableError), f"{code} is for the user to fix"
