"""A photo file's bytes, read safely: the part of loading a photo that needs neither NumPy nor Pillow.

The CLI client (``gallery --server``) reads the photo it uploads with this, so a missing or
unreadable file is refused with the same error and message as a local command's.
"""

from __future__ import annotations

import errno
import os
import stat

from gallery.errors import ImageNotFound, ImageTooLarge, ImageUnreadable

# Larger than any photo file of 64 MP (image.MAX_PIXELS) but an uncompressed 16-bit TIFF; read_photo holds
# the whole file in memory, so a huge (or sparse) file named .jpg is refused before reading.
MAX_FILE_BYTES = 256 << 20


class PhotoFile(bytes):
    """A photo file's bytes that remember where they were read, so decoding errors name the file."""

    source: str


def read_photo(path: str | os.PathLike) -> PhotoFile:
    """The bytes of the photo file at ``path`` (read once: decode and hash these, not the path again).

    Raises:
        ImageNotFound: nothing there, a directory, a symbolic link loop, or not a regular file
            (a FIFO or a device, which could block or never end).
        ImageUnreadable: the file cannot be read (permissions, I/O error).
        ImageTooLarge: the file is larger than ``MAX_FILE_BYTES``.
    """
    shown = repr(os.fsdecode(path))
    # Open first, then check what was opened (no race between a check and the read), and
    # without blocking: opening a FIFO for reading would otherwise wait for a writer forever.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError as err:
        raise ImageNotFound(f"no such file: {shown}") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageNotFound(f"not a file: {shown} is a loop of symbolic links") from err
        if err.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
            raise ImageNotFound(f"no such file: {shown} ({err.strerror})") from err
        raise ImageUnreadable(f"cannot read {shown}: {err.strerror or err}") from err
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise ImageNotFound(f"not a file: {shown} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ImageNotFound(f"not a file: {shown} is a FIFO, socket or device, not a photo file")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageTooLarge(f"{shown} is {info.st_size:,} bytes; photo files may be {MAX_FILE_BYTES:,} at most")
        with open(descriptor, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_BYTES + 1)  # the file may have grown since fstat
    except OSError as err:
        raise ImageUnreadable(f"cannot read {shown}: {err.strerror or err}") from err
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLarge(f"{shown} is over {MAX_FILE_BYTES:,} bytes; photo files may be that large at most")
    photo = PhotoFile(data)
    photo.source = shown
    return photo
