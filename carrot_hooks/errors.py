"""Client-facing errors raised by the gateway stages; LiteLLM turns them into HTTP responses."""

from fastapi import HTTPException


class GatewayError(HTTPException):
    """An HTTP error whose message names what was wrong (header, field, limit, rule)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str = "invalid_request",
                 headers: dict[str, str] | None = None):
        detail = {"error": {"message": message, "type": code, "param": param, "code": str(status)}}
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.message = message


def bad_header(name: str, value: str, allowed: list[str]) -> GatewayError:
    """400 for an unknown header value, listing the allowed ones."""
    return GatewayError(
        400,
        f"Invalid {name} header: allowed values are {', '.join(allowed)}",  # never echo it: could be a token
        param=name,
    )


def no_fim_deployment(where: str) -> GatewayError:
    """400 for a /v1/completions request `where` ("routed to X (rule R)") names a model without a FIM twin."""
    return GatewayError(400, f"{where}, which has no fill-in-the-middle deployment (policy/routing.yaml: fim); use "
                        "/v1/chat/completions", param="model", code="no_fim_deployment")


def http_status(exc: BaseException) -> int:
    """The HTTP status an exception answers with: `status_code`, or LiteLLM's ProxyException `code` ("401")."""
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    return 500
