"""A deterministic tar.gz of the OPA bundle, as OPA's bundle service expects."""

from __future__ import annotations

import gzip
import io
import tarfile


def opa_tarball(files: dict[str, bytes]) -> bytes:
    """Same files in, same bytes out: fixed order, mtimes, owners and modes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(name=f"/{path}")
            info.size = len(files[path])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[path]))
    return gzip.compress(raw.getvalue(), mtime=0)
