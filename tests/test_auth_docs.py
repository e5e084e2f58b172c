"""README and docs/attachments.md tell users, step by step, how to get the credentials
zexport/net/auth.py reads: their TOML examples parse, and name what is read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zexport.net.auth import parse_auth

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("doc", ["README.md", "docs/attachments.md"])
def test_the_auth_examples_parse_and_the_steps_are_there(doc: str) -> None:
    text = (ROOT / doc).read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    creds = {}
    for block in blocks:
        if "[chatgpt]" in block or "[claude]" in block:  # not the plugin's pyproject.toml
            creds.update(parse_auth(block))
    assert "Authorization" in creds["chatgpt"].headers
    assert "sessionKey" in creds["claude"].cookies
    for step in ("Network", "backend-api", "Request Headers", "`Authorization`",
                 "Cookies", "`sessionKey`", "chmod 600", "--auth"):
        assert step in text, (doc, step)
