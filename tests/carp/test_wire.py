"""The CARP codec against adverts a real ucarp sent here, hand-computed HMAC inputs, and
property tests that whatever bytes arrive, decoding only ever raises DecodeError."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.carp import pcap, wire
from cluster.carp.types import Advertisement

DATA = Path(__file__).parent / "data"
# scripts/capture-ucarp.sh: vhid 42, password s3cret, VIP 192.0.2.100, advskew 0 and 100.
UCARP_PASSWORD = b"s3cret"
UCARP_VIPS = (ipaddress.IPv4Address("192.0.2.100"),)
CAPTURES = sorted(DATA.glob("ucarp-*.pcap"))

# Frame 1 of ucarp-vhid42-eth.pcap (192.0.2.11, advskew 0), pinned so the codec
# is checked against real bytes even if the pcap reader were wrong.
UCARP_ADVERT = bytes.fromhex(
    "212a000700018bf9946e51d33f76fa95e700752bf4597ff05f5d3e38048c5f3ced0b73a5"
)


def captured_payloads() -> list[bytes]:
    payloads = [p.payload for path in CAPTURES for p in pcap.read_file(path)]
    assert len(payloads) >= 40, "the committed captures should hold a few dozen adverts"
    return payloads


def test_the_pinned_ucarp_advert_decodes_with_its_fields():
    advert = wire.decode(UCARP_ADVERT, UCARP_PASSWORD, UCARP_VIPS)
    assert advert == Advertisement(
        vhid=42,
        advbase=1,
        advskew=0,
        counter=0x946E51D33F76FA95,
        digest=bytes.fromhex("e700752bf4597ff05f5d3e38048c5f3ced0b73a5"),
        demote=0,
    )


def test_the_hmac_of_a_ucarp_advert_is_the_one_carp_md_describes():
    # key = passphrase; msg = 02 01 vhid | 192.0.2.100 | counter (CARP.md "The HMAC")
    message = bytes.fromhex("02012ac0000264946e51d33f76fa95")
    expected = hmac.new(b"s3cret", message, hashlib.sha1).digest()
    assert UCARP_ADVERT[16:] == expected


def test_every_captured_ucarp_advert_decodes_and_verifies():
    for payload in captured_payloads():
        advert = wire.decode(payload, UCARP_PASSWORD, UCARP_VIPS)
        assert (advert.vhid, advert.advbase) == (42, 1)
        assert advert.advskew in (0, 100)
        assert advert.demote == 0
        assert advert.authlen == 7


def test_every_captured_ucarp_advert_fails_with_a_wrong_password():
    for payload in captured_payloads():
        with pytest.raises(wire.DecodeError) as info:
            wire.decode(payload, b"s3creT", UCARP_VIPS)
        assert info.value.reason is wire.DecodeFailure.BAD_HMAC


def test_a_captured_advert_fails_with_the_wrong_virtual_address():
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(UCARP_ADVERT, UCARP_PASSWORD, [ipaddress.IPv4Address("192.0.2.101")])
    assert info.value.reason is wire.DecodeFailure.BAD_HMAC


def test_re_encoding_every_captured_advert_gives_the_same_bytes():
    for payload in captured_payloads():
        advert = wire.decode(payload, UCARP_PASSWORD, UCARP_VIPS)
        again = wire.encode(
            advert.vhid,
            advert.advbase,
            advert.advskew,
            advert.demote,
            advert.counter,
            UCARP_PASSWORD,
            UCARP_VIPS,
        )
        assert again == payload
        assert wire.pack(advert) == payload


def test_addresses_may_be_given_with_their_prefix():
    vips = [ipaddress.IPv4Interface("192.0.2.100/24")]
    assert wire.decode(UCARP_ADVERT, UCARP_PASSWORD, vips).vhid == 42


# ---- HMAC ordering: all addresses, IPv4 before IPv6, each family sorted ----

MIXED = [
    ipaddress.ip_interface("2001:db8::2/64"),
    ipaddress.ip_interface("198.51.100.20/24"),
    ipaddress.ip_interface("2001:db8::1/64"),
    ipaddress.ip_interface("192.0.2.5/24"),
]
# Written out by hand from CARP.md: 02 01 | vhid 7 | 192.0.2.5 | 198.51.100.20 |
# 2001:db8::1 | 2001:db8::2 | counter 0x0102030405060708.
MIXED_MESSAGE = bytes.fromhex(
    "020107"
    "c0000205"
    "c6336414"
    "20010db8000000000000000000000001"
    "20010db8000000000000000000000002"
    "0102030405060708"
)


def test_the_hmac_message_sorts_ipv4_before_ipv6():
    assert wire.hmac_message(7, MIXED, 0x0102030405060708) == MIXED_MESSAGE


def test_the_hmac_does_not_depend_on_the_order_addresses_are_given_in():
    expected = hmac.new(b"pw", MIXED_MESSAGE, hashlib.sha1).digest()
    for order in itertools.permutations(MIXED):
        assert wire.compute_hmac(b"pw", 7, order, 0x0102030405060708) == expected


def test_addresses_sort_numerically_not_as_text():
    # As text "192.0.2.10" < "192.0.2.9"; as numbers 9 comes first.
    addrs = [ipaddress.IPv4Address("192.0.2.10"), ipaddress.IPv4Address("192.0.2.9")]
    message = wire.hmac_message(1, addrs, 0)
    assert message == bytes.fromhex("020101c0000209c000020a0000000000000000")


def test_ipv6_after_ipv4_gives_a_different_digest():
    v6_first = bytes.fromhex(
        "020107"
        "20010db8000000000000000000000001"
        "20010db8000000000000000000000002"
        "c0000205"
        "c6336414"
        "0102030405060708"
    )
    wrong = hmac.new(b"pw", v6_first, hashlib.sha1).digest()
    assert wire.compute_hmac(b"pw", 7, MIXED, 0x0102030405060708) != wrong


def test_a_multi_address_advert_round_trips_and_needs_every_address():
    data = wire.encode(7, 1, 20, 3, 99, b"pw", MIXED)
    advert = wire.decode(data, b"pw", list(reversed(MIXED)))
    assert (advert.vhid, advert.advskew, advert.demote, advert.counter) == (7, 20, 3, 99)
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(data, b"pw", MIXED[:3])
    assert info.value.reason is wire.DecodeFailure.BAD_HMAC


def test_an_ipv6_advert_round_trips():
    vips = [ipaddress.IPv6Interface("2001:db8:0:1::100/64")]
    data = wire.encode(200, 2, 54, 0, 2**64 - 1, b"v6-secret", vips)
    assert len(data) == wire.HEADER_LEN
    advert = wire.decode(data, b"v6-secret", vips)
    assert advert == Advertisement(200, 2, 54, 2**64 - 1, advert.digest, demote=0)
    expected_message = bytes.fromhex("0201c820010db8000000010000000000000100" + "ff" * 8)
    assert advert.digest == hmac.new(b"v6-secret", expected_message, hashlib.sha1).digest()


def test_the_bow_out_advert_encodes():
    advert = wire.decode(wire.encode(42, 255, 255, 0, 5, b"pw", UCARP_VIPS), b"pw", UCARP_VIPS)
    assert advert.is_bow_out


# ---- each check names itself ----


def _with_checksum(data: bytearray) -> bytes:
    data[6:8] = b"\0\0"
    data[6:8] = wire.internet_checksum(bytes(data)).to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (0, 0x31, wire.DecodeFailure.BAD_VERSION),
        (0, 0x22, wire.DecodeFailure.BAD_TYPE),
        (3, 0, wire.DecodeFailure.BAD_AUTHLEN),
        (8, 0x00, wire.DecodeFailure.BAD_HMAC),  # the counter is under the HMAC
        (1, 43, wire.DecodeFailure.BAD_HMAC),  # and so is the vhid
    ],
)
def test_decode_names_the_failed_check(offset, value, reason):
    data = bytearray(UCARP_ADVERT)
    data[offset] = value
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(_with_checksum(data), UCARP_PASSWORD, UCARP_VIPS)
    assert info.value.reason is reason


def test_a_wrong_checksum_is_bad_checksum():
    data = bytearray(UCARP_ADVERT)
    data[7] ^= 0x01
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(bytes(data), UCARP_PASSWORD, UCARP_VIPS)
    assert info.value.reason is wire.DecodeFailure.BAD_CHECKSUM


def test_short_and_long_packets_are_refused():
    with pytest.raises(wire.DecodeError) as short:
        wire.decode(UCARP_ADVERT[:35], UCARP_PASSWORD, UCARP_VIPS)
    assert short.value.reason is wire.DecodeFailure.TOO_SHORT
    with pytest.raises(wire.DecodeError) as long:
        wire.decode(UCARP_ADVERT + b"\0\0", UCARP_PASSWORD, UCARP_VIPS)
    assert long.value.reason is wire.DecodeFailure.TOO_LONG


def test_only_ttl_255_passes():
    wire.check_ttl(255)
    with pytest.raises(wire.DecodeError) as info:
        wire.check_ttl(64)
    assert info.value.reason is wire.DecodeFailure.BAD_TTL


def test_decode_unverified_skips_only_the_hmac():
    assert wire.decode_unverified(UCARP_ADVERT).counter == 0x946E51D33F76FA95
    assert not wire.verify_hmac(wire.decode_unverified(UCARP_ADVERT), b"x", UCARP_VIPS)


def test_encode_refuses_fields_out_of_range():
    for args in [(0, 1, 0, 0, 0), (1, 256, 0, 0, 0), (1, 1, -1, 0, 0), (1, 1, 0, 0, 2**64)]:
        with pytest.raises(ValueError, match="must"):
            wire.encode(*args, b"pw", UCARP_VIPS)


# ---- properties ----

FIELDS = st.fixed_dictionaries(
    {
        "vhid": st.integers(1, 255),
        "advbase": st.integers(0, 255),
        "advskew": st.integers(0, 255),
        "demote": st.integers(0, 255),
        "counter": st.integers(0, 2**64 - 1),
    }
)
PASSWORDS = st.binary(max_size=19)
ADDRESSES = st.lists(
    st.one_of(
        st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
        st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    ),
    min_size=1,
    max_size=4,
    unique=True,
)


@given(FIELDS, PASSWORDS, ADDRESSES)
def test_encode_then_decode_round_trips(fields, password, addresses):
    data = wire.encode(password=password, addresses=addresses, **fields)
    advert = wire.decode(data, password, addresses)
    assert {k: getattr(advert, k) for k in fields} == fields
    assert wire.pack(advert) == data


# Random bytes, and random 36-byte headers that pass the version, type and authlen
# checks so that the later checks get exercised too.
RANDOM_PACKETS = st.one_of(
    st.binary(max_size=80),
    st.binary(min_size=34, max_size=34).map(lambda b: b"\x21" + b[:2] + b"\x07" + b[2:]),
)


@settings(max_examples=500)
@given(RANDOM_PACKETS, PASSWORDS, ADDRESSES)
def test_random_bytes_only_ever_raise_decode_error(data, password, addresses):
    with contextlib.suppress(wire.DecodeError):
        wire.decode(data, password, addresses)
    with contextlib.suppress(wire.DecodeError):
        wire.decode_unverified(data)
    with contextlib.suppress(wire.DecodeError):
        wire.parse(data)


@settings(max_examples=500)
@given(FIELDS, PASSWORDS, ADDRESSES, st.integers(0, 35), st.integers(1, 255))
def test_a_single_byte_mutation_never_verifies(fields, password, addresses, offset, delta):
    data = bytearray(wire.encode(password=password, addresses=addresses, **fields))
    data[offset] = (data[offset] + delta) % 256
    with pytest.raises(wire.DecodeError):
        wire.decode(bytes(data), password, addresses)


@settings(max_examples=300)
@given(st.sampled_from([UCARP_ADVERT]), st.integers(0, 35), st.integers(1, 255))
def test_a_mutated_ucarp_advert_never_verifies(payload, offset, delta):
    data = bytearray(payload)
    data[offset] = (data[offset] + delta) % 256
    with pytest.raises(wire.DecodeError):
        wire.decode(bytes(data), UCARP_PASSWORD, UCARP_VIPS)


@given(FIELDS, PASSWORDS, ADDRESSES, st.sampled_from([1, *range(8, 36)]), st.integers(1, 255))
def test_the_hmac_covers_vhid_counter_and_digest(fields, password, addresses, offset, delta):
    """Even with the checksum fixed up, changing an HMAC-covered byte is caught."""
    data = bytearray(wire.encode(password=password, addresses=addresses, **fields))
    data[offset] = (data[offset] + delta) % 256
    with pytest.raises(wire.DecodeError) as info:
        wire.decode(_with_checksum(data), password, addresses)
    assert info.value.reason is wire.DecodeFailure.BAD_HMAC


def test_an_address_given_as_text_is_refused_not_left_out_of_the_hmac():
    with pytest.raises(TypeError, match="not an IP address object"):
        wire.encode(42, 1, 0, 0, 7, b"s3cret", ["192.0.2.100"])  # type: ignore[list-item]


def test_a_signer_makes_the_same_adverts_and_accepts_what_verify_hmac_accepts():
    addresses = [
        ipaddress.ip_interface("192.0.2.100/32"),
        ipaddress.ip_interface("2001:db8::1/128"),
    ]
    signer = wire.Signer(b"s3cret", 42, addresses)
    for counter in (0, 1, 2**63 + 5):
        payload = signer.encode(1, 100, 7, counter)
        assert payload == wire.encode(42, 1, 100, 7, counter, b"s3cret", addresses)
        advert = wire.decode_unverified(payload)
        assert signer.verify(advert)
    other = wire.decode_unverified(wire.encode(42, 1, 100, 0, 9, b"other", addresses))
    assert not signer.verify(other)
    assert not wire.Signer(b"s3cret", 43, addresses).verify(advert)  # another vhid's
