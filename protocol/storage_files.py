"""Opening storage folders, and the files in them, without trusting what is there.

Storage is shared with whatever else can write to the disk, so, as ssh and gpg
do for their folders:

* A storage or agent folder must be owned by us (or root) and writable by
  nobody else; otherwise another user could delete or plant checkpoints, and a
  checkpoint's sha256 proves integrity, not origin. Such a folder is refused
  with `UntrustedStorage`, a one-line message naming the folder, the problem
  and the fix. A folder we have just created ourselves is set to 0700 instead.
* Nothing inside storage is followed through a symlink: folders and files are
  opened relative to a folder descriptor (`dir_fd`) with O_NOFOLLOW, so a name
  swapped for a symlink cannot redirect a write, a truncation or a read. Only
  the storage path itself, which comes from the trusted config file, may be a
  symlink, and then only one of our own (or root's).
* Files are opened O_NONBLOCK and must be regular files (checked with fstat on
  the descriptor), so a FIFO or a device planted under a known name can neither
  hang a reader nor be written to.

Standard library only: the checkpoint store (protocol/) and the supervisor's
storage helpers both build on it.
"""

from __future__ import annotations

import errno
import os
import pwd
import shlex
import stat
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "FOLDER_MODE",
    "UntrustedStorage",
    "check_folder",
    "describe_kind",
    "open_file",
    "open_folder",
    "open_subfolder",
    "refuse_symlink",
]

FOLDER_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

PathLike = Union[str, Path]


class UntrustedStorage(OSError):
    """A folder or file in storage that another user could have planted or can change: refused, never used.

    An OSError (EPERM) so that code handling "storage unusable" handles it too;
    str() is the one-line message, which names the path, the problem and the fix.
    """

    def __str__(self) -> str:
        return self.strerror if isinstance(self.strerror, str) else super().__str__()


def _refuse(message: str) -> UntrustedStorage:
    return UntrustedStorage(errno.EPERM, " ".join(message.split()))


def _who(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _trusted_owner(uid: int) -> bool:
    """Ours, or root's: root can change anything anyway, as ssh reasons."""
    return uid in (os.geteuid(), 0)


def _user_name() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_folder(fd: int, path: PathLike, what: str, *, created: bool = False) -> None:
    """Refuse a folder not owned by us (or root), or writable by group or others.

    `created`: we made it just now, so a mode looser than 0700 (a default ACL,
    a setgid parent) is ours to fix, through the descriptor, rather than refuse.
    """
    info = os.fstat(fd)
    if created and stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, FOLDER_MODE)
        info = os.fstat(fd)
    quoted = shlex.quote(str(path))
    if not _trusted_owner(info.st_uid):
        raise _refuse(
            f"{what} {path} is owned by {_who(info.st_uid)}, not by you ({_who(os.geteuid())}), so its files "
            f"cannot be trusted; fix: use a folder of your own, or take this one over: chown -R {_user_name()} {quoted}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        whom = "group and others" if mode & 0o022 == 0o022 else "group" if mode & 0o020 else "others"
        raise _refuse(
            f"{what} {path} is writable by {whom} (mode {mode:04o}), who could plant or delete files in it; "
            f"fix: chmod 700 {quoted}"
        )


def open_folder(path: PathLike, what: str = "storage folder", *, create: bool = False) -> Optional[int]:
    """A descriptor on the storage folder itself, checked; None if it does not exist and `create` is false.

    `create` makes it and any missing parents with mode 0700. The path comes
    from the config file, so a symlink there is followed, but only one owned by
    us or root: a symlink another user planted in a shared parent is refused.
    """
    folder = Path(path)
    created = False
    if create:
        missing = []
        for parent in (folder, *folder.parents):
            if os.path.lexists(parent):
                break
            missing.append(parent)
        for parent in reversed(missing):
            try:
                os.mkdir(parent, FOLDER_MODE)
                created = parent == folder
            except FileExistsError:
                pass
    try:
        fd = os.open(folder, _DIR_FLAGS | os.O_NOFOLLOW)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        link = os.lstat(folder)
        if not stat.S_ISLNK(link.st_mode):
            raise
        if not _trusted_owner(link.st_uid):
            raise _refuse(
                f"{what} {path} is a symlink owned by {_who(link.st_uid)}, not by you, and is not followed; "
                f"fix: rm {shlex.quote(str(folder))} and set storage to the real folder"
            ) from None
        try:
            fd = os.open(folder, _DIR_FLAGS)
        except FileNotFoundError:
            if create:
                raise
            return None
    try:
        check_folder(fd, folder, what, created=created)
    except BaseException:
        os.close(fd)
        raise
    return fd


def refuse_symlink(dir_fd: int, name: str, path: PathLike, fix: str = "") -> None:
    """Raise UntrustedStorage if `name` in the folder is a symlink; nothing if it is anything else or missing."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(
            f"{path} is a symlink, and nothing in storage is followed through one; "
            f"fix: rm {shlex.quote(str(path))}{' ' + fix if fix else ''}"
        )


def open_subfolder(
    dir_fd: int, name: str, path: PathLike, what: str = "agent folder", *, create: bool = False
) -> Optional[int]:
    """A descriptor on folder `name` inside an open folder, never through a symlink, checked.

    None if it does not exist and `create` is false; `create` makes it 0700.
    A symlink is refused (UntrustedStorage); a file where the folder should be
    raises NotADirectoryError.
    """
    created = False
    if create:
        try:
            os.mkdir(name, FOLDER_MODE, dir_fd=dir_fd)
            created = True
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            refuse_symlink(dir_fd, name, path, f"(the run creates the {what})")
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # named in full, not relative to dir_fd
    try:
        check_folder(fd, path, what, created=created)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(dir_fd: int, name: str, path: PathLike, flags: int, mode: int = 0o600) -> int:
    """A descriptor on regular file `name` in an open folder, never through a symlink.

    A symlink is refused (UntrustedStorage). Anything that is not a regular
    file (a folder, a FIFO, a device) raises OSError: opening is O_NONBLOCK, so
    a FIFO does not hang us, and it is then closed unused.
    """
    try:
        fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(dir_fd, name, path)
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # named in full, not relative to dir_fd
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(kind):
            raise OSError(errno.EINVAL, f"not a regular file ({describe_kind(kind)})", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def describe_kind(mode: int) -> str:
    """What a non-regular file is, in words, for one-line messages."""
    for test, word in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return word
    return "not a regular file"
