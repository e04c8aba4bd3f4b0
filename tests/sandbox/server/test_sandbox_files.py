"""A custom-field file's downloadUrl serves its bytes to a caller with CRM scope, over HTTP."""

from __future__ import annotations

import base64

import requests

from sandbox.server import Sandbox
from tests.sandbox.server.conftest import call


def test_download_url_serves_the_file_with_the_callers_auth() -> None:
    """File values read as {id, showUrl, downloadUrl}; the URL needs the caller's auth."""
    with Sandbox(plan="fast") as portal:
        hook = portal.webhook_url
        call(hook, "crm.lead.userfield.add", fields={"FIELD_NAME": "F", "USER_TYPE_ID": "file"})
        body = base64.b64encode(b"%PDF-1.4 brief").decode()
        lead_id = call(
            hook, "crm.lead.add", fields={"TITLE": "L", "UF_CRM_F": {"fileData": ["b.pdf", body]}}
        ).json()["result"]
        value = call(hook, "crm.lead.get", id=lead_id).json()["result"]["UF_CRM_F"]
        path = value["downloadUrl"].removeprefix("/rest/")

        got = requests.get(hook + path, timeout=10)
        anonymous = requests.get(f"{portal.base_url}{value['downloadUrl']}", timeout=10)

    assert got.status_code == 200 and got.content == b"%PDF-1.4 brief"
    assert "b.pdf" in got.headers["Content-Disposition"]
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "NO_AUTH_FOUND"
