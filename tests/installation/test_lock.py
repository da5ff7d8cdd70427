"""Tests of processor.installation.lock: the lease lock of windows spec §8, with real processes where it matters."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processor.errors import InstallationBusy, LockLost
from processor.installation import lock as lock_module
from processor.installation.entries import STALE_PREFIX
from processor.installation.lock import LOCK_NAME, Holder, LeaseLock, LockState

REPO = Path(__file__).resolve().parents[2]

#: A process that takes the lock, says so, and waits for ``release`` to appear (or is killed).
HOLDER_SCRIPT = """
import sys, time
from pathlib import Path
from processor.installation.lock import LeaseLock
directory = Path(sys.argv[1])
lock = LeaseLock(directory, lease_s=float(sys.argv[2]))
lock.acquire()
print("held", lock.token, flush=True)
while not (directory.parent / "release").exists():
    time.sleep(0.02)
lock.release()
"""

#: A process that waits for ``go``, tries once, and prints the outcome; a winner holds until ``release``.
RACER_SCRIPT = """
import sys, time
from pathlib import Path
from processor.errors import InstallationBusy, LockLost
from processor.installation.lock import LeaseLock
directory = Path(sys.argv[1])
signals = directory.parent
lock = LeaseLock(directory, lease_s=30)
print("ready", flush=True)
while not (signals / "go").exists():
    time.sleep(0.001)
try:
    lock.acquire()
except InstallationBusy:
    print("busy", flush=True)
    sys.exit(0)
print("acquired", flush=True)
while not (signals / "check").exists():
    time.sleep(0.01)
try:
    lock.fence()
    print("holds", flush=True)
except LockLost:
    print("lost", flush=True)
while not (signals / "release").exists():
    time.sleep(0.01)
lock.release()
"""


def spawn(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)


@pytest.fixture
def installation(tmp_path) -> Path:
    directory = tmp_path / "7" / "12"
    directory.mkdir(parents=True)
    return directory


def write_holder(directory: Path, *, host: str, pid: int, expires_at: float, token: str = "f" * 32) -> bytes:
    data = Holder(host, pid, token, expires_at - 120, expires_at).to_json()
    (directory / LOCK_NAME).write_bytes(data)
    return data


class FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class TestAcquire:
    def test_creates_the_lock_file_with_its_content_and_mode(self, installation):
        with LeaseLock(installation, renew=False) as lock:
            path = installation / LOCK_NAME
            document = json.loads(path.read_bytes())

            assert 0o640 == stat.S_IMODE(path.stat().st_mode)
            assert ["host", "pid", "token", "acquired_at", "expires_at"] == list(document)
            assert socket.gethostname() == document["host"]
            assert os.getpid() == document["pid"]
            assert lock.token == document["token"]
            assert 32 == len(lock.token) and int(lock.token, 16) >= 0
            assert pytest.approx(120.0) == document["expires_at"] - document["acquired_at"]

    def test_every_acquisition_gets_a_new_token(self, installation):
        lock = LeaseLock(installation, renew=False)
        with lock:
            first = lock.token
        with lock:
            second = lock.token

        assert first != second

    def test_a_live_holder_makes_the_installation_busy_at_once(self, installation):
        with LeaseLock(installation, renew=False), pytest.raises(InstallationBusy) as caught:
            LeaseLock(installation, renew=False).acquire()

        assert installation == caught.value.directory

    def test_a_holder_on_another_host_is_busy_until_expiry_plus_30_s(self, installation):
        now = time.time()
        write_holder(installation, host="elsewhere", pid=1, expires_at=now - 29)

        with pytest.raises(InstallationBusy):
            LeaseLock(installation, renew=False).acquire()

    def test_a_lock_expired_for_more_than_30_s_is_taken_over_with_a_warning(self, installation, caplog):
        write_holder(installation, host="elsewhere", pid=4242, expires_at=time.time() - 31)

        with caplog.at_level(logging.WARNING), LeaseLock(installation, renew=False) as lock:
            holder = Holder.from_json((installation / LOCK_NAME).read_bytes())

        assert lock.token == holder.token
        [record] = [r for r in caplog.records if r.event == "lock taken over"]
        assert {"directory": installation, "reason": "expired", "holder_host": "elsewhere", "holder_pid": 4242} == {
            key: record.fields[key] for key in ("directory", "reason", "holder_host", "holder_pid")
        }
        assert [] == [p.name for p in installation.iterdir() if p.name.startswith(STALE_PREFIX)]

    def test_an_empty_lock_file_expires_a_lease_after_its_mtime(self, installation):
        """A holder that died between create and write: expiry = mtime + lease."""
        path = installation / LOCK_NAME
        path.write_bytes(b"")

        with pytest.raises(InstallationBusy):
            LeaseLock(installation, lease_s=120, renew=False).acquire()

        old = time.time() - 120 - 31
        os.utime(path, (old, old))
        with LeaseLock(installation, lease_s=120, renew=False) as lock:
            assert lock.token == Holder.from_json(path.read_bytes()).token

    def test_a_dead_holder_on_this_host_is_taken_over_at_once(self, installation):
        """A SIGKILLed process leaves an unexpired lock; a task on the same host takes it over at once."""
        holder = spawn(HOLDER_SCRIPT, str(installation), "120")
        try:
            assert holder.stdout.readline().startswith("held")
            with pytest.raises(InstallationBusy):
                LeaseLock(installation, renew=False).acquire()

            holder.send_signal(signal.SIGKILL)
            holder.wait()

            with LeaseLock(installation, renew=False) as lock:
                assert lock.token == Holder.from_json((installation / LOCK_NAME).read_bytes()).token
        finally:
            holder.kill()
            holder.wait()

    def test_a_killed_holder_not_yet_reaped_counts_as_dead(self, installation):
        """A zombie still answers kill(pid, 0); its /proc state says it is dead."""
        holder = spawn(HOLDER_SCRIPT, str(installation), "120")
        try:
            assert holder.stdout.readline().startswith("held")
            os.kill(holder.pid, signal.SIGKILL)
            deadline = time.time() + 10
            while lock_module.pid_alive(holder.pid) and time.time() < deadline:
                time.sleep(0.01)

            with LeaseLock(installation, renew=False):
                pass
        finally:
            holder.wait()

    def test_a_dead_pid_on_another_host_still_waits_for_the_lease(self, installation):
        write_holder(installation, host="elsewhere", pid=2**22 + 12345, expires_at=time.time() + 60)

        with pytest.raises(InstallationBusy):
            LeaseLock(installation, renew=False).acquire()

    def test_a_lock_replaced_during_the_takeover_is_put_back_and_busy(self, installation):
        """Bytes of the renamed file differ from the ones judged expired: another process created a fresh lock."""
        judged = b'{"host": "elsewhere", "pid": 1, "token": "old", "acquired_at": 0, "expires_at": 1}'
        fresh = write_holder(installation, host="elsewhere", pid=2, expires_at=time.time() + 120, token="n" * 32)
        lock = LeaseLock(installation, renew=False)
        lock.token = "t" * 32

        may_create = lock._take_over(judged, LockState(None, 1.0, True, "expired"))

        assert not may_create
        assert fresh == (installation / LOCK_NAME).read_bytes()
        assert [LOCK_NAME] == [p.name for p in installation.iterdir()]

    @pytest.mark.parametrize("expired", [False, True], ids=["no-lock", "expired-lock"])
    def test_processes_racing_for_the_lock_end_with_exactly_one_holder(self, installation, expired):
        """
        Of six racers exactly one holds the lock once the race is over (I7).

        With an expired lock the takeover of windows spec §8 can let a racer create the lock while another one
        puts a renamed fresh lock back; the racer whose file was replaced then fails its fence and does nothing,
        so at most one racer ever passes the fence.
        """
        for round_ in range(3):
            signals = installation.parent
            for name in ("go", "check", "release"):
                (signals / name).unlink(missing_ok=True)
            if expired:
                write_holder(installation, host="elsewhere", pid=1, expires_at=time.time() - 100)
            racers = [spawn(RACER_SCRIPT, str(installation)) for _ in range(6)]
            try:
                assert all("ready\n" == racer.stdout.readline() for racer in racers)
                (signals / "go").touch()
                outcomes = [racer.stdout.readline().strip() for racer in racers]
                (signals / "check").touch()
                fenced = [
                    racer.stdout.readline().strip()
                    for racer, outcome in zip(racers, outcomes, strict=True)
                    if outcome != "busy"
                ]
                (signals / "release").touch()
                for racer in racers:
                    racer.wait(timeout=30)
            finally:
                for racer in racers:
                    racer.kill()
                    racer.wait()

            assert {"acquired", "busy"} >= set(outcomes), f"round {round_}"
            assert 1 == fenced.count("holds"), f"round {round_}: {outcomes} {fenced}"
            if not expired:
                assert ["acquired"] + ["busy"] * 5 == sorted(outcomes), f"round {round_}"
            assert [] == [p.name for p in installation.iterdir()], f"round {round_}"


class TestRenewalAndFencing:
    def test_renewal_keeps_a_short_lease_alive(self, installation):
        with LeaseLock(installation, lease_s=0.6) as lock:
            first = Holder.from_json((installation / LOCK_NAME).read_bytes())
            time.sleep(1.5)
            lock.fence()
            later = Holder.from_json((installation / LOCK_NAME).read_bytes())

        assert later.expires_at > first.expires_at
        assert first.acquired_at == later.acquired_at
        assert first.token == later.token

    def test_locks_held_at_once_in_one_process_are_all_renewed(self, installation):
        """One renewal thread serves every lock of the process; a released one is not written again."""
        other = installation.parent / "13"
        other.mkdir()
        released = installation.parent / "14"
        released.mkdir()
        LeaseLock(released, lease_s=0.6).__enter__().release()

        with LeaseLock(installation, lease_s=0.6) as first, LeaseLock(other, lease_s=0.9) as second:
            before = [Holder.from_json((d / LOCK_NAME).read_bytes()).expires_at for d in (installation, other)]
            time.sleep(2.0)
            first.fence()
            second.fence()
            after = [Holder.from_json((d / LOCK_NAME).read_bytes()).expires_at for d in (installation, other)]

        assert all(later > earlier + 1.0 for earlier, later in zip(before, after, strict=True))
        assert [] == list(released.iterdir())

    def test_the_fence_passes_while_the_lock_is_ours(self, installation):
        with LeaseLock(installation, renew=False) as lock:
            lock.fence()

            assert not lock.lost

    def test_a_lock_whose_token_changed_is_lost_and_not_deleted(self, installation, caplog):
        lock = LeaseLock(installation, renew=False)
        lock.acquire()
        other = write_holder(installation, host="elsewhere", pid=7, expires_at=time.time() + 100, token="o" * 32)

        with caplog.at_level(logging.ERROR), pytest.raises(LockLost, match="token differs"):
            lock.fence()
        lock.release()

        assert lock.lost
        assert other == (installation / LOCK_NAME).read_bytes()
        assert [("lock lost", installation, "token differs")] == [
            (r.event, r.fields["directory"], r.fields["detail"]) for r in caplog.records
        ]

    def test_a_removed_lock_file_is_lost(self, installation):
        with LeaseLock(installation, renew=False) as lock:
            (installation / LOCK_NAME).unlink()

            with pytest.raises(LockLost, match="gone"):
                lock.fence()

    def test_an_expired_lease_fails_the_fence(self, installation):
        clock = FakeClock(1_700_000_000.0)
        with LeaseLock(installation, lease_s=120, renew=False, clock=clock) as lock:
            clock.now_s += 120

            with pytest.raises(LockLost, match="expired"):
                lock.fence()

    def test_renewal_detects_a_foreign_token(self, installation):
        with LeaseLock(installation, renew=False) as lock:
            write_holder(installation, host="elsewhere", pid=7, expires_at=time.time() + 100)

            assert not lock.renew()
            assert lock.lost

    def test_failing_renewals_lose_the_lock_when_less_than_30_s_remain(self, installation, monkeypatch):
        clock = FakeClock(1_700_000_000.0)

        def broken_write(*args, **kwargs):
            raise OSError(28, "No space left on device")

        with LeaseLock(installation, lease_s=120, renew=False, clock=clock) as lock:
            monkeypatch.setattr(lock_module, "atomic_write_bytes", broken_write)
            clock.now_s += 40
            first = lock.renew()
            clock.now_s += 51  # 29 s of the lease left
            second = lock.renew()

        assert (False, False) == (first, second)
        assert lock.lost

    def test_a_lost_renewal_is_seen_by_the_fence(self, installation):
        with LeaseLock(installation, lease_s=0.6) as lock:
            write_holder(installation, host="elsewhere", pid=7, expires_at=time.time() + 100)
            deadline = time.time() + 10
            while not lock.lost and time.time() < deadline:
                time.sleep(0.05)

            with pytest.raises(LockLost):
                lock.fence()


class TestRelease:
    def test_release_deletes_only_its_own_lock(self, installation):
        with LeaseLock(installation, renew=False):
            pass

        assert [] == list(installation.iterdir())

    def test_the_lock_is_released_when_the_body_raises(self, installation):
        with pytest.raises(RuntimeError, match="boom"), LeaseLock(installation, renew=False):
            raise RuntimeError("boom")

        assert not (installation / LOCK_NAME).exists()

    def test_a_fence_after_release_raises(self, installation):
        with LeaseLock(installation, renew=False) as lock:
            pass

        with pytest.raises(LockLost):
            lock.fence()


class TestLockState:
    """The public reading of a lock, shared by the lock's takeover and by ``status``."""

    def test_no_lock_file_reads_as_none(self, installation):
        assert lock_module.read_holder(installation) is None
        assert lock_module.lock_state(installation, time.time()) is None

    def test_a_holder_is_read_without_taking_the_lock(self, installation):
        data = write_holder(installation, host="elsewhere", pid=9, expires_at=1000.0)

        assert Holder.from_json(data) == lock_module.read_holder(installation)
        assert data == (installation / LOCK_NAME).read_bytes()

    def test_a_lock_is_stale_as_expired_only_30_s_after_its_expiry(self, installation):
        write_holder(installation, host="elsewhere", pid=9, expires_at=1000.0)

        live = lock_module.lock_state(installation, 1030.0, host="here")
        stale = lock_module.lock_state(installation, 1030.5, host="here")

        assert (1000.0, False, None) == (live.expires_at, live.stale, live.stale_reason)
        assert (1000.0, True, "expired") == (stale.expires_at, stale.stale, stale.stale_reason)

    def test_a_dead_process_of_this_host_is_stale_before_its_expiry(self, installation):
        write_holder(installation, host="here", pid=2**22 + 12345, expires_at=time.time() + 100)

        state = lock_module.lock_state(installation, time.time(), host="here")

        assert (True, "dead_process") == (state.stale, state.stale_reason)

    def test_an_unparseable_lock_expires_a_lease_after_its_mtime(self, installation):
        path = installation / LOCK_NAME
        path.write_bytes(b"{")
        os.utime(path, (500.0, 500.0))

        state = lock_module.lock_state(installation, 680.0, lease_s=120, host="here")

        assert (None, 620.0, True, "expired") == (state.holder, state.expires_at, state.stale, state.stale_reason)
        assert lock_module.read_holder(installation) is None

    def test_a_link_in_place_of_the_lock_is_an_error_not_followed(self, installation, tmp_path):
        target = tmp_path / "elsewhere.json"
        target.write_bytes(Holder("h", 1, "t" * 32, 0.0, 1.0).to_json())
        (installation / LOCK_NAME).symlink_to(target)

        with pytest.raises(OSError):
            lock_module.lock_state(installation, time.time())
