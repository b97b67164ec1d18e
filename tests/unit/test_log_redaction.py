"""The botocore log filter masks access key ids and session tokens in the shapes botocore prints them."""

from __future__ import annotations

import logging

from catalogue_tagger.sources.log_redaction import CredentialRedactor, redact

KEY, TOKEN = "AKIAEXAMPLE123", "tok/en+with=chars"


def test_redact_masks_headers_canonical_requests_and_urls() -> None:
    samples = [
        f"headers={{'Authorization': b'AWS4-HMAC-SHA256 Credential={KEY}/20240101/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host, Signature=abc', 'X-Amz-Security-Token': b'{TOKEN}'}}",
        f"CanonicalRequest:\nGET\n/b/k\n\nhost:127.0.0.1\nx-amz-security-token:{TOKEN}\n",
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential={KEY}%2F2024&X-Amz-Security-Token={TOKEN}&X-Amz-Signature=1",
    ]
    for text in samples:
        masked = redact(text)
        assert KEY not in masked and TOKEN not in masked, masked
        assert "***" in masked


def test_filter_rewrites_the_record_and_keeps_it() -> None:
    record = logging.LogRecord("botocore.endpoint", logging.DEBUG, __file__, 1, "Sending %s", (f"Credential={KEY}/x",),
                               None)
    assert CredentialRedactor().filter(record)
    assert KEY not in record.getMessage()
