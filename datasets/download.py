"""Fetching dataset archives: torchvision's ``download_url`` (md5-checked where a checksum is known), then an
extraction that refuses any member that would land outside the data root.

Nothing here runs unless ``data.download=true``, and an archive whose contents are already in place is not fetched.
``data.download_from`` replaces the official location with a folder (copied from) or a URL (downloaded from) holding
the same archive files: a mirror, or archives fetched by hand on another machine. A failure raises a one-line error naming the file, where it was
fetched from, and how to place it by hand.
"""
from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from torchvision.datasets.utils import check_integrity, download_url

from normda.errors import DataNotFoundError


@dataclass(frozen=True)
class Archive:
    """One file of a dataset: where it comes from and the folder or file it provides once extracted."""

    filename: str
    url: str
    provides: str
    md5: str | None = None


def _location(archive: Archive, download_from: str | None) -> str:
    if not download_from:
        return archive.url
    if "://" not in download_from:  # a folder on this machine
        return str(Path(download_from).expanduser() / archive.filename)
    return f"{download_from.rstrip('/')}/{quote(archive.filename)}"


def _retrieve(archive: Archive, location: str, root: Path) -> None:
    """Copy the archive from a folder, or download it (torchvision's ``download_url``), md5-checked where known."""
    if "://" in location:
        download_url(location, str(root), filename=archive.filename, md5=archive.md5)
        return
    source = Path(location)
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist")
    shutil.copyfile(source, root / archive.filename)
    if archive.md5 and not check_integrity(str(root / archive.filename), archive.md5):
        raise RuntimeError(f"{source} does not match the md5 checksum {archive.md5}")


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def safe_extract(path: Path, root: Path) -> None:
    """Extract a .zip, .tar, .tar.gz or .tgz archive into ``root``; refuse absolute paths, ``..``, links and devices
    that would reach outside it."""
    root = root.resolve()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            escaping = [name for name in archive.namelist() if not _inside(root, name)]
            if escaping:
                raise DataNotFoundError(f"{path.name} holds {escaping[0]!r}, outside the data folder: refusing to "
                                        f"extract it")
            archive.extractall(root)
        return
    try:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                link_target = member.linkname if member.issym() or member.islnk() else ""
                if not _inside(root, member.name) or (link_target and not _inside(
                        (root / member.name).parent, link_target)) or member.isdev():
                    raise DataNotFoundError(f"{path.name} holds {member.name!r}, which would land outside the data "
                                            f"folder: refusing to extract it")
            archive.extractall(root, filter="data")
    except tarfile.TarError as error:
        raise DataNotFoundError(f"{path.name} is not a readable archive ({error}): delete it and download again")


def fetch(archives: tuple[Archive, ...], root: Path, download_from: str | None, dataset: str) -> list[str]:
    """Download and extract every archive whose ``provides`` is missing under ``root``; return the fetched names."""
    root.mkdir(parents=True, exist_ok=True)
    fetched = []
    for archive in archives:
        if (root / archive.provides).exists():
            continue
        url = _location(archive, download_from)
        try:
            _retrieve(archive, url, root)
        except (OSError, RuntimeError) as error:  # URLError, socket errors, an md5 mismatch, an HTTP error page
            reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            raise DataNotFoundError(
                f"could not download {dataset}'s {archive.filename} from {url} ({reason}): fetch it by hand and "
                f"extract it into {root} (it provides {archive.provides}), or set data.download_from to a folder "
                f"or URL that holds it"
            ) from error
        path = root / archive.filename
        safe_extract(path, root)
        path.unlink()
        if not (root / archive.provides).exists():
            raise DataNotFoundError(f"{archive.filename} did not provide {archive.provides} in {root}: check the "
                                    f"archive (downloaded from {url})")
        fetched.append(archive.filename)
    return fetched
