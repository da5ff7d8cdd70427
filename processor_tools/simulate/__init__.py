"""
Synthetic condenser trees with a known truth: clocks, one-way delays, queueing and loss of simulated clients.

The generator plays the TiX client (one short probe a second, one data packet every 61-65 s) and the condenser
(one ``tix-report-<first ts>.json`` per packet, reports spec §1.1 and §2) for many installations at once. Every
random choice comes from a ``numpy.random.Generator`` derived from the seed, so a seed gives a byte-identical tree.

Model of one installation (all times in nanoseconds unless the name says otherwise):

* **True time** runs from ``start_s``. Probe i leaves when the client's clock reads ``i`` seconds past its first
  tick (plus a timer jitter), so the probes are one *client* second apart.
* **Clocks.** Each clock domain (client, server) reads ``true + offset + skew·(true − start)``, truncated to its
  resolution (1 ns, or 1 ms for older clients). Its nanoseconds-of-day are taken as the reports spec §3.1 says:
  reading minus the UTC epoch of 00:00 of the host's *local* date (``utc_offset_s`` east of UTC), so a UTC−3 client
  runs from 3 h to 27 h and every clock wraps by one day at its own local midnight. A clock with ``local_midnight``
  counts from local midnight in local time instead (0 to 24 h: what the real 2017 client data look like), which
  adds the time-zone offset to the apparent client-server offset — the "hours" of real data.
* **One-way delays** = base (RTT 10-300 ms split asymmetrically) + path jitter (exponential, sub-millisecond) +
  queueing delay. Queueing follows a per-installation schedule of segments (idle / moderate / saturated) per
  direction; inside a segment a two-state Markov chain of seconds (busy share ρ, mean busy run ``burst_s``) decides
  which probes queue, and each busy run draws its own queue level (gamma) modulated per second (log-normal).
* **Loss**: independent losses (1-3 %), loss bursts (geometric lengths), extra loss while saturated, and optionally
  one off-line interval longer than the 300 s gap threshold.
* ``ts`` of a record is the client's wall-clock second when it handled the reply (reports spec §3).

The truth of each installation comes back as a :class:`GroundTruth`; the tree writer can keep it too.

Modules: :mod:`.model` (parameters, ground truth, drawing them), :mod:`.installation` (one installation's records and
its reports), :mod:`.tree` (condenser trees), :mod:`.experiment` (a calibration experiment; needs
requirements-notebook.txt, so it is not imported here), :mod:`.command` (CLI).
"""

from processor_tools.simulate.command import add_arguments, run
from processor_tools.simulate.installation import simulate_installation, split_into_reports
from processor_tools.simulate.model import (
    DAY_NS,
    DEFAULT_START_S,
    ClockModel,
    GroundTruth,
    InstallationProfile,
    QueueLevel,
    QueueSegment,
    draw_level,
    draw_profile,
    draw_schedule,
)
from processor_tools.simulate.tree import SimulatedInstallation, TreeSummary, draw_address, simulate_tree

__all__ = [
    "DAY_NS",
    "DEFAULT_START_S",
    "ClockModel",
    "GroundTruth",
    "InstallationProfile",
    "QueueLevel",
    "QueueSegment",
    "SimulatedInstallation",
    "TreeSummary",
    "add_arguments",
    "draw_address",
    "draw_level",
    "draw_profile",
    "draw_schedule",
    "run",
    "simulate_installation",
    "simulate_tree",
    "split_into_reports",
]
