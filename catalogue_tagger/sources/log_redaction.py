"""Keep AWS credentials out of botocore's DEBUG logs.

At DEBUG botocore logs whole requests: the ``Authorization`` header (with the access key id), the
``X-Amz-Security-Token`` header and the canonical request it signs (with the session token). The library
configures no handlers, but whoever turns DEBUG on (a user, an orchestrator) should not receive credentials, so
every ``botocore`` logger gets a filter that masks them before a record reaches any handler. The filter is
stateless (patterns, not the secret values) and installing it twice is a no-op.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_PATTERNS = (
    # Authorization: AWS4-HMAC-SHA256 Credential=AKIA…/20240101/us-east-1/s3/aws4_request
    re.compile(r"(Credential=)[^/\s,'\"]+"),
    # header dicts ('X-Amz-Security-Token': b'…') and canonical requests (x-amz-security-token:…)
    re.compile(r"(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}]+", re.IGNORECASE),
    # presigned URLs and query-string auth
    re.compile(r"((?:X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId)=)[^&\s'\"]+", re.IGNORECASE),
)


def redact(text: str) -> str:
    """``text`` with access key ids and session tokens masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class CredentialRedactor(logging.Filter):
    """Masks credentials in a record's message (formatted with its arguments, which are then dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def redact_botocore_logs() -> None:
    """Install :class:`CredentialRedactor` on every ``botocore`` logger that exists now (call after a client
    is made, when botocore's modules and their loggers are loaded). Filters act where a record is created, so each
    logger gets its own."""
    names = [n for n in logging.Logger.manager.loggerDict if n == "botocore" or n.startswith("botocore.")]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, CredentialRedactor) for f in logger.filters):
            logger.addFilter(CredentialRedactor())
