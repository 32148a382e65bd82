"""Reads one message as the relay received it (after DATA, dot-stuffing undone) and prints
what a mail client would see, as JSON: the decoded headers and body (Python's `email`
package, policy=default), the raw header lines, and every RFC 2047 encoded-word in them."""

import email
import email.policy
import json
import pathlib
import re
import sys

raw = pathlib.Path(sys.argv[1]).read_bytes()
msg = email.message_from_bytes(raw, policy=email.policy.default)
head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
# Physical lines of the header section; a folded header spans several.
lines = head.split("\r\n")
encoded_words = re.findall(r"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=", head)
print(
    json.dumps(
        {
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "request": str(msg["x-nuc-request"]),
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "transfer_encoding": msg.get("content-transfer-encoding", ""),
            "mime_version": msg.get("mime-version", ""),
            "body": msg.get_content(),
            "defects": [repr(d) for d in msg.defects]
            + [repr(d) for h in msg.keys() for d in getattr(msg[h], "defects", ())],
            "header_lines": lines,
            "encoded_words": encoded_words,
        },
        ensure_ascii=False,
    )
)
