"""The CDR writer and reader against byte strings worked out by hand (XCDR1, little endian,
each field aligned to its size counted from the end of the 4-byte encapsulation header)."""
import re
import struct

import pytest

from panoptic_ros.serialized.cdr import CdrError, CdrReader, CdrWriter, Header

HEADER_LE = b"\x00\x01\x00\x00"
# offset (after the header): field
EXPECTED = HEADER_LE + bytes.fromhex(
    "ff"                        # 0: u8 255
    "00" "ffff"                 # 1: pad, 2: u16 65535
    "ffffffff"                  # 4: u32 2**32 - 1
    "02000000" "80ff"           # 8: octets length 2, 12: 0x80 0xff
    "0000" "000000000000f83f"   # 14: pad to 16, f64 1.5
    "01000000" "71"             # 24: octets length 1, 28: "q"
    "000000" "04000000" "68c3a900"  # 29: pad to 32, string length 4, 36: "hé" NUL
    "00000000000000c0"          # 40: f64 -2.0 (aligned: the string ended at 40)
)


def test_writer_bytes_equal_the_hand_worked_layout():
    w = CdrWriter()
    w.u8(255)
    w.u16(65535)
    w.u32(2**32 - 1)
    w.octets(b"\x80\xff")
    w.f64(1.5)          # an 8-byte field after octets that end at 14: two bytes of padding
    w.octets(b"q")
    w.string("hé")      # UTF-8, 3 bytes + NUL
    w.f64(-2.0)
    assert w.to_bytes() == EXPECTED


def test_reader_reads_the_hand_worked_layout_back():
    r = CdrReader(EXPECTED)
    assert r.u8() == 255 and r._take(2, 2).tobytes() == b"\xff\xff" and r.u32() == 2**32 - 1
    assert r.octets().tolist() == [0x80, 0xFF]           # unsigned bytes
    assert struct.unpack("<d", r._take(8, 8))[0] == 1.5
    assert r.octets().tobytes() == b"q" and r.string() == "hé"
    assert struct.unpack("<d", r._take(8, 8))[0] == -2.0 and r.pos == len(EXPECTED)


def test_signed_ints_align_to_four_and_empty_octets_are_valid():
    w = CdrWriter()
    w.u8(1)
    w.i32(-5)           # offset 4 after 3 bytes of padding
    w.octets(b"")
    data = w.to_bytes()
    assert data == HEADER_LE + bytes.fromhex("01000000" "fbffffff" "00000000")
    r = CdrReader(data)
    assert r.u8() == 1 and r.i32() == -5 and r.octets().tobytes() == b"" and r.pos == len(data)


def test_big_endian_messages_are_read_in_their_byte_order():
    r = CdrReader(b"\x00\x00\x00\x00" + struct.pack(">I", 7) + struct.pack(">i", -2))
    assert r.u32() == 7 and r.i32() == -2


@pytest.mark.parametrize("raw", [b"", b"\x00\x01", b"\x01\x01\x00\x00", b"\x00\x05\x00\x00", b"\x00\x02\x00\x00"])
def test_anything_but_a_cdr_encapsulation_header_is_refused(raw):
    with pytest.raises(CdrError, match="^serialised message lacks a CDR encapsulation header$"):
        CdrReader(raw)


def test_a_header_alone_is_a_valid_empty_message():
    assert CdrReader(HEADER_LE).pos == 4


@pytest.mark.parametrize("body, message", [
    ("02000000" "6162", "serialised string is not NUL-terminated"),      # "ab" without NUL
    ("00000000", "serialised string is not NUL-terminated"),             # length 0: not even the NUL
    ("02000000" "ff00", "serialised string is not UTF-8"),
])
def test_malformed_strings_are_refused_by_cause(body, message):
    with pytest.raises(CdrError, match=f"^{re.escape(message)}$"):
        CdrReader(HEADER_LE + bytes.fromhex(body)).string()


def test_header_from_a_nanosecond_stamp():
    header = Header.from_stamp_ns(3_000_000_005)
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (3, 5, "")
