"""Attachment rows and their files, as the app leaves them (BRIEF §3, §5).

Per provider, the columns the app's sync writes: ChatGPT keeps the file id
and no URL (``original_url`` ``''``: files are fetched by id), Claude a URL on
claude.ai and ``size`` 0, Perplexity a pre-signed URL, no file name, ``size``
0 and no dimensions; attachment times are always NULL, and ``local_path`` is
``''`` where the app has no path (never ``NULL``). Downloaded files live in the
app's layout, ``<attachments>/<conversationId>/<fileId>_<name>``. A file is in
one of four states: **cached** (the row points at the file), **resynced**
(the file is there but a re-sync reset ``local_path`` to ``''``), **missing**
(never downloaded: ``''`` and no file) or **gone** (the row points at a file
the user deleted).

URLs use hosts under ``.invalid`` with the providers' real path shapes, so no
test or benchmark can ever reach a real provider.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from typing import Any
from urllib.parse import quote

from zexport.sample.specials import HOSTILE_FILENAMES

IMAGE_SIZES = ((1024, 1024), (1792, 1024), (1024, 1792), (800, 600), (1920, 1080),
               (512, 512), (3024, 4032))

FILE_KINDS = (
    (".pdf", "application/pdf"), (".txt", "text/plain"), (".csv", "text/csv"),
    (".json", "application/json"), (".md", "text/markdown"),
    (".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (".py", "text/x-python"),
)
_MIME_OF = dict(FILE_KINDS)
_EXT_OF_MIME = {"image/png": ".png", "image/jpeg": ".jpg", "application/pdf": ".pdf",
                "text/plain": ".txt", "application/json": ".json"}  # the app's table

CLAUDE_HOST = "https://claude.example.invalid"
PERPLEXITY_HOST = "https://files.example.invalid"

STATES = ("cached", "resynced", "missing", "gone")
_STATE_WEIGHTS = (40, 15, 30, 15)

Row = list[Any]


def disk_name(file_id: str, filename: str | None, mime: str) -> str:
    """The app's ``<fileId>_<name>`` (``attachment`` plus the MIME type's extension
    when there is no name or no extension), made a valid single file name: path
    separators and NUL become ``_`` and the name is cut to 255 bytes, keeping its
    extension (the app's own write fails on such names; the sample must not)."""
    name = filename or "attachment"
    if not os.path.splitext(name)[1]:
        name += _EXT_OF_MIME.get(mime, ".bin")
    name = f"{file_id}_{name}".replace("/", "_").replace("\\", "_").replace("\x00", "_")
    if len(name.encode()) <= 255:
        return name
    stem, ext = os.path.splitext(name)
    room = 255 - len(ext.encode())
    return stem.encode()[:room].decode("utf-8", errors="ignore") + ext


class Attachments:
    """Makes attachment rows for one sample, writing the files of those on disk."""

    def __init__(self, rng: random.Random, final_dir: str, tmp_dir: str,
                 texts: list[str]) -> None:
        self.rng = rng
        self.final_dir = final_dir  # where the files will be (stored in local_path)
        self.tmp_dir = tmp_dir  # where they are written until the sample is complete
        self.texts = texts
        self.rows: list[Row] = []
        self.count = 0
        self.files = 0
        self._made_dirs: set[str] = set()

    def add(self, provider: str, cid: str, mid: str, kind: str | None = None,
            state: str | None = None, filename: str | None = None,
            ext: str | None = None) -> None:
        """One attachment row on message ``mid``; unset arguments are drawn at random."""
        rng = self.rng
        if kind is None:
            kind = "image" if rng.random() < 0.6 else "file"
        if kind == "image":
            ext = ext or (".png" if rng.random() < 0.55 else ".jpg")
            mime = "image/png" if ext == ".png" else "image/jpeg"
        else:
            if ext is None:
                ext, mime = rng.choice(FILE_KINDS)
            else:
                mime = _MIME_OF.get(ext, "application/octet-stream")
        if filename is None:
            filename = self._filename(kind, ext)
        if state is None:
            state = rng.choices(STATES, _STATE_WEIGHTS)[0]
        width: int | None = None
        height: int | None = None
        if kind == "image":
            width, height = rng.choice(IMAGE_SIZES)
        size: int | None
        if provider == "chatgpt":
            file_id = (f"file_00000000{rng.getrandbits(96):024x}" if rng.random() < 0.8
                       else f"file-{rng.getrandbits(96):024x}")  # the older id style
            url = ""  # fetched by file id through the API
            size = rng.randint(2_000, 4_000_000) if rng.random() > 0.03 else None
        else:
            file_id = uuid_like(rng)
            size = 0  # neither provider reports a size
            if provider == "claude":
                variant = "preview" if kind == "image" else "document_pdf"
                url = f"{CLAUDE_HOST}/api/{uuid_like(rng)}/files/{file_id}/{variant}"
            else:
                filename = None  # Perplexity's uploads have no name in the archive
                width = height = None
                url = (f"{PERPLEXITY_HOST}/web/direct-files/attachments/images/"
                       f"{rng.randrange(10**7, 10**8)}/{file_id}/image{ext}"
                       f"?AWSAccessKeyId=ASIA{rng.getrandbits(64):016X}"
                       f"&Signature={quote(f'{rng.getrandbits(160):040x}', safe='')}"
                       f"&Expires={1_700_000_000 + rng.randrange(86_400)}")
        folder = os.path.join(self.final_dir, cid)
        path = os.path.join(folder, disk_name(file_id, filename, mime))
        local = path if state in ("cached", "gone") else ""
        if state in ("cached", "resynced"):
            content = self._content(kind, ext, filename)
            if kind == "image" and width is not None:
                width, height = _image_size(content)
            if provider == "chatgpt" and size is not None:
                size = len(content)
            self._write(cid, os.path.basename(path), content)
        self.rows.append([f"{mid}-att-{file_id}", mid, kind, file_id, url, local, filename,
                          mime, size, width, height, None, None])
        self.count += 1

    def _filename(self, kind: str, ext: str) -> str:
        rng = self.rng
        if rng.random() < 0.06:
            return rng.choice(HOSTILE_FILENAMES)
        if kind == "image":
            return rng.choice(("image", "Screenshot 2023-11-14 at 10.22.31", "photo",
                               "diagram", "IMG_4032")) + ext
        return rng.choice(("report", "notes", "data", "paper", "invoice", "Lebenslauf",
                           "заметки")) + ext

    def _content(self, kind: str, ext: str, filename: str | None) -> bytes:
        """Real bytes of the right kind: a valid PNG or JPEG, a PDF header, some text."""
        rng = self.rng
        if kind == "image":
            w, h = rng.randint(1, 16), rng.randint(1, 16)
            if ext == ".png":
                return png(w, h, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
            return jpeg(w, h)
        content = (f"{filename}\n" + rng.choice(self.texts)[:200] + "\n").encode()
        if ext == ".pdf":
            content = b"%PDF-1.4\n% zexport sample\n" + content + b"%%EOF\n"
        return content

    def _write(self, cid: str, name: str, content: bytes) -> None:
        folder = os.path.join(self.tmp_dir, cid)
        if folder not in self._made_dirs:
            os.makedirs(folder, exist_ok=True)
            self._made_dirs.add(folder)
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(content)
        self.files += 1


def uuid_like(rng: random.Random) -> str:
    """A UUID-shaped id drawn from the run's rng (uuid4 would break determinism)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _image_size(content: bytes) -> tuple[int, int]:
    """(width, height) of the PNG or JPEG this module wrote, so the row matches its file."""
    if content[:4] == b"\x89PNG":
        w, h = struct.unpack(">II", content[16:24])
        return int(w), int(h)
    sof = content.index(b"\xff\xc0")
    h, w = struct.unpack(">HH", content[sof + 5:sof + 9])
    return int(w), int(h)

def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid truecolor PNG of one colour: real image bytes for exporters to copy."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = (b"\x00" + bytes(rgb) * width) * height
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def jpeg(width: int, height: int) -> bytes:
    """A valid baseline grayscale JPEG, mid-grey, smallest possible encoding.

    Every 8x8 block is "DC difference 0, end of block"; with one-code Huffman
    tables that is two 0 bits per block, so no image library is needed.
    """
    blocks = -(-width // 8) * -(-height // 8)
    bits = "00" * blocks
    bits += "1" * (-len(bits) % 8)
    scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    one_code = struct.pack(">16B", 1, *([0] * 15)) + b"\x00"
    return (b"\xff\xd8"
            + b"\xff\xdb" + struct.pack(">HB", 67, 0) + b"\x01" * 64
            + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
            + b"\xff\xc4" + struct.pack(">HB", 20, 0x00) + one_code
            + b"\xff\xc4" + struct.pack(">HB", 20, 0x10) + one_code
            + b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
            + scan + b"\xff\xd9")


