"""Rights evidence stored in an image file's headers: EXIF, IPTC, XMP, PNG text, WebP chunks.

Everything is read from the stored bytes with Pillow's header parsers (no pixel
decode).  Damaged metadata never raises: the field is skipped and a note says why.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml_safely
from PIL import Image, IptcImagePlugin

MAX_XMP_BYTES = 1_000_000
"""A real XMP packet is a few kB; anything above this is skipped with a note."""
MAX_VALUE_CHARS = 200

EXIF_ARTIST, EXIF_COPYRIGHT = 0x013B, 0x8298
IPTC_FIELDS = {(2, 116): "CopyrightNotice", (2, 80): "By-line", (2, 110): "Credit"}
PNG_TEXT_FIELDS = {"copyright": "Copyright", "author": "Author", "disclaimer": "Disclaimer"}

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_PROPERTIES = {
    ("http://purl.org/dc/elements/1.1/", "rights"): "dc:rights",
    ("http://purl.org/dc/elements/1.1/", "creator"): "dc:creator",
    ("http://ns.adobe.com/xap/1.0/rights/", "Marked"): "xmpRights:Marked",
    ("http://ns.adobe.com/xap/1.0/rights/", "UsageTerms"): "xmpRights:UsageTerms",
    ("http://ns.adobe.com/xap/1.0/rights/", "WebStatement"): "xmpRights:WebStatement",
    ("http://ns.useplus.org/ldf/xmp/1.0/", "DataMining"): "plus:DataMining",
    ("http://ns.adobe.com/photoshop/1.0/", "Credit"): "photoshop:Credit",
}

# Which fields claim rights (a notice, a licence, a reservation) and which only name someone.
CLAIM_FIELDS = {
    "exif:Copyright", "iptc:CopyrightNotice", "xmp:dc:rights", "xmp:xmpRights:UsageTerms",
    "xmp:xmpRights:WebStatement", "png:Copyright", "png:Disclaimer",
}
CREATOR_FIELDS = ("exif:Artist", "iptc:By-line", "xmp:dc:creator", "png:Author", "iptc:Credit", "xmp:photoshop:Credit")

_PUBLIC_DOMAIN = re.compile(r"\b(public\s+domain|cc0|no\s+rights\s+reserved|copyright[\s-]*free)\b", re.I)
_DMI_PROHIBITED = re.compile(r"^DMI-PROHIBITED(?:-[A-Z]+)?$")


@dataclass
class Evidence:
    """One piece of rights evidence: where it was found, what it said, and what it means."""

    kind: str  # exif | iptc | xmp | png | caption | url | metadata | visible
    field: str
    value: str
    claims_rights: bool = False
    prohibits_training: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.field}"

    def as_dict(self) -> dict:
        entry = {"field": self.name, "value": self.value}
        if self.claims_rights:
            entry["marks"] = True
        if self.prohibits_training:
            entry["training_prohibited"] = True
        return entry


@dataclass
class Findings:
    evidence: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _clean_text(value: object, where: str, notes: list[str]) -> str | None:
    """Text from a metadata value: bytes as UTF-8, else Latin-1 with a note; NULs and blanks trimmed."""
    if isinstance(value, (tuple, list)):
        parts = [_clean_text(v, where, notes) for v in value]
        value = "; ".join(p for p in parts if p)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            notes.append(f"{where} is not UTF-8; read as Latin-1")
            value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("\x00", " ").split())
    if not text:
        return None
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _claim(kind: str, field_name: str, text: str) -> Evidence:
    name = f"{kind}:{field_name}"
    claims = name in CLAIM_FIELDS and not _PUBLIC_DOMAIN.search(text)
    return Evidence(kind, field_name, text, claims_rights=claims)


def _short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


def read_exif(image: Image.Image, findings: Findings) -> None:
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow looks for an eXIf chunk after the pixels by decoding them all; writers put it
        # before IDAT, where the header parse has already found it, so skip the decode.
        return
    # Pillow reads damaged IFDs lazily and only warns; the warnings become notes.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exif = image.getexif()
            values = {name: exif.get(tag) for tag, name in ((EXIF_COPYRIGHT, "Copyright"), (EXIF_ARTIST, "Artist"))}
        except Exception as exc:
            findings.notes.append(f"EXIF unreadable: {_short_error(exc)}")
            return
    for warning in caught[:1]:
        findings.notes.append(f"EXIF damaged, some fields skipped: {_short_error(warning.message)}")
    for field_name, raw in values.items():
        text = _clean_text(_exif_utf8(raw), f"EXIF {field_name}", findings.notes)
        if text:
            findings.evidence.append(_claim("exif", field_name, text))


def _exif_utf8(value: object) -> object:
    """Pillow reads EXIF text as Latin-1; most writers store UTF-8, so undo the mojibake when it is."""
    if isinstance(value, str) and not value.isascii():
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    return value


def read_iptc(image: Image.Image, findings: Findings) -> None:
    if image.format not in ("JPEG", "TIFF", "MPO"):
        return
    try:
        info = IptcImagePlugin.getiptcinfo(image) or {}
    except Exception as exc:
        findings.notes.append(f"IPTC unreadable: {_short_error(exc)}")
        return
    for key, field_name in IPTC_FIELDS.items():
        text = _clean_text(info.get(key), f"IPTC {field_name}", findings.notes)
        if text:
            findings.evidence.append(_claim("iptc", field_name, text))


def _xmp_packet(image: Image.Image) -> bytes | str | None:
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if packet is None and image.format == "TIFF":
        packet = getattr(image, "tag_v2", {}).get(700)
    return packet


def _property_values(element: Element) -> list[str]:
    """Values of one XMP property, whichever RDF form it takes (text, Alt/Seq/Bag, resource)."""
    resource = element.get(f"{{{RDF}}}resource")
    if resource:
        return [resource]
    items = [li for container in element for li in container if li.tag == f"{{{RDF}}}li"]
    if items:
        default = [li for li in items if li.get("{http://www.w3.org/XML/1998/namespace}lang") == "x-default"]
        return [" ".join("".join(li.itertext()).split()) for li in (default or items)]
    text = " ".join("".join(element.itertext()).split())
    return [text] if text else []


def parse_xmp(packet: bytes | str, notes: list[str]) -> dict[str, list[str]]:
    """The rights properties of an XMP packet, keyed by their usual prefixed names."""
    data = packet.encode("utf-8") if isinstance(packet, str) else bytes(packet)
    if len(data) > MAX_XMP_BYTES:
        notes.append(f"XMP packet of {len(data):,} bytes is over the {MAX_XMP_BYTES:,}-byte limit; skipped")
        return {}
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        start = data.find(b"<rdf:RDF")
    end_meta = data.rfind(b"</x:xmpmeta>")
    if start >= 0 and end_meta > start:
        data = data[start : end_meta + len(b"</x:xmpmeta>")]
    elif start >= 0:
        end_rdf = data.rfind(b"</rdf:RDF>")
        data = data[start : end_rdf + len(b"</rdf:RDF>")] if end_rdf > start else data[start:]
    try:
        root = parse_xml_safely(data.strip(b"\x00 \r\n\t"), forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        notes.append(f"XMP malformed: {_short_error(exc)}")
        return {}
    found: dict[str, list[str]] = {}
    for description in root.iter(f"{{{RDF}}}Description"):
        for attribute, value in description.attrib.items():
            name = _qualified_name(attribute)
            if name in XMP_PROPERTIES and value.strip():
                found.setdefault(XMP_PROPERTIES[name], []).append(" ".join(value.split()))
        for child in description:
            name = _qualified_name(child.tag)
            if name in XMP_PROPERTIES:
                values = [v for v in _property_values(child) if v]
                found.setdefault(XMP_PROPERTIES[name], []).extend(values)
    return found


def _qualified_name(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def read_xmp(image: Image.Image, findings: Findings) -> None:
    packet = _xmp_packet(image)
    if not packet:
        return
    for name, values in parse_xmp(packet, findings.notes).items():
        text = _clean_text(values, f"XMP {name}", findings.notes)
        if not text:
            continue
        if name == "xmpRights:Marked":
            # Marked=True is a rights claim; Marked=False declares the work public domain.
            marked = text.strip().lower() == "true"
            findings.evidence.append(Evidence("xmp", name, text, claims_rights=marked))
        elif name == "plus:DataMining":
            codes = [v.rstrip("/").rsplit("/", 1)[-1].strip().upper() for v in values]
            prohibited = any(_DMI_PROHIBITED.match(code) for code in codes)
            findings.evidence.append(Evidence("xmp", name, text, claims_rights=prohibited,
                                              prohibits_training=prohibited))
        else:
            findings.evidence.append(_claim("xmp", name, text))


def read_png_text(image: Image.Image, findings: Findings) -> None:
    if image.format != "PNG":
        return
    for key, value in image.info.items():
        field_name = PNG_TEXT_FIELDS.get(str(key).strip().lower()) if isinstance(key, str) else None
        if field_name is None:
            continue
        text = _clean_text(value, f"PNG {key}", findings.notes)
        if text:
            findings.evidence.append(_claim("png", field_name, text))


METADATA_READERS = (read_exif, read_iptc, read_xmp, read_png_text)


def read_metadata(data: bytes) -> Findings:
    """Rights evidence in the headers of stored image bytes (JPEG, PNG, WebP, TIFF, ...).

    WebP has no text chunks of its own: its EXIF and XMP chunks are read like any
    other format's.
    """
    findings = Findings()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = Image.open(io.BytesIO(data))
    except Exception as exc:
        findings.notes.append(f"headers unreadable: {_short_error(exc)}")
        return findings
    for warning in caught[:1]:  # Pillow parses EXIF while opening a JPEG and only warns on damage
        findings.notes.append(f"damaged header, some fields skipped: {_short_error(warning.message)}")
    with image:
        for reader in METADATA_READERS:
            try:
                reader(image, findings)
            except Exception as exc:  # a reader's own guard missed a malformed field: note it, go on
                findings.notes.append(f"{reader.__name__} failed: {_short_error(exc)}")
    return findings
