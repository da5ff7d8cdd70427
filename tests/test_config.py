"""Tests of processor.config: the environment variables of service.md §1 and the Celery settings of §4."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from processor.config import Config, celery_settings, load_config_or_exit
from processor.errors import ConfigError


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    return caught.value.problems


class TestDefaults:
    def test_empty_environment_gives_the_documented_defaults(self):
        config = Config.from_env({})

        assert config.processor_type == "STANDALONE"
        assert config.reports_base_path == Path("/tmp/reports")
        assert config.processing_period_min == 10  # D6
        assert (config.rabbitmq_user, config.rabbitmq_password) == ("guest", "guest")
        assert (config.rabbitmq_host, config.rabbitmq_port) == ("localhost", 5672)
        assert config.api_ssl is False
        assert (config.api_host, config.api_port) == ("localhost", None)
        assert (config.api_user, config.api_password) == (None, None)
        assert config.api_timeout_s == 10.0
        assert config.lock_lease_s == 120
        assert config.task_budget_s == 480
        assert config.worker_concurrency is None
        assert config.iptoas_backend == "none"
        assert (config.iptoas_db_host, config.iptoas_db_port) == ("mysql", 3306)
        assert (config.iptoas_db_user, config.iptoas_db_password, config.iptoas_db_name) == ("tix", "", "iptoas")
        assert config.iptoas_timeout_s == 5.0
        assert (config.iptoas_pfx2as_file, config.iptoas_asnames_file) == (None, None)
        assert (config.iptoas_cache_ttl_s, config.iptoas_cache_size) == (86400, 4096)
        assert config.beat_schedule_dir == Path("/tmp/celerybeat-schedule.d")
        assert config.beat_schedule_file == Path("/tmp/celerybeat-schedule.d/celerybeat-scheduler")
        assert config.log_level == "INFO"
        assert config.usage_estimator == "v2"
        assert config.warnings == ()

    def test_empty_numeric_variables_mean_their_default(self):
        config = Config.from_env({"TIX_PROCESSING_PERIOD": "", "TIX_API_PORT": "", "TIX_API_TIMEOUT": " "})

        assert (config.processing_period_min, config.api_port, config.api_timeout_s) == (10, None, 10.0)

    def test_config_is_frozen(self):
        config = Config.from_env({})

        with pytest.raises(AttributeError):
            config.lock_lease_s = 30  # type: ignore[misc]


class TestValues:
    def test_processor_type_is_case_insensitive(self):
        """S12."""
        assert Config.from_env({"PROCESSOR_TYPE": "worker"}).processor_type == "WORKER"
        assert Config.from_env({"PROCESSOR_TYPE": "Beat"}).processor_type == "BEAT"

    @pytest.mark.parametrize(("value", "https"), [(None, False), ("", False), ("True", True), ("yes", True)])
    def test_api_ssl_is_https_for_any_non_empty_value(self, value, https):
        """D7: the original switched to HTTPS when the variable merely existed."""
        env = {} if value is None else {"TIX_API_SSL": value}

        assert Config.from_env(env).api_ssl is https

    @pytest.mark.parametrize("value", ["false", "FALSE", "0", "no", "Off"])
    def test_api_ssl_that_looks_false_means_https_with_a_warning(self, value):
        """S12."""
        config = Config.from_env({"TIX_API_SSL": value})

        assert config.api_ssl is True
        assert len(config.warnings) == 1
        assert config.warnings[0].startswith("TIX_API_SSL: ")
        assert "HTTPS" in config.warnings[0]

    def test_period_that_does_not_divide_60_is_accepted_with_a_warning(self):
        config = Config.from_env({"TIX_PROCESSING_PERIOD": "7"})

        assert config.processing_period_min == 7
        assert [w.split(":")[0] for w in config.warnings] == ["TIX_PROCESSING_PERIOD"]

    @pytest.mark.parametrize(("alias", "level"), [("warn", "WARNING"), ("FATAL", "CRITICAL"), ("debug", "DEBUG")])
    def test_log_level_accepts_any_case_and_aliases(self, alias, level):
        config = Config.from_env({"CELERY_LOG_LEVEL": alias})

        assert config.log_level == level
        assert config.log_level_number == getattr(logging, level)

    @pytest.mark.parametrize(
        ("value", "estimator"), [("queueing", "queueing"), (" Queueing ", "queueing"), ("V2", "v2")]
    )
    def test_usage_estimator_is_case_insensitive(self, value, estimator):
        assert estimator == Config.from_env({"TIX_USAGE_ESTIMATOR": value}).usage_estimator

    def test_empty_usage_estimator_means_v2(self):
        assert "v2" == Config.from_env({"TIX_USAGE_ESTIMATOR": ""}).usage_estimator

    def test_bracketed_ipv6_api_host_is_stored_without_brackets(self):
        assert Config.from_env({"TIX_API_HOST": "[::1]"}).api_host == "::1"
        assert Config.from_env({"TIX_API_HOST": "2001:db8::5"}).api_host == "2001:db8::5"

    def test_empty_api_credentials_count_as_missing(self):
        config = Config.from_env({"TIX_API_USER": "admin", "TIX_API_PASSWORD": ""})

        assert config.api_password is None
        assert config.api_credentials_present is False

    def test_derived_durations_follow_period_and_budget(self):
        config = Config.from_env({"TIX_PROCESSING_PERIOD": "10", "TIX_TASK_BUDGET_SECONDS": "480"})

        assert (config.fanout_expiry_s, config.installation_expiry_s) == (540, 600)
        assert (config.soft_time_limit_s, config.hard_time_limit_s) == (540, 600)

    def test_fanout_expiry_never_drops_below_30_seconds(self):
        assert Config.from_env({"TIX_PROCESSING_PERIOD": "1"}).fanout_expiry_s == 30

    def test_pfx2as_backend_with_its_file(self):
        config = Config.from_env({"TIX_IPTOAS_BACKEND": "PFX2AS", "TIX_IPTOAS_PFX2AS_FILE": "/data/pfx2as.txt"})

        assert config.iptoas_backend == "pfx2as"
        assert config.iptoas_pfx2as_file == Path("/data/pfx2as.txt")


class TestProblems:
    @pytest.mark.parametrize(
        ("name", "value", "fragment"),
        [
            ("TIX_PROCESSING_PERIOD", "ten", "not an integer: 'ten'"),
            ("TIX_PROCESSING_PERIOD", "0", "between 1 and 60, got 0"),
            ("TIX_PROCESSING_PERIOD", "61", "between 1 and 60, got 61"),
            ("TIX_RABBITMQ_HOST", "", "must not be empty"),
            ("TIX_RABBITMQ_PORT", "0", "between 1 and 65535"),
            ("TIX_RABBITMQ_PORT", "amqp", "not an integer"),
            ("TIX_API_HOST", "", "must not be empty"),
            ("TIX_API_HOST", "https://tix.example.org", "without a scheme"),
            ("TIX_API_HOST", "tix.example.org:3001", "without a port"),
            ("TIX_API_HOST", "tix.example.org/api", "without a path"),
            ("TIX_API_PORT", "3001a", "not an integer: '3001a'"),
            ("TIX_API_PORT", "70000", "between 1 and 65535"),
            ("TIX_API_TIMEOUT", "0", "> 0 and <= 120"),
            ("TIX_API_TIMEOUT", "121", "> 0 and <= 120"),
            ("TIX_API_TIMEOUT", "inf", "> 0 and <= 120"),
            ("TIX_API_TIMEOUT", "soon", "not a number"),
            ("TIX_LOCK_LEASE_SECONDS", "29", "between 30 and 600"),
            ("TIX_LOCK_LEASE_SECONDS", "601", "between 30 and 600"),
            ("TIX_TASK_BUDGET_SECONDS", "59", "between 60 and 1500"),
            ("TIX_TASK_BUDGET_SECONDS", "1501", "between 60 and 1500"),
            ("TIX_WORKER_CONCURRENCY", "0", "between 1 and 64"),
            ("TIX_WORKER_CONCURRENCY", "65", "between 1 and 64"),
            ("TIX_IPTOAS_BACKEND", "redis", "one of none, mysql, pfx2as"),
            ("TIX_IPTOAS_DB_PORT", "x", "not an integer"),
            ("TIX_IPTOAS_DB_NAME", "", "must not be empty"),
            ("TIX_IPTOAS_TIMEOUT", "61", "> 0 and <= 60"),
            ("TIX_IPTOAS_CACHE_TTL", "-1", ">= 0"),
            ("TIX_IPTOAS_CACHE_SIZE", "0", ">= 1"),
            ("CELERY_LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
            ("TIX_USAGE_ESTIMATOR", "v3", "one of v2, queueing, got 'v3'"),
        ],
    )
    def test_bad_value_is_reported_with_the_variable_name(self, name, value, fragment):
        problems = problems_of({name: value})

        assert len(problems) == 1
        assert problems[0].startswith(f"{name}: ")
        assert fragment in problems[0]

    def test_unknown_processor_type_has_the_documented_message(self):
        problems = problems_of({"PROCESSOR_TYPE": "scheduler"})

        assert problems == ["PROCESSOR_TYPE: unknown processor type 'scheduler' (expected STANDALONE, BEAT or WORKER)"]

    def test_pfx2as_backend_requires_its_file(self):
        problems = problems_of({"TIX_IPTOAS_BACKEND": "pfx2as"})

        assert [p.split(":")[0] for p in problems] == ["TIX_IPTOAS_PFX2AS_FILE"]

    def test_mysql_backend_requires_a_database_host(self):
        problems = problems_of({"TIX_IPTOAS_BACKEND": "mysql", "TIX_IPTOAS_DB_HOST": ""})

        assert [p.split(":")[0] for p in problems] == ["TIX_IPTOAS_DB_HOST"]

    def test_every_problem_is_collected_before_failing(self):
        problems = problems_of(
            {
                "PROCESSOR_TYPE": "nope",
                "TIX_PROCESSING_PERIOD": "x",
                "TIX_API_PORT": "y",
                "TIX_API_TIMEOUT": "-3",
                "TIX_LOCK_LEASE_SECONDS": "5",
            }
        )

        assert sorted(p.split(":")[0] for p in problems) == [
            "PROCESSOR_TYPE",
            "TIX_API_PORT",
            "TIX_API_TIMEOUT",
            "TIX_LOCK_LEASE_SECONDS",
            "TIX_PROCESSING_PERIOD",
        ]


SECRET_ENV = {
    "TIX_RABBITMQ_USER": "tix user",
    "TIX_RABBITMQ_PASS": "p@ss/w:rd",
    "TIX_API_USER": "admin",
    "TIX_API_PASSWORD": "api-secret",
    "TIX_IPTOAS_DB_PASSWORD": "db-secret",
}


class TestSecrets:
    def test_passwords_are_not_in_the_repr(self):
        text = repr(Config.from_env(SECRET_ENV))

        for secret in ("p@ss/w:rd", "p%40ss", "api-secret", "db-secret"):
            assert secret not in text

    def test_broker_url_percent_encodes_user_and_password(self):
        """S9: a raw '@' or '/' broke the original's URL."""
        config = Config.from_env({**SECRET_ENV, "TIX_RABBITMQ_HOST": "rabbit", "TIX_RABBITMQ_PORT": "5673"})

        assert config.broker_url == "amqp://tix%20user:p%40ss%2Fw%3Ard@rabbit:5673//"
        assert config.broker_url_redacted == "amqp://tix%20user:***@rabbit:5673//"

    def test_a_bad_value_next_to_a_password_does_not_echo_the_password(self):
        problems = problems_of({**SECRET_ENV, "TIX_API_PORT": "x"})

        assert all("secret" not in p and "p@ss" not in p for p in problems)


class TestCelerySettings:
    def test_recommended_settings_of_the_specification(self):
        config = Config.from_env({"TIX_TASK_BUDGET_SECONDS": "480"})

        settings = celery_settings(config)

        assert settings["broker_url"] == "amqp://guest:guest@localhost:5672//"
        assert settings["task_acks_late"] is True
        assert settings["task_reject_on_worker_lost"] is True
        assert settings["task_acks_on_failure_or_timeout"] is True
        assert settings["worker_prefetch_multiplier"] == 1
        assert settings["worker_cancel_long_running_tasks_on_connection_loss"] is True
        assert (settings["task_soft_time_limit"], settings["task_time_limit"]) == (540, 600)
        assert settings["broker_transport_options"] == {"confirm_publish": True}
        assert settings["broker_connection_retry_on_startup"] is True
        assert settings["broker_connection_max_retries"] is None
        assert settings["broker_heartbeat"] == 30
        assert settings["task_ignore_result"] is True
        assert settings["result_backend"] is None
        assert (settings["task_serializer"], settings["accept_content"]) == ("json", ["json"])
        assert (settings["timezone"], settings["enable_utc"]) == ("UTC", True)
        assert "worker_max_tasks_per_child" not in settings
        assert settings["worker_max_memory_per_child"] == 512000
        assert (settings["worker_send_task_events"], settings["task_send_sent_event"]) == (False, False)
        assert settings["task_default_queue"] == "celery"
        assert "worker_concurrency" not in settings

    @pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
    def test_task_events_are_turned_on_by_the_variable(self, value):
        settings = celery_settings(Config.from_env({"TIX_TASK_EVENTS": value}))

        assert (settings["worker_send_task_events"], settings["task_send_sent_event"]) == (True, True)

    @pytest.mark.parametrize("value", ["", "0", "false", "Off", "no"])
    def test_task_events_stay_off_with_an_off_value(self, value):
        settings = celery_settings(Config.from_env({"TIX_TASK_EVENTS": value}))

        assert (settings["worker_send_task_events"], settings["task_send_sent_event"]) == (False, False)

    def test_another_task_events_value_is_a_configuration_error(self):
        problems = problems_of({"TIX_TASK_EVENTS": "sometimes"})

        assert problems == [
            "TIX_TASK_EVENTS: must be one of 1, true, yes, on, 0, false, no, off, got 'sometimes'",
        ]

    def test_hard_limit_stays_below_the_rabbitmq_consumer_timeout_at_the_largest_budget(self):
        settings = celery_settings(Config.from_env({"TIX_TASK_BUDGET_SECONDS": "1500"}))

        assert settings["task_time_limit"] < 30 * 60

    def test_worker_concurrency_is_passed_when_set(self):
        settings = celery_settings(Config.from_env({"TIX_WORKER_CONCURRENCY": "4"}))

        assert settings["worker_concurrency"] == 4

    def test_settings_are_accepted_by_a_celery_app(self):
        from celery import Celery

        app = Celery("test_config_settings")
        app.conf.update(celery_settings(Config.from_env({})))

        assert app.conf.task_acks_late is True
        assert app.conf.worker_prefetch_multiplier == 1
        assert app.conf.worker_max_tasks_per_child is None  # Celery's default: children are not recycled by count
        assert (app.conf.worker_send_task_events, app.conf.task_send_sent_event) == (False, False)


class TestBrokerOverride:
    """Celery 5 takes ``CELERY_BROKER_URL`` from the environment before the URL built from TIX_RABBITMQ_*."""

    def test_celery_really_prefers_the_environment_variable(self, monkeypatch):
        """Why the check warns: checked on a real Celery app, not assumed."""
        from celery import Celery

        monkeypatch.setenv("CELERY_BROKER_URL", "amqp://someone@elsewhere:5673//")
        app = Celery("test_broker_override")
        app.conf.update(celery_settings(Config.from_env({"TIX_RABBITMQ_HOST": "rabbit"})))

        connection = app.connection()
        assert ("elsewhere", 5673, "someone") == (connection.hostname, connection.port, connection.userid)

    @pytest.mark.parametrize("name", ["CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"])
    def test_set_override_is_a_warning_that_does_not_echo_its_value(self, name):
        config = Config.from_env({name: "amqp://tix:hunter2@rabbit:5672/tix"})

        assert [w.split(":")[0] for w in config.warnings] == [name]
        assert "TIX_RABBITMQ_" in config.warnings[0]
        assert "hunter2" not in config.warnings[0]

    def test_empty_override_is_ignored_like_celery_ignores_it(self):
        assert () == Config.from_env({"CELERY_BROKER_URL": ""}).warnings


class TestLoadConfigOrExit:
    def test_load_config_or_exit_exits_2_with_the_problems(self, capsys):
        with pytest.raises(SystemExit) as caught:
            load_config_or_exit({"TIX_LOCK_LEASE_SECONDS": "1"})

        assert caught.value.code == 2
        assert capsys.readouterr().err.startswith("configuration error: TIX_LOCK_LEASE_SECONDS: ")

    def test_load_config_or_exit_logs_warnings(self, caplog):
        with caplog.at_level(logging.WARNING, logger="processor.config"):
            config = load_config_or_exit({"TIX_PROCESSING_PERIOD": "7"})

        assert config.processing_period_min == 7
        assert [r.getMessage().split(":")[0] for r in caplog.records] == ["configuration warning"]


class TestVirtualHost:
    def test_default_virtual_host_is_the_originals_slash(self):
        assert Config.from_env({}).broker_url.endswith(":5672//")

    def test_other_virtual_host_is_percent_encoded_in_the_url(self):
        config = Config.from_env({"TIX_RABBITMQ_VHOST": "tix/tests"})

        assert "amqp://guest:guest@localhost:5672/tix%2Ftests" == config.broker_url

    def test_empty_virtual_host_is_a_problem(self):
        with pytest.raises(ConfigError) as caught:
            Config.from_env({"TIX_RABBITMQ_VHOST": ""})

        assert any(problem.startswith("TIX_RABBITMQ_VHOST:") for problem in caught.value.problems)
