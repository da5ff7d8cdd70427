"""Tests of processor.delivery.tixapi against a real HTTP server on 127.0.0.1 playing tix-api (tests/fake_api.py)."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import socket
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from processor import __version__
from processor.config import Config
from processor.delivery import open_delivery
from processor.delivery.payload import build_payload, encode_json
from processor.delivery.tixapi import MAX_ANSWER_BYTES, ApiClient, api_base_url
from processor.errors import ApiRejected, ApiUnavailable
from tests.fake_api import HUGE_BODY_BYTES, Behaviour, FakeApi

USER, PASSWORD = "admin", "s3cr3t:pass"

RESULTS = {
    "timestamp": 1700001139,
    "upstream": {"usage": 1.25, "quality": 0.75, "hurst": {"wavelet": 0.81, "rs": 0.64612805}},
    "downstream": {"usage": -0.125, "quality": 1.0, "hurst": {"wavelet": 0.5, "rs": 0.55}},
}


def wait_for_records(api: FakeApi, count: int, timeout_s: float = 10.0) -> list[dict]:
    """The fake stores a record when its handler finishes, which can be after the client gave up."""
    deadline = time.monotonic() + timeout_s
    while len(api.records()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return api.records()


class RecordingSleep:
    """Replaces the waits between attempts; records what the client asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with FakeApi(admin_user=USER, admin_password=PASSWORD, users={"alice": ("pw", "5")}) as api:
        yield api


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def client_for(api: FakeApi, sleep: RecordingSleep, *, timeout_s: float = 5.0, **kw) -> ApiClient:
    options = {"user": USER, "password": PASSWORD, "timeout_s": timeout_s, "sleep": sleep, **kw}
    return ApiClient(api.base_url, **options)


def payload() -> dict:
    return build_payload(RESULTS, ip="203.0.113.45", asn=64500, as_owner="EXAMPLE-NET - Example Networks, AR")


class TestUrl:
    @pytest.mark.parametrize(
        ("ssl", "host", "port", "expected"),
        [
            (False, "tix-api", 3001, "http://tix-api:3001"),
            (True, "tix.example.org", None, "https://tix.example.org"),
            (True, "tix.example.org", 443, "https://tix.example.org"),
            (False, "localhost", 80, "http://localhost"),
            (False, "localhost", 443, "http://localhost:443"),
            (False, "::1", 3001, "http://[::1]:3001"),
        ],
    )
    def test_base_url_follows_the_table_of_the_specification(self, ssl, host, port, expected):
        """service.md §5.1."""
        assert api_base_url(ssl=ssl, host=host, port=port) == expected

    def test_report_url_of_a_configured_client(self):
        config = Config.from_env({"TIX_API_HOST": "tix-api", "TIX_API_PORT": "3001"})

        client = ApiClient.from_config(config)

        assert client.report_url("23", "41") == "http://tix-api:3001/api/user/23/installation/41/reports"

    def test_client_repr_does_not_show_the_password(self):
        client = ApiClient("http://x", user=USER, password=PASSWORD, timeout_s=1)

        assert PASSWORD not in repr(client)


def _post_from_a_new_delivery(config: Config, installation_id: str) -> None:
    """What a pool child does: open its delivery (``worker_process_init``), then POST."""
    open_delivery(config).api.post("23", installation_id, payload())


class TestSuccess:
    def test_post_sends_headers_auth_and_body(self, fake_api, sleep):
        client = client_for(fake_api, sleep)

        result = client.post("23", "41", payload())

        (record,) = fake_api.records()
        assert (result.status, result.attempts) == (200, 1)
        assert result.url == f"{fake_api.base_url}/api/user/23/installation/41/reports"
        assert record["accepted"] is True
        assert (record["user_id"], record["installation_id"]) == ("23", "41")
        expected_auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert record["headers"]["Authorization"] == expected_auth
        assert record["headers"]["Content-Type"] == "application/json"
        assert record["headers"]["Accept"] == "application/json"
        assert record["headers"]["User-Agent"] == f"tix-time-processor/{__version__}"
        assert record["body"] == encode_json(payload()).decode("utf-8")

    @pytest.mark.parametrize("status", [201, 204])
    def test_201_and_204_count_as_success(self, fake_api, sleep, status):
        fake_api.set_behaviour(status=status)

        result = client_for(fake_api, sleep).post("23", "41", payload())

        assert result.status == status
        assert len(fake_api.accepted()) == 1

    def test_slow_answer_within_the_timeout_succeeds(self, fake_api, sleep):
        fake_api.set_behaviour(delay_s=0.3)

        result = client_for(fake_api, sleep, timeout_s=5.0).post("23", "41", payload())

        assert result.status == 200

    def test_consecutive_posts_reuse_one_keep_alive_connection(self, fake_api, sleep):
        client = client_for(fake_api, sleep)

        client.post("23", "41", payload())
        client.post("23", "42", payload())

        first, second = fake_api.records()
        assert first["client_port"] == second["client_port"]

    def test_the_delivery_of_a_process_posts_through_one_session_and_one_connection(self, fake_api):
        """One ``requests.Session`` per process (§5.3): the server sees both POSTs on one TCP connection."""
        config = Config.from_env(
            {"TIX_API_PORT": str(fake_api.port), "TIX_API_USER": USER, "TIX_API_PASSWORD": PASSWORD}
        )
        delivery = open_delivery(config)
        try:
            delivery.api.post("23", "41", payload())
            delivery.api.post("23", "42", payload())
        finally:
            delivery.close()

        assert 1 == len({record["client_port"] for record in fake_api.records()})
        assert 2 == len(fake_api.accepted())

    def test_the_delivery_opened_in_a_forked_process_has_its_own_connection(self, fake_api, sleep):
        """§5.3: each process makes its session with ``open_delivery`` after the fork; none is inherited."""
        client = client_for(fake_api, sleep)
        client.post("23", "41", payload())
        config = Config.from_env(
            {"TIX_API_PORT": str(fake_api.port), "TIX_API_USER": USER, "TIX_API_PASSWORD": PASSWORD}
        )
        context = multiprocessing.get_context("fork")
        process = context.Process(target=_post_from_a_new_delivery, args=(config, "42"))

        process.start()
        process.join(30)

        records = wait_for_records(fake_api, 2)
        assert process.exitcode == 0
        assert [r["installation_id"] for r in records] == ["41", "42"]
        assert records[0]["client_port"] != records[1]["client_port"]

    def test_proxy_variables_are_not_used(self, fake_api, sleep, monkeypatch):
        """tix-api is reached directly: a proxy named in the environment (nothing listens there) is ignored."""
        for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(variable, "http://127.0.0.1:9")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        result = client_for(fake_api, sleep).post("23", "41", payload())

        assert result.status == 200
        assert len(fake_api.records()) == 1

    def test_fence_is_called_before_the_request(self, fake_api, sleep):
        calls = []

        client_for(fake_api, sleep).post("23", "41", payload(), fence=lambda: calls.append(len(fake_api.records())))

        assert calls == [0]

    def test_the_client_remembers_when_tix_api_last_accepted_a_post(self, fake_api, sleep):
        """H9: a 2xx within the last processing period shows the API up to every run of the process."""
        client = client_for(fake_api, sleep)
        fake_api.set_behaviour(status=500, installation="23/41")
        with pytest.raises(ApiUnavailable):
            client.post("23", "41", payload())
        refused_only = client.succeeded_within(600.0)

        before = time.monotonic()
        client.post("23", "42", payload())

        assert (False, True) == (refused_only, client.succeeded_within(600.0))
        assert client.last_success_s is not None and before <= client.last_success_s <= time.monotonic()
        time.sleep(0.02)
        assert not client.succeeded_within(0.01)  # longer ago than the period


class TestFailures:
    def test_wrong_credentials_are_rejected_once_with_an_error_log_and_no_secret(self, fake_api, sleep, caplog):
        client = ApiClient(fake_api.base_url, user=USER, password="wrong-password", timeout_s=5, sleep=sleep)

        with (
            caplog.at_level(logging.DEBUG, logger="processor.delivery.tixapi"),
            pytest.raises(ApiUnavailable) as caught,
        ):
            client.post("23", "41", payload())

        assert (caught.value.reason, caught.value.status, caught.value.attempts) == ("credentials_rejected", 401, 1)
        assert len(fake_api.records()) == 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage().split(" url=")[0] for r in errors] == ["tix-api rejected the credentials"]
        rendered = " ".join(r.getMessage() for r in caplog.records)
        assert "wrong-password" not in rendered
        assert "Basic " not in rendered

    def test_non_admin_user_posting_for_another_user_is_rejected(self, fake_api, sleep):
        client = ApiClient(fake_api.base_url, user="alice", password="pw", timeout_s=5, sleep=sleep)

        with pytest.raises(ApiUnavailable) as caught:
            client.post("23", "41", payload())

        assert (caught.value.reason, caught.value.status) == ("credentials_rejected", 401)
        assert client.post("5", "1", payload()).status == 200

    def test_403_is_a_credentials_failure(self, fake_api, sleep):
        fake_api.set_behaviour(status=403)

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert (caught.value.reason, caught.value.attempts) == ("credentials_rejected", 1)

    @pytest.mark.parametrize("status", [400, 409, 413, 422])
    def test_content_rejection_is_not_retried_and_keeps_the_api_usable(self, fake_api, sleep, status):
        fake_api.set_behaviour(status=status)

        with pytest.raises(ApiRejected) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert (caught.value.reason, caught.value.status, caught.value.attempts) == ("content_rejected", status, 1)
        assert not isinstance(caught.value, ApiUnavailable)
        assert len(fake_api.records()) == 1
        assert sleep.waits == []

    @pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
    def test_server_errors_are_tried_three_times(self, fake_api, sleep, status):
        fake_api.set_behaviour(status=status)

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert (caught.value.reason, caught.value.status, caught.value.attempts) == ("server_error", status, 3)
        assert len(fake_api.records()) == 3
        assert len(sleep.waits) == 2
        assert 1.0 <= sleep.waits[0] <= 1.5
        assert 2.0 <= sleep.waits[1] <= 2.5

    def test_a_server_error_followed_by_success_is_a_success(self, fake_api, sleep):
        fake_api.script(Behaviour(status=500))

        result = client_for(fake_api, sleep).post("23", "41", payload())

        assert (result.status, result.attempts) == (200, 2)
        assert [r["status"] for r in fake_api.records()] == [500, 200]

    def test_retry_after_of_503_is_honoured_up_to_10_seconds(self, fake_api, sleep):
        fake_api.script(Behaviour(status=503, retry_after="4"), Behaviour(status=503, retry_after="3600"))

        client_for(fake_api, sleep).post("23", "41", payload())

        assert 4.0 <= sleep.waits[0] <= 4.5
        assert sleep.waits[1] == 10.0

    @pytest.mark.parametrize("status", [302, 307, 404, 418])
    def test_other_statuses_fail_without_retry_and_redirects_are_not_followed(self, fake_api, sleep, status):
        fake_api.set_behaviour(status=status)

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert (caught.value.reason, caught.value.status, caught.value.attempts) == ("unexpected_status", status, 1)
        assert len(fake_api.records()) == 1

    @pytest.mark.parametrize("status", [301, 307, 308])
    def test_a_redirect_to_a_place_that_would_accept_the_post_is_not_followed(self, fake_api, sleep, status):
        """The ``Location`` is tix-api's own report URL (of another installation): following it would store it."""
        fake_api.script(Behaviour(status=status, location=f"{fake_api.base_url}/api/user/23/installation/42/reports"))

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert ("unexpected_status", status) == (caught.value.reason, caught.value.status)
        assert [("41", status)] == [(r["installation_id"], r["status"]) for r in fake_api.records()]

    def test_answer_slower_than_the_timeout_is_a_read_timeout_without_retry(self, fake_api, sleep):
        fake_api.set_behaviour(delay_s=3.0)

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep, timeout_s=0.3).post("23", "41", payload())

        assert (caught.value.reason, caught.value.attempts, caught.value.ambiguous) == ("read_timeout", 1, True)
        (record,) = wait_for_records(fake_api, 1)
        assert (record["outcome"], record["accepted"]) == ("client_gone", False)

    def test_hanging_server_ends_with_a_read_timeout(self, fake_api, sleep):
        fake_api.set_behaviour(action="hang")

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep, timeout_s=0.3).post("23", "41", payload())

        assert (caught.value.reason, caught.value.attempts) == ("read_timeout", 1)
        (record,) = wait_for_records(fake_api, 1)
        assert record["outcome"] == "hang"

    def test_an_answer_that_trickles_in_is_cut_at_the_deadline_as_a_read_timeout(self, fake_api, sleep):
        """§5.3, H3: a byte every 50 ms never trips the read timeout, but the attempt ends near TIX_API_TIMEOUT."""
        fake_api.set_behaviour(action="trickle")
        timeout_s = 0.5
        started = time.monotonic()

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep, timeout_s=timeout_s).post("23", "41", payload())

        elapsed_s = time.monotonic() - started
        assert ("read_timeout", 1, True) == (caught.value.reason, caught.value.attempts, caught.value.ambiguous)
        assert elapsed_s < 3 * timeout_s
        assert [] == sleep.waits

    def test_a_success_with_a_huge_body_is_read_to_64_kib_only(self, fake_api, sleep):
        """H2: the status decides; the body beyond 64 KiB is neither read nor kept, and its connection dropped."""
        fake_api.script(Behaviour(action="huge"))
        client = client_for(fake_api, sleep)

        tracemalloc.start()
        try:
            result = client.post("23", "41", payload())
            peak_bytes = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        second = client.post("23", "42", payload())

        first_record, second_record = wait_for_records(fake_api, 2)
        assert (200, 200) == (result.status, second.status)
        assert peak_bytes < 16 * MAX_ANSWER_BYTES
        assert first_record["answer_bytes"] < HUGE_BODY_BYTES // 8  # the server was stopped by the closed socket
        assert first_record["client_port"] != second_record["client_port"]

    def test_reset_after_sending_is_a_lost_connection_without_retry(self, fake_api, sleep):
        fake_api.set_behaviour(action="reset")

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert (caught.value.reason, caught.value.attempts, caught.value.ambiguous) == ("connection_lost", 1, True)

    def test_store_then_drop_is_ambiguous_and_the_fake_counts_it_as_stored(self, fake_api, sleep):
        fake_api.set_behaviour(action="store_then_drop")

        with pytest.raises(ApiUnavailable) as caught:
            client_for(fake_api, sleep).post("23", "41", payload())

        assert (caught.value.reason, caught.value.ambiguous) == ("connection_lost", True)
        assert len(wait_for_records(fake_api, 1)) == 1
        assert len(fake_api.accepted()) == 1

    def test_refused_connection_is_tried_three_times(self, sleep):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = ApiClient(f"http://127.0.0.1:{port}", user=USER, password=PASSWORD, timeout_s=2, sleep=sleep)

        with pytest.raises(ApiUnavailable) as caught:
            client.post("23", "41", payload())

        assert (caught.value.reason, caught.value.attempts, caught.value.ambiguous) == ("connect_failed", 3, False)
        assert len(sleep.waits) == 2

    def test_missing_credentials_make_no_request(self, fake_api, sleep):
        client = ApiClient(fake_api.base_url, user=USER, password=None, timeout_s=5, sleep=sleep)

        with pytest.raises(ApiUnavailable) as caught:
            client.post("23", "41", payload())

        assert caught.value.reason == "missing_credentials"
        assert fake_api.records() == []

    def test_fence_that_raises_stops_the_post_before_sending(self, fake_api, sleep):
        class LockLost(Exception):
            pass

        def fence() -> None:
            raise LockLost

        with pytest.raises(LockLost):
            client_for(fake_api, sleep).post("23", "41", payload(), fence=fence)

        assert fake_api.records() == []

    def test_fence_runs_before_every_attempt(self, fake_api, sleep):
        fake_api.set_behaviour(status=503)
        calls = []

        with pytest.raises(ApiUnavailable):
            client_for(fake_api, sleep).post("23", "41", payload(), fence=lambda: calls.append(1))

        assert len(calls) == 3


class TestMissingCredentials:
    def test_posting_without_credentials_logs_no_warning_per_window(self, caplog):
        """D11: the warning is logged once per worker start (processor.tasks), not once per window."""
        client = ApiClient("http://127.0.0.1:9", user=None, password=None, timeout_s=1)

        with caplog.at_level(logging.DEBUG, logger="processor.delivery.tixapi"):
            for installation_id in ("41", "42"):
                with pytest.raises(ApiUnavailable):
                    client.post("23", installation_id, payload())

        assert [] == caplog.records
        assert client.has_credentials is False

    def test_a_configuration_without_password_gives_a_client_without_credentials(self):
        config = Config.from_env({"TIX_API_USER": USER})

        assert ApiClient.from_config(config).has_credentials is False


class TestFakeApiAsAProcess:
    def test_standalone_fake_is_switched_at_run_time_and_logs_every_request(self, tmp_path, sleep):
        """The service tests run the fake as its own process and control it over HTTP."""
        from tests.fake_api import start_fake_api_process

        api = start_fake_api_process(tmp_path, admin_user=USER, admin_password=PASSWORD)
        control = api.control
        try:
            client = ApiClient(control.base_url, user=USER, password=PASSWORD, timeout_s=5, sleep=sleep)
            client.post("23", "41", payload())
            control.set_behaviour(status=400, installation="23/41")
            with pytest.raises(ApiRejected):
                client.post("23", "41", payload())
            client.post("23", "42", payload())
            control.script(Behaviour(status=503))
            client.post("23", "42", payload())

            records = api.records()
        finally:
            api.stop()

        assert [(r["installation_id"], r["status"]) for r in records] == [
            ("41", 200),
            ("41", 400),
            ("42", 200),
            ("42", 503),
            ("42", 200),
        ]
        assert [r["accepted"] for r in api.logged_records()] == [True, False, True, False, True]
        assert api.process.returncode == 0


class TestTls:
    """Certificates are verified (D7); a private CA comes from REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (§1)."""

    @pytest.fixture
    def https_api(self, tmp_path) -> Iterator[tuple[FakeApi, str]]:
        """The fake tix-api behind TLS with a certificate for 127.0.0.1 from a private, self-signed CA."""
        import shutil
        import ssl
        import subprocess

        if shutil.which("openssl") is None:
            pytest.fail("the openssl command is needed to make the test certificate")
        key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        api = FakeApi(admin_user=USER, admin_password=PASSWORD)
        api._server.socket = context.wrap_socket(api._server.socket, server_side=True)
        with api:
            yield api, str(cert)

    def client(self, api: FakeApi, **env: str) -> ApiClient:
        """A client made as a worker makes it: from the configuration, which reads the CA variables once."""
        config = Config.from_env(
            {"TIX_API_SSL": "yes", "TIX_API_HOST": "127.0.0.1", "TIX_API_PORT": str(api.port)}
            | {"TIX_API_USER": USER, "TIX_API_PASSWORD": PASSWORD, **env}
        )
        return ApiClient.from_config(config, max_attempts=1)

    def test_an_unknown_ca_is_refused(self, https_api):
        api, _ = https_api

        with pytest.raises(ApiUnavailable) as caught:
            self.client(api).post("23", "41", payload())

        assert ("connect_failed", False) == (caught.value.reason, caught.value.ambiguous)
        assert [] == api.records()

    def test_without_variables_the_default_bundle_of_requests_is_used(self, https_api):
        """``verify=True``: requests' own bundle (certifi), as the original client had."""
        api, _ = https_api

        client = self.client(api)

        assert (None, True) == (Config.from_env({}).api_ca_bundle, client.session.verify)

    @pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
    def test_a_private_ca_bundle_from_the_environment_is_trusted(self, https_api, variable):
        api, ca_file = https_api

        result = self.client(api, **{variable: ca_file}).post("23", "41", payload())

        assert result.status in (200, 201, 204)
        assert 1 == len(api.records())

    def test_requests_ca_bundle_wins_over_curl_ca_bundle(self, https_api, tmp_path):
        api, ca_file = https_api

        client = self.client(api, REQUESTS_CA_BUNDLE=ca_file, CURL_CA_BUNDLE=str(tmp_path / "other.pem"))

        assert 200 == client.post("23", "41", payload()).status

    def test_a_directory_of_certificates_from_the_environment_is_trusted(self, https_api, tmp_path):
        """A directory is read as OpenSSL's CA path: certificates named ``<subject hash>.0``."""
        import shutil
        import subprocess

        api, ca_file = https_api
        subject_hash = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", ca_file], check=True, capture_output=True, text=True
        ).stdout.strip()
        ca_dir = tmp_path / "certs"
        ca_dir.mkdir()
        shutil.copy(ca_file, ca_dir / f"{subject_hash}.0")

        result = self.client(api, CURL_CA_BUNDLE=str(ca_dir)).post("23", "41", payload())

        assert result.status in (200, 201, 204)
        assert 1 == len(api.records())

    def test_a_missing_ca_bundle_is_an_error_before_any_request(self, https_api, tmp_path):
        """As with ``requests``: an OSError naming the path, not a connection failure retried three times."""
        api, _ = https_api

        with pytest.raises(OSError, match=r"missing\.pem"):
            self.client(api, REQUESTS_CA_BUNDLE=str(tmp_path / "missing.pem")).post("23", "41", payload())

        assert [] == api.records()

    def test_the_client_does_not_read_the_environment_again(self, https_api, monkeypatch, tmp_path):
        """Only processor.config reads the variables: one set in the process afterwards changes nothing."""
        api, _ = https_api
        client = self.client(api)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))

        with pytest.raises(ApiUnavailable) as caught:
            client.post("23", "41", payload())

        assert "connect_failed" == caught.value.reason
