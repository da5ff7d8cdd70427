"""Tests of the original's ``processor.api_communication`` (compat spec §5), against a real HTTP server."""

from __future__ import annotations

import base64
import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import requests_mock

import processor.api_communication
from processor.compat import api_communication
from tests.fake_api import FakeApi

REPO = Path(__file__).resolve().parents[2]

RESULTS = {
    "timestamp": 1505082407,
    "upstream": {"usage": 1.345, "quality": 1.0, "hurst": {"wavelet": 0.3442388280788904, "rs": 0.7373934959045303}},
    "downstream": {"usage": 0.4327731092436975, "quality": 0.4, "hurst": {"wavelet": 1.052374173090101, "rs": 0.69}},
}

#: The payload's JSON types, as the original test's schema states them.
PAYLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "timestamp": {"type": "integer"},
        "version": {"type": "string"},
        "ip": {"type": "string"},
        **{key: {"type": "number", "minimum": 0, "maximum": 1} for key in
           ("upUsage", "upQuality", "downUsage", "downQuality")},
        **{key: {"type": "number"} for key in ("hurstUpRs", "hurstUpWavelet", "hurstDownRs", "hurstDownWavelet")},
    },
    "required": ["timestamp", "version", "ip", "upUsage", "upQuality", "downUsage", "downQuality", "hurstUpRs",
                 "hurstUpWavelet", "hurstDownRs", "hurstDownWavelet"],
}  # fmt: skip


def constants_with(env: dict[str, str]) -> dict:
    """The module's constants as a fresh interpreter reads them at import with ``env``."""
    code = (
        "import json; from processor import api_communication as a; print(json.dumps([a.TIX_API_SSL, a.TIX_API_HOST,"
        " a.TIX_API_PORT, a.TIX_API_USER, a.TIX_API_PASS]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return dict(zip(("ssl", "host", "port", "user", "password"), json.loads(done.stdout), strict=True))


class TestConstants:
    def test_defaults_with_an_empty_environment(self):
        assert {"ssl": False, "host": "localhost", "port": None, "user": None, "password": None} == constants_with({})

    def test_read_from_the_environment_at_import(self):
        env = {"TIX_API_SSL": "yes", "TIX_API_HOST": "tix.example.org", "TIX_API_PORT": "8443",
               "TIX_API_USER": "u", "TIX_API_PASSWORD": "p"}  # fmt: skip

        assert {"ssl": True, "host": "tix.example.org", "port": "8443", "user": "u", "password": "p"} == (
            constants_with(env)
        )

    def test_an_empty_ssl_variable_means_http(self):
        """C4 (D7): the original took a set-but-empty TIX_API_SSL for HTTPS."""
        assert False is constants_with({"TIX_API_SSL": ""})["ssl"]

    def test_url_template(self):
        assert "{proto}://{api_host}/api/user/{user_id}/installation/{installation_id}/reports" == (
            processor.api_communication.TIX_API_URL_TEMPLATE
        )


class TestPrepareResultsForApi:
    def test_has_the_11_keys_in_order_with_their_types(self):
        payload = api_communication.prepare_results_for_api(RESULTS, "203.0.113.45")

        assert list(api_communication.API_KEYS) == list(payload)
        jsonschema.validate(payload, PAYLOAD_SCHEMA)
        assert (1505082407, "1.0.0", "203.0.113.45") == (payload["timestamp"], payload["version"], payload["ip"])
        assert (0.4, 0.69, 1.052374173090101) == (payload["downQuality"], payload["hurstDownRs"],
                                                  payload["hurstDownWavelet"])  # fmt: skip

    def test_usage_is_clamped(self):
        """C4 (D4): the original posted 1.345 as is."""
        assert 1.0 == api_communication.prepare_results_for_api(RESULTS, "203.0.113.45")["upUsage"]


class TestPrepareUrl:
    @pytest.mark.parametrize(
        ("ssl", "host", "port", "url"),
        [
            (False, "localhost", None, "http://localhost/api/user/23/installation/41/reports"),
            (True, "tix.example.org", None, "https://tix.example.org/api/user/23/installation/41/reports"),
            (True, "tix.example.org", "443", "https://tix.example.org/api/user/23/installation/41/reports"),
            (False, "localhost", "80", "http://localhost/api/user/23/installation/41/reports"),
            (False, "localhost", "443", "http://localhost/api/user/23/installation/41/reports"),
            (True, "localhost", "80", "https://localhost/api/user/23/installation/41/reports"),
            (False, "tix-api", "3001", "http://tix-api:3001/api/user/23/installation/41/reports"),
            (1, "tix-api", "65536", "https://tix-api:65536/api/user/23/installation/41/reports"),
            (False, "::1", "3001", "http://[::1]:3001/api/user/23/installation/41/reports"),
        ],
    )
    def test_cases(self, ssl, host, port, url):
        """The original's rule: 443 and 80 are never written, whatever the protocol; no range check."""
        assert url == api_communication.prepare_url(23, 41, tix_api_ssl=ssl, tix_api_host=host, tix_api_port=port)

    def test_defaults_are_the_constants(self):
        assert api_communication.prepare_url("23", "41") == api_communication.prepare_url(
            "23", "41", api_communication.TIX_API_SSL, api_communication.TIX_API_HOST, api_communication.TIX_API_PORT
        )


@pytest.fixture
def api_module(request):
    """The module imported with TIX_API_HOST/PORT naming a fake tix-api on 127.0.0.1 (the original read them so)."""
    with FakeApi(admin_user="admin", admin_password="secret") as api:
        saved = dict(os.environ)
        os.environ.update(TIX_API_HOST="127.0.0.1", TIX_API_PORT=str(api.port))
        os.environ.pop("TIX_API_SSL", None)
        try:
            module = importlib.reload(api_communication)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield api, module
    importlib.reload(api_communication)


class TestPostResults:
    def post(self, module, **credentials):
        credentials = {"tix_api_user": "admin", "tix_api_pass": "secret"} | credentials
        return module.post_results("203.0.113.45", RESULTS, 23, 41, **credentials)

    def test_200_is_true_and_the_body_is_the_payload(self, api_module):
        api, module = api_module

        assert True is self.post(module)

        (record,) = api.records()
        payload = module.prepare_results_for_api(RESULTS, "203.0.113.45")
        assert "/api/user/23/installation/41/reports" == record["path"]
        assert json.dumps(payload) == record["body"]
        assert "Basic " + base64.b64encode(b"admin:secret").decode() == record["headers"]["Authorization"]
        assert "application/json" == record["headers"]["Content-Type"]
        assert [payload] == [r["json"] for r in api.accepted()]

    def test_204_is_true(self, api_module):
        api, module = api_module
        api.set_behaviour(status=204)

        assert True is self.post(module)

    @pytest.mark.parametrize("status", [403, 201, 500])
    def test_any_other_status_is_false(self, api_module, status):
        """K5: 200 and 204 only, as the original (the service also takes 201)."""
        api, module = api_module
        api.set_behaviour(status=status)

        assert False is self.post(module)
        assert 1 == len(api.records())

    def test_wrong_credentials_are_false(self, api_module):
        api, module = api_module

        assert False is self.post(module, tix_api_pass="wrong")
        assert [] == api.accepted()

    @pytest.mark.parametrize("credentials", [{"tix_api_user": None}, {"tix_api_pass": None}, {"tix_api_user": ""}])
    def test_no_credentials_is_false_without_a_request(self, api_module, credentials):
        api, module = api_module

        assert False is self.post(module, **credentials)
        assert [] == api.records()

    def test_a_connection_error_is_false(self, api_module):
        api, module = api_module
        api.set_behaviour(action="reset")

        assert False is self.post(module)

    def test_a_refused_connection_is_false(self, api_module, monkeypatch):
        _, module = api_module
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        monkeypatch.setattr(module, "prepare_url", lambda u, i: f"http://127.0.0.1:{port}/api/user/{u}/reports")

        assert False is self.post(module)


class TestWithRequestsMock:
    """The original's test_post_results intercepted the POST with requests_mock: it sees this one too."""

    def test_status_decides(self):
        url = api_communication.prepare_url(23, 41)
        with requests_mock.Mocker() as mock:
            mock.post(url, status_code=200)
            assert api_communication.post_results("203.0.113.45", RESULTS, 23, 41, "u", "p")
            payload = api_communication.prepare_results_for_api(RESULTS, "203.0.113.45")
            assert json.dumps(payload).encode() == mock.last_request.body
            mock.post(url, status_code=204)
            assert api_communication.post_results("203.0.113.45", RESULTS, 23, 41, "u", "p")
            mock.post(url, status_code=403)
            assert not api_communication.post_results("203.0.113.45", RESULTS, 23, 41, "u", "p")
            mock.post(url, exc=__import__("requests").exceptions.ConnectTimeout)
            assert not api_communication.post_results("203.0.113.45", RESULTS, 23, 41, "u", "p")

            assert 4 == mock.call_count
