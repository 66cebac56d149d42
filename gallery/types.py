"""Small types shared across layers (a leaf: imports nothing from gallery)."""

from __future__ import annotations

from typing import Literal, get_args

Box = tuple[int, int, int, int]
"""A rectangle of pixels: (left, top, right, bottom), right and bottom inclusive (dlib's
``rectangle``), so its width is ``right - left + 1``. A face's box (detector, landmarks, what
the API returns and the store keeps), a detector pyramid tile, a chip's crop. A face's box may
extend past the image's border."""

AuditAction = Literal["enroll", "identify", "verify", "remove", "reembed", "calibrate", "key", "host"]
"""What an audit event records (``Gallery.audit_log``, ``gallery log``)."""

AUDITED_ACTIONS: tuple[str, ...] = get_args(AuditAction)
