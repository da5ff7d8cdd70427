"""Condenser trees of simulated installations: ``<user>/<installation>/tix-report-<first ts>.json``."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from processor.reports.files import write_report
from processor_tools.simulate.installation import simulate_installation, split_into_reports
from processor_tools.simulate.model import DEFAULT_START_S, GroundTruth, ScheduleMode, draw_profile

#: First octets of the "public" client addresses (LACNIC blocks, where TiX clients lived). A prefix table for
#: the IP-to-AS resolver in tests can cover these; documentation and private addresses resolve to null.
PUBLIC_FIRST_OCTETS = (181, 186, 190, 200, 201)
#: The three documentation networks of RFC 5737 (reserved: the resolver gives no AS for them).
DOCUMENTATION_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
#: Private networks (RFC 1918): a client behind a NAT that the server saw unmapped.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")

AddressKind = Literal["public", "documentation", "private"]


def draw_address(rng: np.random.Generator, kind: AddressKind, *, nat_port_share: float = 0.2) -> str:
    """A ``from`` value ``"a.b.c.d:port"`` of ``kind``; the port is 4501, or a NAT port with ``nat_port_share``."""
    if kind == "public":
        while True:
            octets = (PUBLIC_FIRST_OCTETS[rng.integers(len(PUBLIC_FIRST_OCTETS))], *rng.integers(0, 256, 2))
            address = ipaddress.IPv4Address(".".join(str(int(o)) for o in (*octets, rng.integers(1, 255))))
            if address.is_global:
                break
    else:
        networks = DOCUMENTATION_NETWORKS if kind == "documentation" else PRIVATE_NETWORKS
        network = ipaddress.IPv4Network(networks[rng.integers(len(networks))])
        address = network[int(rng.integers(1, network.num_addresses - 1))]
    port = 4501 if rng.random() >= nat_port_share else int(rng.integers(1024, 65536))
    return f"{address}:{port}"


def _address_kind(rng: np.random.Generator, shares: Sequence[float]) -> AddressKind:
    kinds: tuple[AddressKind, ...] = ("public", "documentation", "private")
    return kinds[int(rng.choice(3, p=np.asarray(shares) / np.sum(shares)))]


@dataclass(frozen=True, slots=True)
class SimulatedInstallation:
    """One installation of a generated tree."""

    user_id: int
    installation_id: int
    directory: Path
    addresses: tuple[str, ...]  #: ``from`` values in use order (two when the IP changed mid-run)
    files: tuple[Path, ...]  #: report files in name order
    observations: int  #: records written
    truth: GroundTruth | None  #: kept when ``simulate_tree(keep_truth=True)``


@dataclass(frozen=True, slots=True)
class TreeSummary:
    """What :func:`simulate_tree` wrote."""

    installations: int
    users: int
    files: int
    observations: int
    seconds: float  #: wall-clock time the generation took, seconds
    detail: tuple[SimulatedInstallation, ...] = field(repr=False, default=())

    def as_dict(self) -> dict[str, int | float]:
        """The one-line summary of the CLI."""
        return {
            "installations": self.installations,
            "users": self.users,
            "files": self.files,
            "observations": self.observations,
            "seconds": round(self.seconds, 3),
        }


def simulate_tree(
    out: Path,
    *,
    installations: int,
    minutes: float,
    seed: int = 0,
    start_s: int | None = None,
    max_installations_per_user: int = 4,
    ip_change_share: float = 0.0,
    gap_share: float = 0.0,
    ms_clock_share: float = 0.25,
    address_shares: tuple[float, float, float] = (0.7, 0.2, 0.1),
    schedule: ScheduleMode = "mixed",
    stagger_s: int = 60,
    keep_truth: bool = False,
) -> TreeSummary:
    """
    Write a condenser tree ``out/<user>/<installation>/tix-report-<first ts>.json`` of simulated installations.

    Parameters
    ----------
    out : Path
        Base directory (created if missing). Existing report files of the same names are overwritten.
    installations : int
        Number of installations; users 1, 2, … own 1 to ``max_installations_per_user`` each, and installation ids
        are 1, 2, … across the tree (as the tix-api database numbers them).
    minutes : float
        Length of every installation's run, minutes.
    seed : int
        Seed of everything: the same arguments give a byte-identical tree.
    start_s : int or None
        True Unix time the runs start, seconds; each installation starts up to ``stagger_s`` seconds later.
        Default :data:`DEFAULT_START_S` (never the current time, so the output is deterministic).
    ip_change_share : float
        Share of installations whose client address changes once, at a report in the middle third of the run
        (exercises the IP rule of windows spec §3). Default 0.
    gap_share : float
        Share of installations with one off-line interval of 301-900 s (exercises the gap rule). Default 0.
    ms_clock_share : float
        Share of installations with a millisecond-resolution client clock (older clients).
    address_shares : (float, float, float)
        Weights of public, documentation (RFC 5737) and private (RFC 1918) client addresses; the IP-to-AS
        resolver finds no AS for the last two.
    schedule : {"mixed", "idle", "moderate", "saturated"}
        Queueing schedule kind of every installation.
    keep_truth : bool
        Keep each installation's :class:`GroundTruth` in the summary's ``detail`` (memory: ~100 KB per
        installation for 25 minutes).

    Every file's modification time is set to the true time its packet was sent (the receipt of its last record),
    or to 61 s before now if that lies later, so the processor never takes a report for one still being written.
    Directories are created with mode 0750 as the condenser does.
    """
    if installations < 1:
        raise ValueError(f"`installations` must be at least 1, got {installations!r}")
    if minutes <= 0:
        raise ValueError(f"`minutes` must be positive, got {minutes!r}")
    began = time.perf_counter()
    start = DEFAULT_START_S if start_s is None else int(start_s)
    layout = np.random.default_rng([seed, 0])
    latest_mtime = time.time() - 61.0
    details: list[SimulatedInstallation] = []
    user_id, left_for_user = 0, 0
    for index in range(installations):
        if left_for_user == 0:
            user_id += 1
            left_for_user = int(layout.integers(1, max_installations_per_user + 1))
        left_for_user -= 1
        installation_id = index + 1
        rng = np.random.default_rng([seed, 1, installation_id])
        profile = draw_profile(
            rng,
            minutes=minutes,
            ms_clock_share=ms_clock_share,
            offline=bool(rng.random() < gap_share),
            schedule=schedule,
        )
        run_start = start + int(rng.integers(0, stagger_s + 1))
        records, truth = simulate_installation(rng, start_s=run_start, minutes=minutes, profile=profile)
        parts = split_into_reports(records, rng)
        addresses = [draw_address(rng, _address_kind(rng, address_shares))]
        change_at = len(parts)
        if rng.random() < ip_change_share and len(parts) >= 3:
            change_at = int(rng.integers(len(parts) // 3, max(len(parts) // 3 + 1, 2 * len(parts) // 3)))
            addresses.append(draw_address(rng, _address_kind(rng, address_shares)))
        directory = out / str(user_id) / str(installation_id)
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        # The condenser writes a packet once its last record is in: true receipt time of that record.
        receipt_ns = truth.start_ns + truth.send_rel_ns + truth.up_ns + truth.down_ns
        files = []
        written = 0
        for number, part in enumerate(parts):
            path = write_report(
                directory,
                part,
                from_address=addresses[0 if number < change_at else 1],
                user_id=user_id,
                installation_id=installation_id,
                rng=rng,
            )
            last_probe = truth.probe_index[written + part.size - 1]
            mtime = min(float(receipt_ns[last_probe]) / 1e9 + 1.0, latest_mtime)
            os.utime(path, (mtime, mtime))
            files.append(path)
            written += part.size
        details.append(
            SimulatedInstallation(
                user_id=user_id,
                installation_id=installation_id,
                directory=directory,
                addresses=tuple(addresses),
                files=tuple(files),
                observations=written,
                truth=truth if keep_truth else None,
            )
        )
    return TreeSummary(
        installations=installations,
        users=user_id,
        files=sum(len(d.files) for d in details),
        observations=sum(d.observations for d in details),
        seconds=time.perf_counter() - began,
        detail=tuple(details),
    )
