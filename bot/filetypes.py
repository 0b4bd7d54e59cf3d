"""Which files a ticket accepts, told by their content, never by their name.

A name or a declared content type says what the sender claims; the first
bytes say what the file is. Accepted (docs/guide.zh-CN.md lists them too):

| type | told by |
|---|---|
| JPEG, PNG, GIF, WebP photos | their signatures |
| HEIC/HEIF photos (iPhone) | an ISO-BMFF `ftyp` box with a HEIF brand |
| MP4 and MOV videos | an ISO-BMFF `ftyp` box with an MP4 or QuickTime brand |
| PDF | `%PDF-` |
| .docx, .xlsx, .pptx | a zip with `[Content_Types].xml` and `word/`, `xl/` or `ppt/` |

Anything else (other zips, old .doc/.xls, executables, scripts, HTML) is
refused: they cannot be shown safely from a link, and a car complaint's
evidence is photos, videos, invoices and reports.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass


@dataclass(frozen=True)
class FileType:
    """An accepted kind of file: its content type, the extension it is saved
    under when the sender gave no name, and its name for people."""

    content_type: str
    extension: str
    label: str

    @property
    def is_image(self) -> bool:
        """A photo (shown inline by a browser)."""
        return self.content_type.startswith("image/")


JPEG = FileType("image/jpeg", "jpg", "JPEG 图片")
PNG = FileType("image/png", "png", "PNG 图片")
GIF = FileType("image/gif", "gif", "GIF 图片")
WEBP = FileType("image/webp", "webp", "WebP 图片")
HEIC = FileType("image/heic", "heic", "HEIC 图片")
MP4 = FileType("video/mp4", "mp4", "MP4 视频")
MOV = FileType("video/quicktime", "mov", "MOV 视频")
PDF = FileType("application/pdf", "pdf", "PDF 文档")
DOCX = FileType("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "docx", "Word 文档")
XLSX = FileType("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "xlsx", "Excel 表格")
PPTX = FileType("application/vnd.openxmlformats-officedocument.presentationml.presentation",
                "pptx", "PowerPoint 演示文稿")

ACCEPTED = (JPEG, PNG, GIF, WEBP, HEIC, MP4, MOV, PDF, DOCX, XLSX, PPTX)
ACCEPTED_TEXT = "JPG、PNG、GIF、WebP、HEIC 图片，MP4、MOV 视频，PDF，Word、Excel、PowerPoint 文档"
"""The accepted types as the refusal names them."""

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_MP4_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1",
               b"M4V ", b"dash", b"3gp4", b"3gp5", b"MSNV"}
_OFFICE_PARTS = (("word/", DOCX), ("xl/", XLSX), ("ppt/", PPTX))
# A zip with more entries than this is no office document worth opening.
_ZIP_MAX_ENTRIES = 5000


def sniff(data: bytes) -> FileType | None:
    """The accepted type `data` is, or None when it is none of them."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data.startswith(b"%PDF-"):
        return PDF
    if data[4:8] == b"ftyp":
        return _iso_media(data)
    if data.startswith(b"PK\x03\x04"):
        return _office(data)
    return None


def _iso_media(data: bytes) -> FileType | None:
    """HEIC, MP4 or MOV by the major and compatible brands of the `ftyp` box."""
    size = int.from_bytes(data[:4], "big")
    box = data[8: min(max(size, 16), 256)]
    brands = {box[i: i + 4] for i in range(0, len(box) - 3, 4) if i != 4}
    if brands & _HEIF_BRANDS:
        return HEIC
    if b"qt  " in brands:
        return MOV
    if brands & _MP4_BRANDS:
        return MP4
    return None


def _office(data: bytes) -> FileType | None:
    """An Office Open XML document: a readable zip with its content types and
    the main part of Word, Excel or PowerPoint."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > _ZIP_MAX_ENTRIES:
                return None
            names = {info.filename for info in infos}
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    if "[Content_Types].xml" not in names:
        return None
    for prefix, kind in _OFFICE_PARTS:
        if any(name.startswith(prefix) for name in names):
            return kind
    return None
