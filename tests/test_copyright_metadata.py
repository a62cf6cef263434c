"""Rights evidence from real files' headers, captions, URLs and sidecar directives."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from dedupkit.copyright.embed_metadata import insert_jpeg_segment, save_with_rights, xmp_packet
from dedupkit.copyright.metadata import MAX_XMP_BYTES, read_metadata
from dedupkit.copyright.text_rules import caption_evidence, directive_evidence, holder_from_notice, url_evidence

DATA = Path(__file__).parent / "data" / "copyright"
OPENCV_PHOTO = Path("/usr/share/doc/opencv-doc/examples/data/fruits.jpg")
OPENCLIPART_PNG = Path("/usr/share/openclipart/png/animals/2_dead_frogs_lumen_desig_01.png")


def fields(data: bytes) -> dict[str, tuple[str, bool, bool]]:
    findings = read_metadata(data)
    return {e.name: (e.value, e.claims_rights, e.prohibits_training) for e in findings.evidence}


@pytest.fixture(scope="module")
def real_photo() -> Image.Image:
    if not OPENCV_PHOTO.exists():
        pytest.skip("opencv-doc example photos are not installed")
    with Image.open(OPENCV_PHOTO) as image:
        image.thumbnail((160, 160))
        return image.convert("RGB")


def test_real_jpeg_exif_copyright_and_artist():
    found = fields((DATA / "broken_exif_dpi.jpg").read_bytes())
    assert found["exif:Copyright"] == ("Ross_Pushinaitis", True, False)
    assert found["exif:Artist"] == ("Ross_Pushinaitis", False, False)


def test_real_jpeg_exif_iptc_and_xmp_creators_name_without_marking():
    found = fields((DATA / "invalid-exif-without-x-resolution.jpg").read_bytes())
    for name in ("exif:Artist", "iptc:By-line", "xmp:dc:creator"):
        assert found[name] == ("JOE STEMMER PHOTO", False, False), name


def test_real_openclipart_png_author_text():
    if not OPENCLIPART_PNG.exists():
        pytest.skip("openclipart-png is not installed")
    found = fields(OPENCLIPART_PNG.read_bytes())
    assert found["png:Author"] == ("Lumen Design Studio", False, False)


@pytest.mark.parametrize("name", ["xmp_tags_orientation_exiftool.png", "flower2.webp"])
def test_real_files_with_xmp_but_no_rights_give_no_evidence(name):
    findings = read_metadata((DATA / name).read_bytes())
    assert findings.evidence == [] and findings.notes == []


@pytest.mark.parametrize("name", ["invalid-exif.jpg", "truncated_end_chunk.png"])
def test_damaged_real_files_never_raise(name):
    findings = read_metadata((DATA / name).read_bytes())
    assert all(isinstance(note, str) for note in findings.notes)


def test_broken_exif_ifd_is_noted_not_raised(real_photo):
    jpeg = save_with_rights(real_photo, "JPEG")
    # An IFD that claims 65535 entries in a 4-byte body.
    payload = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff\x98\x82"
    broken = insert_jpeg_segment(jpeg, b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload)
    findings = read_metadata(broken)
    assert findings.evidence == []
    assert any("damaged" in note for note in findings.notes), findings.notes


def test_exif_written_into_real_photo(real_photo):
    found = fields(save_with_rights(real_photo, "JPEG", exif_copyright="© 2021 Jürgen Weiß", exif_artist="J. W."))
    assert found["exif:Copyright"] == ("© 2021 Jürgen Weiß", True, False)
    assert found["exif:Artist"] == ("J. W.", False, False)


def test_iptc_written_into_real_photo(real_photo):
    data = save_with_rights(real_photo, "JPEG", iptc={
        "CopyrightNotice": "© Reuters 2020", "By-line": "Ana Ruiz", "Credit": "REUTERS"})
    found = fields(data)
    assert found["iptc:CopyrightNotice"] == ("© Reuters 2020", True, False)
    assert found["iptc:By-line"] == ("Ana Ruiz", False, False)
    assert found["iptc:Credit"] == ("REUTERS", False, False)


def test_iptc_latin1_bytes_are_read_with_a_note(real_photo):
    findings = read_metadata(save_with_rights(real_photo, "JPEG", iptc={"CopyrightNotice": b"\xa9 M\xfcller"}))
    assert [e.value for e in findings.evidence] == ["© Müller"]
    assert any("not UTF-8" in note for note in findings.notes)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_xmp_rights_fields_in_every_container(real_photo, image_format):
    packet = xmp_packet(rights="© 2022 Studio Nord", creator="Lena Berg", marked=True,
                        usage_terms="Licensed for editorial use only", web_statement="https://nord.example/license",
                        data_mining="DMI-PROHIBITED-AIMLTRAINING")
    found = fields(save_with_rights(real_photo, image_format, xmp=packet))
    assert found["xmp:dc:rights"] == ("© 2022 Studio Nord", True, False)
    assert found["xmp:dc:creator"] == ("Lena Berg", False, False)
    assert found["xmp:xmpRights:Marked"] == ("True", True, False)
    assert found["xmp:xmpRights:UsageTerms"][1] and found["xmp:xmpRights:WebStatement"][1]
    assert found["xmp:plus:DataMining"][1:] == (True, True)


@pytest.mark.parametrize("code, prohibited", [
    ("DMI-PROHIBITED-AIMLTRAINING", True), ("DMI-PROHIBITED-GENAIMLTRAINING", True),
    ("DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING", True), ("DMI-ALLOWED", False), ("DMI-UNSPECIFIED", False),
])
def test_data_mining_codes(real_photo, code, prohibited):
    found = fields(save_with_rights(real_photo, "JPEG", xmp=xmp_packet(data_mining=code)))
    assert found["xmp:plus:DataMining"][2] is prohibited


def test_data_mining_as_plain_text_element(real_photo):
    packet = xmp_packet(rights="x").replace(
        "</rdf:Description>", "<plus:DataMining>DMI-PROHIBITED-GENAIMLTRAINING</plus:DataMining></rdf:Description>")
    assert fields(save_with_rights(real_photo, "JPEG", xmp=packet))["xmp:plus:DataMining"][2] is True


def test_public_domain_statements_do_not_mark(real_photo):
    found = fields(save_with_rights(real_photo, "JPEG", xmp=xmp_packet(rights="Public Domain (CC0)", marked=False)))
    assert found["xmp:dc:rights"][1] is False and found["xmp:xmpRights:Marked"][1] is False


def test_png_text_chunks_written_into_real_drawing():
    if not OPENCLIPART_PNG.exists():
        pytest.skip("openclipart-png is not installed")
    with Image.open(OPENCLIPART_PNG) as drawing:
        drawing = drawing.convert("RGBA")
    text = {"Copyright": "© 2020 Zoë Ink", "Disclaimer": "No reuse without permission"}
    for compressed in (False, True):
        found = fields(save_with_rights(drawing, "PNG", png_text=text, png_compressed=compressed))
        assert found["png:Copyright"] == ("© 2020 Zoë Ink", True, False)
        assert found["png:Disclaimer"][1] is True


def test_webp_exif_is_read(real_photo):
    found = fields(save_with_rights(real_photo, "WEBP", exif_copyright="© Kim Photo"))
    assert found["exif:Copyright"] == ("© Kim Photo", True, False)


@pytest.mark.parametrize("packet, note", [  # JPEG caps XMP at 64 kB, so the oversized one goes in a PNG
    ("<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
     "<rdf:Description><dc:rights>", "XMP malformed"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     "<x:xmpmeta xmlns:x='adobe:ns:meta/'>&lol2;</x:xmpmeta>", "XMP malformed"),
    ("<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + " " * (MAX_XMP_BYTES + 10) + "</x:xmpmeta>", "over the"),
    (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>\xff\xfe</x:xmpmeta>", "XMP malformed"),
])
def test_bad_xmp_is_skipped_with_a_note(real_photo, packet, note):
    image_format = "PNG" if len(packet) > 60_000 else "JPEG"
    findings = read_metadata(save_with_rights(real_photo, image_format, xmp=packet))
    assert findings.evidence == []
    assert any(note in n for n in findings.notes), findings.notes


def test_not_an_image_is_a_note_not_an_error():
    findings = read_metadata(b"definitely not an image")
    assert findings.evidence == [] and findings.notes[0].startswith("headers unreadable")


@pytest.mark.parametrize("caption, rules", [
    ("Sunset over the bay © Jane Doe", {"©"}),
    ("(c) 2019 Pixel Studio", {"(c) year"}),
    ("Copyright 2020 Foo Ltd. All rights reserved.", {"copyright", "all rights reserved"}),
    ("Business team meeting - Alamy Stock Photo", {"stock photo", "agency:Alamy"}),
    ("woman with laptop, shutterstock vector", {"agency:Shutterstock"}),
    ("photo by Getty Images", {"agency:Getty Images"}),
    ("see www.alamy.com for more", {"agency:Alamy"}),
    ("iStockphoto image 12345", {"agency:iStock"}),
    ("Steps: (a) cut, (b) fold, (c) glue", set()),
    ("copy right side of the page", set()),
    ("a salamy sandwich and a Dreamstimer", set()),
    ("copyright-free clipart of a cat", set()),
    ("a red car parked near the stock exchange", set()),
    (None, set()),
])
def test_caption_rules(caption, rules):
    assert {e.field for e in caption_evidence(caption)} == rules


@pytest.mark.parametrize("url, agency", [
    ("https://c8.alamy.com/comp/ABC/x.jpg", "Alamy"),
    ("https://t3.ftcdn.net/jpg/01/02/x.jpg", "Adobe Stock"),
    ("https://stock.adobe.com/images/x/123", "Adobe Stock"),
    ("https://media.gettyimages.co.uk/photos/a.jpg", "Getty Images"),
    ("https://image.shutterstock.com/image-photo/x.jpg", "Shutterstock"),
    ("https://salamy.com/x.jpg", None),
    ("https://example.com/alamy/shutterstock.jpg", None),
    ("http://[broken", None),
    (None, None),
])
def test_url_rules(url, agency):
    evidence = url_evidence(url)
    assert (evidence[0].field.removeprefix("agency:") if evidence else None) == agency


def test_noai_directives_in_img2dataset_style_metadata():
    hits = directive_evidence({"url": "x", "headers": {"X-Robots-Tag": "noindex, noimageai"}})
    assert [(e.field, e.prohibits_training) for e in hits] == [("headers.X-Robots-Tag", True)]
    assert directive_evidence({"x_robots_tag": ["googlebot: noai"]})[0].prohibits_training
    assert directive_evidence({"X-Robots-Tag": "noindex, nofollow"}) == []
    assert directive_evidence({"robots": "noairline"}) == []
    assert directive_evidence({"caption": "noai"}) == []


@pytest.mark.parametrize("notice, holder", [
    ("© 2019 Jane Doe. All rights reserved.", "Jane Doe"),
    ("Copyright (c) 1998-2004 Hewlett-Packard Company", "Hewlett-Packard Company"),
    ("©", None),
])
def test_holder_from_notice(notice, holder):
    assert holder_from_notice(notice) == holder


def test_real_photo_without_metadata_has_no_evidence(real_photo):
    buffer = io.BytesIO()
    real_photo.save(buffer, "JPEG")
    findings = read_metadata(buffer.getvalue())
    assert findings.evidence == [] and findings.notes == []


def test_png_exif_chunk_is_read_without_decoding_pixels(real_photo):
    found = fields(save_with_rights(real_photo, "PNG", exif_copyright="© PNG Owner"))
    assert found["exif:Copyright"] == ("© PNG Owner", True, False)


def test_real_file_with_corrupt_exif_is_noted():
    findings = read_metadata((DATA / "hopper_bad_exif.jpg").read_bytes())
    assert findings.evidence == []
    assert any("Corrupt EXIF data" in note for note in findings.notes), findings.notes
