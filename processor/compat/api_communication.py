"""
The original's tix-api client functions (compat spec §5): payload, URL and one POST through ``requests``.

The constants are read from the environment once, at import, as the original did; the service reads its own
configuration in :mod:`processor.config` instead.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from processor.delivery.payload import build_payload
from processor.delivery.tixapi import api_base_url, report_url

TIX_API_SSL = bool(os.environ.get("TIX_API_SSL"))  # C4 (D7): empty means HTTP, as in the service
TIX_API_HOST = os.environ.get("TIX_API_HOST", "localhost")
TIX_API_PORT = os.environ.get("TIX_API_PORT")
TIX_API_USER = os.environ.get("TIX_API_USER")
TIX_API_PASS = os.environ.get("TIX_API_PASSWORD")
TIX_API_URL_TEMPLATE = "{proto}://{api_host}/api/user/{user_id}/installation/{installation_id}/reports"

#: The payload keys of the original, in its order (the service adds the AS and the queueing shares after them).
API_KEYS = (
    "timestamp",
    "version",
    "upUsage",
    "upQuality",
    "downUsage",
    "downQuality",
    "hurstUpRs",
    "hurstUpWavelet",
    "hurstDownRs",
    "hurstDownWavelet",
    "ip",
)

#: Statuses that mean tix-api stored the measure, as the original counted them.
SUCCESS_STATUSES = (200, 204)

#: Ports never written in the URL, whatever the protocol (the original's rule).
IMPLICIT_PORTS = (80, 443)


def prepare_results_for_api(results: dict[str, Any], ip: str) -> dict[str, Any]:
    """The original's 11-key payload of a results dict; usage clamped to [0, 1] (C4: the service's D4)."""
    payload = build_payload(results, ip=ip, asn=None, as_owner=None)
    return {key: payload[key] for key in API_KEYS}


def prepare_url(
    user_id: Any,
    installation_id: Any,
    tix_api_ssl: Any = TIX_API_SSL,
    tix_api_host: str = TIX_API_HOST,
    tix_api_port: str | None = TIX_API_PORT,
) -> str:
    """
    The URL of an installation's reports: https when ``tix_api_ssl`` is truthy, else http.

    ``:port`` is written when a port is given and is neither 443 nor 80; an IPv6 host is bracketed (S9).
    """
    port = int(tix_api_port) if tix_api_port else None
    base = api_base_url(ssl=bool(tix_api_ssl), host=tix_api_host, port=None if port in IMPLICIT_PORTS else port)
    return report_url(base, str(user_id), str(installation_id))


def post_results(
    ip: str,
    results: dict[str, Any],
    user_id: Any,
    installation_id: Any,
    tix_api_user: str | None = TIX_API_USER,
    tix_api_pass: str | None = TIX_API_PASS,
) -> bool:
    """
    POST one result to tix-api with Basic auth; True when it answers 200 or 204.

    Without credentials no request is made and the answer is False; any other status, or a
    ``requests.RequestException``, also gives False.
    """
    if not tix_api_user or not tix_api_pass:
        return False
    try:
        response = requests.post(
            prepare_url(user_id, installation_id),
            json=prepare_results_for_api(results, ip),
            auth=(tix_api_user, tix_api_pass),
        )
    except requests.RequestException:
        return False
    return response.status_code in SUCCESS_STATUSES
