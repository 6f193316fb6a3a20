"""The capture decoder: the committed ucarp captures, plus small captures built here for the
formats and link types a real capture may come in (pcapng, SLL, VLAN, raw IP, IPv6)."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from pathlib import Path

import pytest

from cluster.carp import pcap, wire

DATA = Path(__file__).parent / "data"
ETH_CAPTURE = DATA / "ucarp-vhid42-eth.pcap"
ANY_CAPTURE = DATA / "ucarp-vhid42-any.pcap"  # tcpdump -i any: Linux cooked (SLL2)
PASSWORD = b"s3cret"
VIP = ipaddress.IPv4Address("192.0.2.100")
NODE_A = ipaddress.IPv4Address("192.0.2.11")
NODE_B = ipaddress.IPv4Address("192.0.2.12")
GROUP = ipaddress.IPv4Address("224.0.0.18")


# ---- the committed captures ----


def test_the_ethernet_capture_holds_both_nodes_adverts():
    packets = pcap.read_file(ETH_CAPTURE)
    assert len(packets) >= 20
    assert {p.source for p in packets} == {NODE_A, NODE_B}
    assert {p.destination for p in packets} == {GROUP}
    assert {p.ttl for p in packets} == {255}
    assert [p.frame for p in packets] == list(range(1, len(packets) + 1))
    assert packets == sorted(packets, key=lambda p: p.timestamp)


def test_the_cooked_capture_holds_the_same_adverts():
    eth = pcap.read_file(ETH_CAPTURE)
    cooked = pcap.read_file(ANY_CAPTURE)
    assert [p.payload for p in cooked] == [p.payload for p in eth]


def test_every_captured_advert_verifies_with_the_right_password():
    for capture in (ETH_CAPTURE, ANY_CAPTURE):
        results = pcap.decode_file(capture, PASSWORD, [VIP])
        assert all(r.error is None for r in results)
        assert all(r.checksum_ok and r.hmac_ok for r in results)
        assert {r.advert.advskew for r in results if r.advert} == {0, 100}


def test_a_wrong_password_is_reported_per_advert():
    results = pcap.decode_file(ETH_CAPTURE, b"wrong", [VIP])
    assert all(r.hmac_ok is False for r in results)
    assert all(r.error is wire.DecodeFailure.BAD_HMAC for r in results)
    assert all(r.checksum_ok for r in results)
    assert "wrong password" in results[0].hint


def test_a_peer_hashing_fewer_addresses_is_explained():
    # ucarp hashes its one address; a node configured with two would log "Bad digest".
    results = pcap.decode_file(ETH_CAPTURE, PASSWORD, [VIP, ipaddress.IPv4Address("192.0.2.101")])
    assert results[0].hmac_ok is False
    assert "verifies with only 192.0.2.100" in results[0].hint


def test_without_a_password_only_the_hmac_is_not_checked():
    results = pcap.decode_file(ETH_CAPTURE)
    assert all(r.hmac_ok is None and r.error is None and r.checksum_ok for r in results)
    assert "hmac not checked" in pcap.format_report(results)


def test_the_report_shows_fields_and_verdicts():
    results = pcap.decode_file(ETH_CAPTURE, PASSWORD, [VIP])
    report = pcap.format_report(results).splitlines()
    assert len(report) == len(results) + 1
    first = report[0]
    assert first.startswith("#1 ")
    for part in ["192.0.2.11 > 224.0.0.18", "ttl 255", "vhid 42", "advbase 1", "advskew 0"]:
        assert part in first
    assert first.endswith("checksum ok, hmac ok")
    n = len(results)
    assert report[-1] == (
        f"{n} CARP packet(s) of vhid 42: {n} checksum ok, {n} of {n} hmac ok, {n} fully valid"
    )


# ---- captures built here ----

VIPS6 = [ipaddress.IPv6Address("2001:db8::100")]
SRC6 = ipaddress.IPv6Address("2001:db8::11")


def advert_bytes(vhid: int = 42, advskew: int = 0, addresses=(VIP,)) -> bytes:
    return wire.encode(vhid, 1, advskew, 0, 7, PASSWORD, list(addresses))


def ipv4(payload: bytes, *, proto: int = 112, ttl: int = 255, src=NODE_A, dst=GROUP) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, proto, 0, src.packed, dst.packed
    )
    return header + payload


def ipv6(payload: bytes, *, hop_by_hop: bool = False, hlim: int = 255) -> bytes:
    dst = ipaddress.IPv6Address("ff02::12")
    if hop_by_hop:
        ext = bytes([112, 0]) + bytes(6)  # next header CARP, 8 bytes of padding options
        next_header, body = 0, ext + payload
    else:
        next_header, body = 112, payload
    header = struct.pack(
        "!IHBB16s16s", 0x60000000, len(body), next_header, hlim, SRC6.packed, dst.packed
    )
    return header + body


def ethernet(packet: bytes, ethertype: int = 0x0800, vlan: int | None = None) -> bytes:
    macs = bytes.fromhex("01005e000012") + bytes.fromhex("00005e00002a")
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return macs + tag + struct.pack("!H", ethertype) + packet + bytes(4)  # with trailer


def sll(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), ethertype) + packet


def classic(linktype: int, frames: list[bytes], *, order: str = "<", nanos: bool = False) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1_700_000_000 + i, 500, len(frame), len(frame)) + frame
    return out


def pcapng(linktype: int, frames: list[bytes]) -> bytes:
    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # nanoseconds
    out += block(1, struct.pack("<HHI", linktype, 0, 65535) + tsresol)
    for frame in frames:
        ts = 1_700_000_000_250_000_000
        out += block(
            6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
        )
    return out


def test_a_big_endian_nanosecond_pcap_is_read():
    data = classic(1, [ethernet(ipv4(advert_bytes()))], order=">", nanos=True)
    [packet] = pcap.read_packets(data)
    assert packet.payload == advert_bytes()
    assert packet.timestamp == pytest.approx(1_700_000_000 + 500e-9)


def test_ethernet_trailers_are_cut_by_the_ip_length_and_vlan_tags_skipped():
    [packet] = pcap.read_packets(classic(1, [ethernet(ipv4(advert_bytes()), vlan=5)]))
    assert len(packet.payload) == wire.HEADER_LEN


def test_linux_cooked_v1_and_raw_ip_are_read():
    for linktype, frame in [(113, sll(ipv4(advert_bytes()))), (101, ipv4(advert_bytes()))]:
        [packet] = pcap.read_packets(classic(linktype, [frame]))
        assert packet.source == NODE_A


def test_pcapng_is_read_with_its_timestamp_resolution():
    [packet] = pcap.read_packets(pcapng(1, [ethernet(ipv4(advert_bytes()))]))
    assert packet.timestamp == pytest.approx(1_700_000_000.25)
    assert wire.decode(packet.payload, PASSWORD, [VIP]).vhid == 42


def test_ipv6_adverts_are_read_past_extension_headers():
    payload = advert_bytes(addresses=VIPS6)
    frames = [ethernet(ipv6(payload), 0x86DD), ethernet(ipv6(payload, hop_by_hop=True), 0x86DD)]
    packets = pcap.read_packets(classic(1, frames))
    assert [p.payload for p in packets] == [payload, payload]
    assert packets[0].source == SRC6
    [result, _] = pcap.inspect(packets, PASSWORD, VIPS6)
    assert result.hmac_ok
    assert result.error is None


def test_other_protocols_are_skipped_but_keep_their_frame_numbers():
    frames = [
        ethernet(ipv4(b"udp!", proto=17)),
        ethernet(b"", 0x0806),
        ethernet(ipv4(advert_bytes())),
    ]
    [packet] = pcap.read_packets(classic(1, frames))
    assert packet.frame == 3


def test_damaged_adverts_are_reported_not_raised():
    damaged = bytearray(advert_bytes())
    damaged[2] = 9  # advskew changed, checksum now wrong
    frames = [ipv4(bytes(damaged)), ipv4(b"\x21\x2a"), ipv4(advert_bytes(), ttl=64)]
    frames.append(ipv4(advert_bytes()))
    results = pcap.inspect(pcap.read_packets(classic(101, frames)), PASSWORD, [VIP])
    bad_sum, short, low_ttl, good = results
    assert bad_sum.error is wire.DecodeFailure.BAD_CHECKSUM
    assert bad_sum.checksum_ok is False
    assert short.advert is None
    assert short.error is wire.DecodeFailure.TOO_SHORT
    assert low_ttl.error is wire.DecodeFailure.BAD_TTL
    assert good.error is None
    report = pcap.format_report(results)
    assert "checksum BAD" in report
    assert "too short for CARP" in report
    assert "ttl 64 (BAD: must be 255)" in report
    assert report.splitlines()[-1].endswith("1 fully valid")


def test_a_bow_out_is_labelled():
    bow_out = wire.encode(42, 255, 255, 0, 1, PASSWORD, [VIP])
    results = pcap.inspect(pcap.read_packets(classic(101, [ipv4(bow_out)])), PASSWORD, [VIP])
    assert "[bow-out]" in pcap.format_report(results)


OTHER_PASSWORD = b"other"
OTHER_VIP = ipaddress.IPv4Address("198.51.100.7")


def two_clusters() -> bytes:
    """A segment with two clusters: vhid 42 (s3cret, 192.0.2.100) and vhid 7 (other, VIP .7)."""
    ours = advert_bytes()
    theirs = wire.encode(7, 1, 50, 0, 9, OTHER_PASSWORD, [OTHER_VIP])
    return classic(101, [ipv4(ours), ipv4(theirs, src=NODE_B), ipv4(ours), ipv4(b"\x21")])


def test_a_capture_of_several_clusters_names_the_vhids_it_holds(tmp_path):
    # Adverts of another cluster cannot verify with our password and addresses.
    path = tmp_path / "two.pcap"
    path.write_bytes(two_clusters())
    results = pcap.decode_file(path, PASSWORD, [VIP])
    assert [r.hmac_ok for r in results] == [True, False, True, None]
    report = pcap.format_report(results).splitlines()
    assert report[-1].startswith(
        "4 CARP packet(s) of vhids 7 (1), 42 (2) and 1 too short for a vhid: "
    )


def test_adverts_are_selected_by_vhid_and_the_others_counted(tmp_path):
    packets = pcap.read_packets(two_clusters())
    assert [pcap.vhid_of(p) for p in packets] == [42, 7, 42, None]
    selected, skipped = pcap.select_vhids(packets, {42})
    assert [p.frame for p in selected] == [1, 3]
    assert [p.frame for p in skipped] == [2, 4]  # too short for a vhid: in no selection
    results = pcap.inspect(selected, PASSWORD, [VIP])
    assert all(r.error is None for r in results)
    report = pcap.format_report(results, skipped).splitlines()
    assert report[-2] == "2 CARP packet(s) of vhid 42: 2 checksum ok, 2 of 2 hmac ok, 2 fully valid"
    assert report[-1] == (
        "skipped 2 CARP packet(s) of vhid 7 (1) and 1 too short for a vhid (not selected)"
    )
    path = tmp_path / "two.pcap"
    path.write_bytes(two_clusters())
    theirs = pcap.decode_file(path, OTHER_PASSWORD, [OTHER_VIP], vhids=[7])
    assert [(r.packet.frame, r.error) for r in theirs] == [(2, None)]


def test_what_is_not_a_capture_is_refused():
    with pytest.raises(pcap.PcapError, match="not a pcap"):
        pcap.read_packets(b"hello world, not a capture")
    with pytest.raises(pcap.PcapError, match="link type 147"):
        pcap.read_packets(classic(147, [b"\0" * 40]))
    with pytest.raises(pcap.PcapError):
        pcap.read_packets(b"\xd4\xc3")


@pytest.mark.interop
def test_a_fresh_ucarp_capture_decodes_and_verifies(tmp_path):
    """Re-run scripts/capture-ucarp.sh (real ucarp in namespaces) and check what it sent."""
    script = Path(__file__).parents[2] / "scripts" / "capture-ucarp.sh"
    subprocess.run([str(script), str(tmp_path), "6"], check=True, capture_output=True, timeout=120)
    results = pcap.decode_file(tmp_path / "ucarp-vhid42-eth.pcap", PASSWORD, [VIP])
    assert len(results) >= 5
    assert all(r.error is None for r in results), pcap.format_report(results)
    assert NODE_A in {r.packet.source for r in results}
