"""Tests of the original's report API under ``processor.reports`` (compat spec §2): objects, codecs, window rule."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import jsonschema
import pytest

from processor.analysis import Analyzer
from processor.delivery.failed_results import FAILED_RESULTS_DIR, load_failed_result
from processor.errors import UnusableReport
from processor.reports import (
    JSON_REPORT_SCHEMA,
    NotEnoughObservationsError,
    Observation,
    Report,
    ReportHandler,
    ReportJSONDecoder,
    ReportJSONEncoder,
    deserialize_observations,
    nanos_to_micros,
    serialize_observations,
)
from tests.analysis.synthetic import START_S
from tests.compat.conftest import FROM_DIR, make_report, probes, write_reports

FIRST = (1500227866, b"S", 32, 39466456000000, 64666452000000, 64666452000000, 39466595000000)


def names(paths) -> list[str]:
    return sorted(os.path.basename(path) for path in paths)


def present(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".json"))


class TestObservation:
    def test_keeps_its_fields_and_reads_the_timestamps_back(self):
        o = Observation(*FIRST)

        assert (1500227866, b"S", 32) == (o.day_timestamp, o.type_identifier, o.packet_size)
        assert FIRST[3:] == (o.initial_timestamp_nanos, o.reception_timestamp_nanos, o.sent_timestamp_nanos,
                             o.final_timestamp_nanos)  # fmt: skip
        assert FIRST[3:] == (o.initial_timestamp, o.reception_timestamp, o.sent_timestamp, o.final_timestamp)
        assert (0.0, 0.0, 0.0) == (o.upstream_phi, o.downstream_phi, o.estimated_phi)

    def test_timestamp_properties_are_read_only(self):
        with pytest.raises(AttributeError):
            Observation(*FIRST).initial_timestamp = 1  # type: ignore[misc]

    def test_equal_observations_are_one_in_a_set(self):
        assert Observation(*FIRST) == Observation(*FIRST)
        assert 1 == len({Observation(*FIRST), Observation(*FIRST)})
        assert hash(FIRST) == hash(Observation(*FIRST))

    def test_differs_by_any_attribute_and_from_other_types(self):
        other = Observation(*FIRST)
        other.estimated_phi = 1.5

        assert Observation(*FIRST) != other
        assert Observation(*FIRST) != FIRST
        assert Observation(*FIRST).__eq__(FIRST) is NotImplemented


class TestRecordCodec:
    def test_round_trip_keeps_order_and_values(self):
        observations = [*probes(START_S, 5), Observation(START_S + 9, b"L", 4475, 1, 2, 3, 4)]

        message = serialize_observations(observations)

        assert observations == deserialize_observations(message)
        assert observations == deserialize_observations(message.encode("ascii"))
        assert 6 * 45 == len(__import__("base64").b64decode(message))

    def test_decoded_values_are_plain_python_types(self):
        (o,) = deserialize_observations(serialize_observations([Observation(*FIRST)]))

        assert FIRST == (o.day_timestamp, o.type_identifier, o.packet_size, o.initial_timestamp,
                         o.reception_timestamp, o.sent_timestamp, o.final_timestamp)  # fmt: skip
        assert {int, bytes} == {type(value) for value in o.record()}

    def test_no_observations_is_the_empty_message(self):
        assert "" == serialize_observations([])
        assert [] == deserialize_observations("")

    @pytest.mark.parametrize(
        "bad",
        [
            Observation(1, b"SS", 32, 1, 2, 3, 4),  # type of two bytes
            Observation(1, b"S", 2**31, 1, 2, 3, 4),  # size beyond int32
            Observation(2**63, b"S", 32, 1, 2, 3, 4),  # ts beyond int64
        ],
    )
    def test_bad_type_or_out_of_range_value_raises_struct_error(self, bad):
        with pytest.raises(struct.error):
            serialize_observations([bad])

    def test_length_not_a_multiple_of_45_raises_struct_error(self):
        with pytest.raises(struct.error):
            deserialize_observations(__import__("base64").b64encode(b"\0" * 44))

    def test_sample_report_first_record(self, shared_data):
        """Compat spec §2 check value: the shared sample holds 59 records; the first is FIRST."""
        report = Report.load(shared_data / "samples" / "test-tix-report.json")

        assert 59 == len(report.observations)
        assert Observation(*FIRST) == report.observations[0]
        assert 59 == report.get_observations_gap()  # one reply of the minute was lost


class TestReport:
    def test_stores_its_arguments(self):
        observations = probes(START_S, 3)
        report = Report("1.2.3.4:4501", "to", "LONG", 1, 2, 3, 4, "key", observations, "sig", 23, 41)

        assert ("1.2.3.4:4501", "to", "LONG", 1, 2, 3, 4) == (
            report.from_dir, report.to_dir, report.packet_type, report.initial_timestamp,
            report.reception_timestamp, report.sent_timestamp, report.final_timestamp,
        )  # fmt: skip
        assert ("key", "sig", 23, 41, None) == (
            report.public_key,
            report.signature,
            report.user_id,
            report.installation_id,
            report.file_path,
        )
        assert observations is report.observations

    def test_load_sets_the_path_as_given_and_equality_includes_it(self, installation):
        """Original test_load: file_path is set; unequal until it is reset."""
        (path,) = write_reports(installation, 1)
        written = make_report(START_S)

        loaded = Report.load(path)

        assert path == loaded.file_path
        assert written != loaded
        loaded.file_path = None
        assert written == loaded

    def test_observations_compare_as_ordered_lists(self):
        report = make_report(START_S)
        reordered = make_report(START_S)
        reordered.observations = tuple(reordered.observations)  # type: ignore[assignment]

        assert report == reordered
        reordered.observations = list(reversed(report.observations))
        assert report != reordered

    def test_is_unhashable(self):
        with pytest.raises(TypeError):
            hash(make_report(START_S))

    def test_gaps(self):
        """Original tests: 60 one-second probes span 59 s; consecutive reports a minute apart are 60 s apart."""
        first, second = make_report(START_S), make_report(START_S + 60)

        assert 59 == first.get_observations_gap()
        assert 60 == Report.get_gap_between_reports(second, first)

    def test_load_of_a_file_that_is_not_a_report(self, tmp_path):
        (tmp_path / "other.json").write_text('{"a": 1}')
        (tmp_path / "broken.json").write_text("{")

        with pytest.raises(UnusableReport, match="schema"):
            Report.load(tmp_path / "other.json")
        with pytest.raises(UnusableReport, match="not_json"):
            Report.load(tmp_path / "broken.json")


class TestJSONCodec:
    def test_round_trip_is_equal_and_validates(self):
        """Original TestReports.test_JSONCoDec."""
        report = make_report(START_S)

        text = json.dumps(report, cls=ReportJSONEncoder)

        jsonschema.validate(json.loads(text), JSON_REPORT_SCHEMA)
        assert report == json.loads(text, cls=ReportJSONDecoder)

    def test_encoder_writes_the_12_members_in_the_original_order_without_the_path(self):
        report = make_report(START_S)
        report.file_path = "/somewhere/tix-report-1500000000.json"

        document = json.loads(json.dumps(report, cls=ReportJSONEncoder))

        assert [
            "initialTimestamp", "receptionTimestamp", "sentTimestamp", "finalTimestamp", "publicKey", "signature",
            "userId", "installationId", "from", "to", "type", "message",
        ] == list(document)  # fmt: skip
        assert serialize_observations(report.observations) == document["message"]

    def test_encoder_refuses_other_objects(self):
        with pytest.raises(TypeError):
            json.dumps(object(), cls=ReportJSONEncoder)

    def test_decoder_makes_reports_of_fitting_objects_only(self):
        report = make_report(START_S)
        text = json.dumps({"reports": [report], "other": {"from": "x"}}, cls=ReportJSONEncoder)

        decoded = json.loads(text, cls=ReportJSONDecoder)

        assert [report] == decoded["reports"]
        assert {"from": "x"} == decoded["other"]
        assert None is decoded["reports"][0].file_path

    def test_decoder_ignores_extra_members(self):
        """C4 (S11): a report with members beyond the 12 is read, the extra ones ignored."""
        document = json.loads(json.dumps(make_report(START_S), cls=ReportJSONEncoder)) | {"extra": 1}

        assert make_report(START_S) == json.loads(json.dumps(document), cls=ReportJSONDecoder)

    def test_schema_requires_the_12_members_with_their_types_and_accepts_any_address_text(self):
        document = json.loads(json.dumps(make_report(START_S), cls=ReportJSONEncoder))
        document["to"] = "[0:0:0:0:0:0:0:0%0]:4500"

        jsonschema.validate(document, JSON_REPORT_SCHEMA)
        assert 12 == len(JSON_REPORT_SCHEMA["required"])
        for key, wrong in (("userId", "23"), ("message", 1), ("from", 1)):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(document | {key: wrong}, JSON_REPORT_SCHEMA)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({k: v for k, v in document.items() if k != "signature"}, JSON_REPORT_SCHEMA)


class TestReportHandler:
    def test_constants(self):
        assert (1084, 1200, 540, 300) == (
            ReportHandler.MINIMUM_OBSERVATIONS_QTY, ReportHandler.MAXIMUM_OBSERVATIONS_QTY,
            ReportHandler.BACK_UP_OBSERVATIONS_QTY_PROCESSING_THRESHOLD, ReportHandler.GAP_THRESHOLD,
        )  # fmt: skip
        assert int is type(ReportHandler.GAP_THRESHOLD)
        assert FAILED_RESULTS_DIR == ReportHandler.FAILED_RESULTS_DIR_NAME == "failed-results"
        assert "failed-report-{timestamp}.json" == ReportHandler.FAILED_REPORT_FILE_NAME_TEMPLATE

    def test_init(self, installation):
        """Original test_init: the paths as given, failed-results/ created, the reports listed in name order."""
        paths = write_reports(installation, 3)
        (installation / ".hidden.json").write_text("{}")
        (installation / "notes.txt").write_text("")

        handler = ReportHandler(str(installation))

        assert str(installation) == handler.installation_dir_path
        assert os.path.join(str(installation), "failed-results") == handler.failed_results_dir_path
        assert os.path.isdir(handler.failed_results_dir_path)
        assert paths == handler.reports_files
        assert [] == handler.processable_reports
        assert list(reversed(paths)) == ReportHandler.fetch_reports(str(installation), last_first=True)

    def test_returns_reports_if_enough_processable_reports(self, installation):
        """19 files of 60 probes (1140 > 1084) are one window; nothing is deleted."""
        paths = write_reports(installation, 19)

        ip, observations = ReportHandler(installation).get_ip_and_processable_observations()

        assert "203.0.113.45" == ip
        assert isinstance(observations, set)
        assert 19 * 60 == len(observations)
        assert names(paths) == present(installation)

    def test_returns_None_if_not_enough_processable_reports(self, installation):
        paths = write_reports(installation, 10)
        handler = ReportHandler(installation)

        assert (None, None) == handler.get_ip_and_processable_observations()
        assert [] == handler.processable_reports
        assert names(paths) == present(installation)

    def test_doesnt_return_reports_if_gap_threshold_exceeded_in_reports(self, installation):
        """
        Ten files, then ten starting 300 s after the last probe: the first ten are deleted, no window.

        First probe to first probe the gap is 359 s (> 300). Measured from the last probe it would be exactly
        300, which the rule's "> 300" would accept.
        """
        write_reports(installation, 10)
        after = write_reports(installation, 10, first_ts=START_S + 9 * 60 + 59 + 300)
        handler = ReportHandler(installation)

        assert (None, None) == handler.get_ip_and_processable_observations()
        assert names(after) == present(installation)

    def test_doesnt_return_reports_if_not_enough_reports_from_one_ip(self, installation):
        """Ten files, then ten from a bare '8.8.4.4': the first ten are deleted, no window."""
        write_reports(installation, 10)
        after = write_reports(installation, 10, first_ts=START_S + 600, from_dir="8.8.4.4")
        handler = ReportHandler(installation)

        assert (None, None) == handler.get_ip_and_processable_observations()
        assert names(after) == present(installation)

    def test_window_after_an_ip_change_has_the_new_ip(self, installation):
        write_reports(installation, 5)
        after = write_reports(installation, 19, first_ts=START_S + 300, from_dir="8.8.4.4")

        ip, observations = ReportHandler(installation).get_ip_and_processable_observations()

        assert "8.8.4.4" == ip
        assert 19 * 60 == len(observations or ())
        assert names(after) == present(installation)

    def test_window_takes_the_first_files_only_and_the_older_half_is_deleted(self, installation):
        paths = write_reports(installation, 25)
        handler = ReportHandler(installation)

        handler.get_ip_and_processable_observations()
        assert paths[:19] == [report.file_path for report in handler.processable_reports]
        handler.delete_unneeded_reports()

        assert names(paths[9:]) == present(installation)

    def test_files_that_are_not_reports_are_skipped_and_left_in_place(self, installation):
        write_reports(installation, 19)
        (installation / f"tix-report-{START_S + 1}.json").write_text('{"not": "a report"}')
        (installation / f"tix-report-{START_S + 2}.json").write_text("")

        _, observations = ReportHandler(installation).get_ip_and_processable_observations()

        assert 19 * 60 == len(observations or ())
        assert 21 == len(present(installation))

    def test_collect_observations(self):
        """Original test: the ip is the address part of FROM_DIR; the set is the union of the observations."""
        reports = [make_report(START_S), make_report(START_S + 30)]  # overlapping by 30 probes

        ip, observations = ReportHandler.collect_observations(reports)

        assert FROM_DIR.startswith(ip)
        assert set(reports[0].observations) | set(reports[1].observations) == observations
        assert 90 == len(observations)
        assert (None, set()) == ReportHandler.collect_observations([])

    def test_collect_observations_parses_addresses_as_the_service_does(self):
        """C4 (D5): IPv6 in brackets and bare addresses give the address; IPv4 gives the original's text."""
        v6 = make_report(1, from_dir="[2001:DB8:0:0:0:0:0:1]:4501")
        bare = make_report(1, from_dir="8.8.4.4")

        assert "2001:db8::1" == ReportHandler.collect_observations([v6])[0]
        assert "8.8.4.4" == ReportHandler.collect_observations([bare])[0]

    def test_gap_helpers_follow_the_window_rule(self):
        reports = [make_report(START_S), make_report(START_S + 60), make_report(START_S + 500)]

        assert 440 == ReportHandler.max_gap_in_reports(reports)
        assert (reports[:2], reports[2:]) == ReportHandler.divide_gapped_reports(reports)
        assert 180 == ReportHandler.calculate_observations_quantity(reports)

    def test_one_file_window_still_deletes_one_file(self, installation):
        """C4 (S1): a window of one report removes that report (the original removed none and looped)."""
        report = make_report(START_S, n=1100)
        with open(installation / f"tix-report-{START_S}.json", "w") as handle:
            json.dump(report, handle, cls=ReportJSONEncoder)
        handler = ReportHandler(installation)

        handler.get_ip_and_processable_observations()
        handler.delete_unneeded_reports()

        assert [] == present(installation)

    def test_back_up_failed_results(self, installation):
        handler = ReportHandler(installation)
        results = {
            "timestamp": 1505002807,
            "upstream": {"usage": 1.25, "quality": 1.0, "hurst": {"wavelet": 0.7, "rs": 0.6}},
            "downstream": {"usage": 0.25, "quality": 0.5, "hurst": {"wavelet": 0.8, "rs": 0.9}},
        }
        assert handler.failed_results_dir_is_empty()

        handler.back_up_failed_results(results, "203.0.113.45")

        path = installation / "failed-results" / "failed-report-1505002807.json"
        assert {"results": results, "ip": "203.0.113.45"} == json.loads(path.read_text())
        assert not handler.failed_results_dir_is_empty()
        # The service re-sends it as a file of the original.
        stored = load_failed_result(path)
        assert ("203.0.113.45", 1505002807) == (stored.ip, stored.results["timestamp"])

    def test_failed_results_dir_is_empty_when_missing(self, installation):
        handler = ReportHandler(installation)
        os.rmdir(handler.failed_results_dir_path)

        assert handler.failed_results_dir_is_empty()

    def test_other_names(self):
        assert 39466456000 == nanos_to_micros(39466456000999)
        assert issubclass(NotEnoughObservationsError, Exception)


def test_service_loop_of_the_original_on_tree_23_41(shared_data, tmp_path):
    """
    The original service loop written with this API on a copy of the raw tree 23/41 forms the original's windows.

    The first four give its values; the fifth, where the original crashed at midnight, now gives a result (C2).
    """
    reference = json.loads((shared_data / "reference" / "pipeline-23-41.json").read_text())
    directory = tmp_path / "41"
    shutil.copytree(shared_data / "reports-tree" / "23" / "41", directory)
    formed = []

    for _ in reference["windows"]:
        handler = ReportHandler(str(directory))
        ip, observations = handler.get_ip_and_processable_observations()
        files = [os.path.basename(report.file_path) for report in handler.processable_reports]
        formed.append((ip, files, Analyzer(observations or ()).get_results()))
        handler.delete_unneeded_reports()

    for window, (ip, files, results) in zip(reference["windows"], formed, strict=True):
        assert window["report_files"] == files
        assert window["ip"] == ip
        if window["error"] is None and not window["crosses_midnight"]:
            assert window["results"]["timestamp"] == results["timestamp"]
            for direction in ("upstream", "downstream"):
                for key in ("usage", "quality"):
                    assert pytest.approx(window["results"][direction][key], abs=1e-9) == results[direction][key]
                for key in ("rs", "wavelet"):
                    expected = window["results"][direction]["hurst"][key]
                    assert pytest.approx(expected, abs=1e-6) == results[direction]["hurst"][key]
    assert reference["windows"][-1]["error"] is not None
