"""The package's face: every exported name resolves, errors share one base, importing is cheap."""

from __future__ import annotations

import subprocess
import sys

import gallery


def test_every_exported_name_resolves_and_every_error_is_a_gallery_error() -> None:
    exported = [getattr(gallery, name) for name in gallery.__all__]
    errors = [value for value in exported if isinstance(value, type) and issubclass(value, BaseException)]
    assert len(errors) >= 15
    # EnrolmentInterrupted is Ctrl-C carrying enroll_dir's report: a KeyboardInterrupt by design.
    assert issubclass(gallery.EnrolmentInterrupted, KeyboardInterrupt)
    assert all(issubclass(error, gallery.GalleryError) for error in errors if error is not gallery.EnrolmentInterrupted)


def test_importing_gallery_loads_neither_torch_nor_faiss() -> None:
    code = "import sys, gallery; print(sorted({'torch', 'faiss', 'sqlalchemy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
