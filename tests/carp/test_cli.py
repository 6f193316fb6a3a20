"""The daemon's command line and config file, and the decode tool (no root needed)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from pathlib import Path

import pytest

from cluster.carp.__main__ import JsonFormatter, main
from cluster.carp.config import build_parser, configs_from_args, hooks_from_args
from cluster.carp.types import ConfigError
from tests.carp.test_pcap import OTHER_PASSWORD, OTHER_VIP, two_clusters

CAPTURE = Path(__file__).parent / "data" / "ucarp-vhid42-eth.pcap"


def configs(*argv: str):
    return configs_from_args(build_parser().parse_args(["run", *argv]))


def test_it_takes_ucarps_short_options_and_a_bare_ip_means_a_host_address():
    (config,) = configs(
        "-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "s3cret", "-a", "192.0.2.100",
        "-b", "1", "-k", "100", "-P", "-z",
    )  # fmt: skip
    assert config.interface == "eth0"
    assert config.vhid == 42
    assert config.password == b"s3cret"
    assert config.addresses == (ipaddress.ip_interface("192.0.2.100/32"),)
    assert (config.advbase, config.advskew, config.preempt) == (1, 100, True)
    assert config.src_ip == ipaddress.ip_address("192.0.2.11")


def test_it_takes_the_long_options_repeated_addresses_and_no_preempt(tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_text("fromfile\n")
    (config,) = configs(
        "--interface", "eth0", "--srcip", "192.0.2.11", "--srcip", "2001:db8::b",
        "--vhid", "7", "--passfile", str(passfile), "--addr", "2001:db8::100",
        "--addr", "192.0.2.100/24", "--no-preempt",
    )  # fmt: skip
    assert config.password == b"fromfile"
    assert config.addresses == (
        ipaddress.ip_interface("2001:db8::100/128"),
        ipaddress.ip_interface("192.0.2.100/24"),
    )
    assert config.preempt is False
    # The first address is IPv6, so the vhost advertises over IPv6 from the IPv6 source.
    assert config.src_ip == ipaddress.ip_address("2001:db8::b")


def test_preemption_is_on_by_default():
    (config,) = configs("-i", "eth0", "-s", "192.0.2.11", "-v", "1", "-p", "x", "-a", "192.0.2.1")
    assert config.preempt is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-i", "eth0", "-v", "1", "-p", "x", "-a", "192.0.2.1"], "srcip"),
        (["-i", "eth0", "-s", "192.0.2.11", "-v", "1", "-a", "192.0.2.1"], "password"),
        (["-i", "eth0", "-s", "192.0.2.11", "-v", "1", "-p", "x"], "address"),
        (["-i", "eth0", "-s", "192.0.2.11", "-v", "1", "-p", "x" * 20, "-a", "192.0.2.1"], "19"),
        (["-i", "eth0", "-s", "192.0.2.11", "-v", "300", "-p", "x", "-a", "192.0.2.1"], "vhid"),
        (["-i", "eth0", "-s", "192.0.2.11", "-v", "1", "-p", "x", "-a", "nonsense"], "address"),
    ],
)
def test_it_refuses_a_bad_command_line_with_a_clear_message(argv, message):
    with pytest.raises(ConfigError, match=message):
        configs(*argv)


def test_a_toml_config_holds_many_vhosts_with_defaults(tmp_path):
    path = tmp_path / "carp.toml"
    path.write_text(
        'interface = "eth0"\nsrcip = ["192.0.2.11", "2001:db8::b"]\npassword = "s3cret"\n'
        'upscript = "/bin/up"\n'
        '[[vhost]]\nvhid = 1\naddresses = ["192.0.2.101"]\n'
        '[[vhost]]\nvhid = 2\naddresses = ["2001:db8::102/64"]\nadvskew = 100\npreempt = false\n'
    )
    args = build_parser().parse_args(["run", "--config", str(path), "--advbase", "2"])
    one, two = configs_from_args(args)
    assert (one.vhid, one.advbase, one.advskew, one.src_ip) == (
        1, 2, 0, ipaddress.ip_address("192.0.2.11"),
    )  # fmt: skip
    assert (two.vhid, two.advskew, two.preempt, two.src_ip) == (
        2, 100, False, ipaddress.ip_address("2001:db8::b"),
    )  # fmt: skip
    assert hooks_from_args(args) == ("/bin/up", None)


def test_a_json_config_works_too_and_a_duplicate_vhid_is_refused(tmp_path):
    path = tmp_path / "carp.json"
    vhost = {"vhid": 1, "addresses": ["192.0.2.101"]}
    path.write_text(
        json.dumps({"interface": "eth0", "srcip": "192.0.2.11", "password": "p", "vhosts": [vhost]})
    )
    assert [c.vhid for c in configs("--config", str(path))] == [1]
    path.write_text(
        json.dumps(
            {"interface": "eth0", "srcip": "192.0.2.11", "password": "p", "vhosts": [vhost, vhost]}
        )
    )
    with pytest.raises(ConfigError, match="twice"):
        configs("--config", str(path))


def test_run_exits_2_on_a_bad_configuration(monkeypatch):
    # Keep the root logger as pytest set it up.
    monkeypatch.setattr("cluster.carp.__main__.setup_logging", lambda *a: None)
    assert main(["run", "-i", "eth0", "-v", "1", "-p", "x", "-a", "192.0.2.1"]) == 2


def test_json_logs_are_one_object_per_line_with_the_extra_fields():
    record = logging.LogRecord("cluster.carp", logging.INFO, __file__, 1, "vhid %d", (42,), None)
    record.event = "transition"
    record.reason = "master_down"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "vhid 42"
    assert entry["event"] == "transition"
    assert entry["reason"] == "master_down"
    assert entry["level"] == "info"


def test_decode_verifies_every_advert_of_a_real_ucarp_capture(capsys):
    status = main(["decode", str(CAPTURE), "--pass", "s3cret", "--addr", "192.0.2.100"])
    out = capsys.readouterr().out
    assert status == 0
    assert "vhid 42" in out
    assert "checksum ok, hmac ok" in out
    assert "hmac BAD" not in out


def test_decode_says_which_adverts_a_wrong_password_fails(capsys):
    status = main(["decode", str(CAPTURE), "--pass", "wrong", "--addr", "192.0.2.100"])
    out = capsys.readouterr().out
    assert status == 1
    assert "hmac BAD" in out
    assert "0 of" in out


def test_decode_exits_2_on_a_file_that_is_not_a_capture(tmp_path, capsys):
    bogus = tmp_path / "bogus.pcap"
    bogus.write_bytes(b"not a capture at all")
    assert main(["decode", str(bogus), "--pass", "x"]) == 2


def test_decode_without_vhid_names_the_vhids_of_a_capture_of_several_clusters(tmp_path, capsys):
    # The other cluster's adverts fail (other password and addresses): say why, and what to do.
    path = tmp_path / "two.pcap"
    path.write_bytes(two_clusters())
    assert main(["decode", str(path), "--pass", "s3cret", "--addr", "192.0.2.100"]) == 1
    captured = capsys.readouterr()
    assert "4 CARP packet(s) of vhids 7 (1), 42 (2) and 1 too short for a vhid:" in captured.out
    assert "adverts of vhids 7, 42" in captured.err
    assert "--vhid" in captured.err


def test_decode_with_vhid_checks_only_those_adverts(tmp_path, capsys):
    path = tmp_path / "two.pcap"
    path.write_bytes(two_clusters())
    ours = ["decode", str(path), "--pass", "s3cret", "--addr", "192.0.2.100"]
    assert main([*ours, "--vhid", "42"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("#")] == ["#1", "#3"]
    assert "2 CARP packet(s) of vhid 42: 2 checksum ok, 2 of 2 hmac ok, 2 fully valid" in out
    assert out.splitlines()[-1] == (
        "skipped 2 CARP packet(s) of vhid 7 (1) and 1 too short for a vhid (not selected)"
    )
    theirs = ["decode", str(path), "-p", OTHER_PASSWORD.decode(), "-a", str(OTHER_VIP), "-v", "7"]
    assert main(theirs) == 0
    # Exit codes apply to the selection: both vhids with one password fails.
    assert main([*ours, "--vhid", "42", "--vhid", "7"]) == 1
    capsys.readouterr()
    # A vhid with no advert in the capture is not a success (a typo would look like one).
    assert main([*ours, "--vhid", "42", "--vhid", "43"]) == 1
    assert "no advert of vhid 43 in the capture (it holds vhids 7, 42)" in capsys.readouterr().err


@pytest.mark.parametrize("vhid", ["0", "256", "abc"])
def test_decode_refuses_a_vhid_out_of_range_as_a_usage_error(vhid, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", str(CAPTURE), "--pass", "s3cret", "--vhid", vhid])
    assert exit_info.value.code == 2
    assert "argument -v/--vhid: a vhid is a whole number 1..255" in capsys.readouterr().err


def test_decode_of_a_single_cluster_names_its_vhid_and_gives_no_advice(capsys):
    assert main(["decode", str(CAPTURE), "--pass", "s3cret", "--addr", "192.0.2.100"]) == 0
    captured = capsys.readouterr()
    assert " CARP packet(s) of vhid 42: " in captured.out
    assert captured.err == ""


@pytest.mark.parametrize("password", ["x" * 20, "é" * 10])  # 20 bytes, in characters or UTF-8
def test_decode_refuses_a_password_longer_than_19_bytes_as_a_usage_error(password, capsys):
    # It used to be taken, and every advert reported "hmac BAD".
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", str(CAPTURE), "--pass", password, "--addr", "192.0.2.100"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "argument -p/--pass: the password is at most 19 bytes" in captured.err
    assert "hmac" not in captured.out
    # 19 bytes is allowed: the HMAC is checked (and fails: not the capture's password).
    assert main(["decode", str(CAPTURE), "--pass", "x" * 19, "--addr", "192.0.2.100"]) == 1
    assert "hmac BAD" in capsys.readouterr().out


def test_carp_mds_ucarp_command_line_is_taken_as_it_is():
    # CARP.md "Testing against a real peer", with only the program name changed.
    args = build_parser().parse_args(
        ["run", "-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "s3cret", "-a", "192.0.2.100",
         "-b", "1", "-k", "0", "-P", "-z", "-f", "none", "-u", "up.sh", "-d", "down.sh",
         "-x", "extra"]
    )  # fmt: skip
    (config,) = configs_from_args(args)
    assert (config.vhid, config.advskew, config.preempt) == (42, 0, True)
    assert args.xparam == "extra"
    assert args.log_level == "INFO"


@pytest.mark.parametrize(
    ("argv", "level"),
    [([], "INFO"), (["--log-level", "debug"], "DEBUG"), (["-D"], "DEBUG")],
)
def test_the_log_level_is_case_insensitive_and_d_is_debug(argv, level):
    args = build_parser().parse_args(["run", *argv])
    assert args.log_level == level


def test_a_bad_log_level_or_an_unsupported_ucarp_option_is_a_usage_error_naming_it(capsys):
    # It used to reach logging.setLevel and end in a traceback with status 1.
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "-i", "eth0", "--log-level", "loud"])
    assert exit_info.value.code == 2
    assert "--log-level" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "-i", "eth0", "-B"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: -B" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A misspelt advskew used to mean advskew 0: this node would become the Primary.
        ('[[vhost]]\nvhid = 1\naddresses = ["192.0.2.101"]\nadvksew = 100\n',
         "unknown key 'advksew'; did you mean 'advskew'"),
        ('prempt = false\n[[vhost]]\nvhid = 1\naddresses = ["192.0.2.101"]\n',
         "unknown key 'prempt'; did you mean 'preempt'"),
        ('[[vhost]]\nvhid = 1\naddresses = ["192.0.2.101"]\npreempt = "false"\n',
         "preempt must be true or false"),
        ('[[vhost]]\nvhid = "one"\naddresses = ["192.0.2.101"]\n', "vhid must be a whole number"),
        ("vhost = [1]\n", "vhost #1: must be a table"),
    ],
)  # fmt: skip
def test_a_config_file_with_an_unknown_key_or_a_wrong_type_is_refused(tmp_path, text, message):
    path = tmp_path / "carp.toml"
    path.write_text(f'interface = "eth0"\nsrcip = "192.0.2.11"\npassword = "p"\n{text}')
    with pytest.raises(ConfigError, match=message):
        configs("--config", str(path))


def test_a_vip_that_is_the_nodes_own_address_is_refused():
    # A stop removes every prefix of a VIP, so this would delete the node's 192.0.2.11/24.
    with pytest.raises(ConfigError, match=re.escape("192.0.2.11 is this node's own address")):
        configs("-i", "eth0", "-s", "192.0.2.11", "-v", "1", "-p", "x", "-a", "192.0.2.11")


def test_one_address_in_two_vhids_is_refused(tmp_path):
    path = tmp_path / "carp.toml"
    path.write_text(
        'interface = "eth0"\nsrcip = "192.0.2.11"\npassword = "p"\n'
        '[[vhost]]\nvhid = 1\naddresses = ["192.0.2.101"]\n'
        '[[vhost]]\nvhid = 2\naddresses = ["192.0.2.102", "192.0.2.101/24"]\n'
    )
    with pytest.raises(ConfigError, match=re.escape("192.0.2.101 is in vhid 1 and vhid 2")):
        configs("--config", str(path))


def test_a_srcip_that_is_not_an_address_of_the_node_is_reported_before_starting():
    # The kernel refused every advert ("Network is unreachable") while the daemon
    # still became MASTER and took the VIP beside the real master.
    from cluster.carp.__main__ import missing_source
    from cluster.carp.fakes import FakeAddresses

    addresses = FakeAddresses()
    addresses.add("eth0", [ipaddress.ip_interface("192.0.2.11/24")])
    addresses.add("lo", [ipaddress.ip_interface("192.0.2.50/32")])
    for source in ("192.0.2.11", "192.0.2.50"):  # any local address can be the source
        good = configs("-i", "eth0", "-s", source, "-v", "1", "-p", "x", "-a", "192.0.2.100")
        assert missing_source(good, addresses, ["lo", "eth0"]) is None
    bad = configs("-i", "eth0", "-s", "192.0.2.99", "-v", "1", "-p", "x", "-a", "192.0.2.100")
    assert missing_source(bad, addresses, ["lo", "eth0"]) == (
        "vhid 1: --srcip 192.0.2.99 is not an address of this node, so no advert could be sent"
        " from it"
    )


def test_peer_only_takes_adverts_from_the_named_peers_only():
    (config,) = configs(
        "-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "s3cret", "-a", "192.0.2.100",
        "--peer-only", "192.0.2.12", "--peer-only", "192.0.2.13", "--strict-counters",
    )  # fmt: skip
    assert config.peers == {ipaddress.ip_address("192.0.2.12"), ipaddress.ip_address("192.0.2.13")}
    assert config.strict_counters is True
    (plain,) = configs("-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "x", "-a", "192.0.2.100")
    assert (plain.peers, plain.strict_counters) == (frozenset(), False)


def test_strict_counters_without_peers_is_refused():
    with pytest.raises(ConfigError, match=r"strict_counters \(--strict-counters\) needs peers"):
        configs(
            "-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "x", "-a", "192.0.2.100",
            "--strict-counters",
        )  # fmt: skip
