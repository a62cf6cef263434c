"""Write rights metadata into image files: EXIF, IPTC (JPEG APP13), XMP, PNG text.

Used by the tests and the benchmark to make real images carry each kind of
evidence, and usable by anyone who wants to mark their own files.  EXIF, XMP and
PNG text go through Pillow's writers; Pillow has no IPTC writer, so the IPTC-IIM
datasets are packed into a Photoshop APP13 segment here.
"""

from __future__ import annotations

import io
import struct
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, PngImagePlugin

from dedupkit.copyright.metadata import EXIF_ARTIST, EXIF_COPYRIGHT

_IPTC_DATASETS = {"CopyrightNotice": (2, 116), "By-line": (2, 80), "Credit": (2, 110)}


def iptc_app13(fields: dict[str, str | bytes]) -> bytes:
    """A JPEG APP13 segment holding IPTC-IIM datasets (CopyrightNotice, By-line, Credit), UTF-8."""
    records = bytearray(b"\x1c\x01\x5a\x00\x03\x1b\x25\x47")  # 1:90 coded character set = UTF-8
    for name, value in fields.items():
        record, dataset = _IPTC_DATASETS[name]
        data = value.encode("utf-8") if isinstance(value, str) else value
        records += struct.pack(">BBBH", 0x1C, record, dataset, len(data)) + data
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(records)) + records
    if len(records) % 2:
        resource += b"\x00"
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def insert_jpeg_segment(jpeg: bytes, segment: bytes) -> bytes:
    """The JPEG with `segment` right after its APP0/APP1 headers (where writers put APP13)."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream")
    position = 2
    while jpeg[position] == 0xFF and jpeg[position + 1] in (0xE0, 0xE1):
        position += 2 + struct.unpack(">H", jpeg[position + 2 : position + 4])[0]
    return jpeg[:position] + segment + jpeg[position:]


def xmp_packet(rights: str | None = None, creator: str | None = None, marked: bool | None = None,
               usage_terms: str | None = None, web_statement: str | None = None,
               data_mining: str | None = None, credit: str | None = None) -> str:
    """An XMP packet with the rights properties, in the RDF forms real writers use.

    dc:rights and UsageTerms as rdf:Alt, dc:creator as rdf:Seq, Marked and
    WebStatement as attributes, plus:DataMining as a vocabulary URI element.
    """
    attributes = []
    if marked is not None:
        attributes.append(f"xmpRights:Marked={quoteattr('True' if marked else 'False')}")
    if web_statement:
        attributes.append(f"xmpRights:WebStatement={quoteattr(web_statement)}")
    if credit:
        attributes.append(f"photoshop:Credit={quoteattr(credit)}")
    elements = []
    if rights:
        elements.append(f"<dc:rights><rdf:Alt><rdf:li xml:lang=\"x-default\">{escape(rights)}</rdf:li></rdf:Alt></dc:rights>")
    if creator:
        elements.append(f"<dc:creator><rdf:Seq><rdf:li>{escape(creator)}</rdf:li></rdf:Seq></dc:creator>")
    if usage_terms:
        elements.append(f"<xmpRights:UsageTerms><rdf:Alt><rdf:li xml:lang=\"x-default\">{escape(usage_terms)}"
                        "</rdf:li></rdf:Alt></xmpRights:UsageTerms>")
    if data_mining:
        elements.append(f"<plus:DataMining rdf:resource={quoteattr('http://ns.useplus.org/ldf/vocab/' + data_mining)}/>")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
        + " ".join(attributes) + ">" + "".join(elements)
        + '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def save_with_rights(image: Image.Image, image_format: str, exif_copyright: str | bytes | None = None,
                     exif_artist: str | bytes | None = None, iptc: dict[str, str | bytes] | None = None,
                     xmp: str | bytes | None = None, png_text: dict[str, str] | None = None,
                     png_compressed: bool = False) -> bytes:
    """Encode `image` as JPEG, PNG or WEBP carrying the given rights metadata."""
    image_format = image_format.upper()
    options: dict = {}
    if exif_copyright is not None or exif_artist is not None:
        exif = Image.Exif()
        # UTF-8 bytes, as exiftool writes them; Pillow would turn non-ASCII str into "?".
        for tag, value in ((EXIF_COPYRIGHT, exif_copyright), (EXIF_ARTIST, exif_artist)):
            if value is not None:
                exif[tag] = value.encode("utf-8") if isinstance(value, str) else value
        options["exif"] = exif.tobytes()
    if xmp is not None:
        if image_format == "PNG":
            info = options.setdefault("pnginfo", PngImagePlugin.PngInfo())
            info.add_itxt("XML:com.adobe.xmp", xmp if isinstance(xmp, str) else xmp.decode("utf-8", "replace"))
        else:
            options["xmp"] = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    if png_text:
        if image_format != "PNG":
            raise ValueError("PNG text chunks need image_format='PNG'")
        info = options.setdefault("pnginfo", PngImagePlugin.PngInfo())
        for key, value in png_text.items():
            if png_compressed:
                info.add_text(key, value, zip=True)
            elif value.isascii():
                info.add_text(key, value)
            else:
                info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.convert("RGB" if image_format == "JPEG" else image.mode).save(buffer, image_format, **options)
    data = buffer.getvalue()
    if iptc:
        if image_format != "JPEG":
            raise ValueError("IPTC is written into JPEG files only")
        data = insert_jpeg_segment(data, iptc_app13(iptc))
    return data
