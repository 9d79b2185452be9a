"""A small, dependency-free PDF writer: text pages with the base-14 Helvetica font."""

from __future__ import annotations


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def render(pages: list[list[str]], title: str) -> bytes:
    objects: list[bytes] = []
    page_ids = []
    font_id = 3
    next_id = 4
    bodies: list[tuple[int, bytes]] = []
    for lines in pages:
        content = ["BT", "/F1 9 Tf", "11 TL", "40 800 Td", f"({_escape(title)}) Tj", "T*"]
        content += [f"({_escape(line)}) Tj T*" for line in lines]
        content.append("ET")
        stream = "\n".join(content).encode("latin-1", "replace")
        page_id, content_id = next_id, next_id + 1
        next_id += 2
        page_ids.append(page_id)
        bodies.append(
            (
                page_id,
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>".encode(),
            )
        )
        bodies.append(
            (content_id, b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        )
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ] + [body for _, body in sorted(bodies)]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)
