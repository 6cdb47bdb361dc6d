"""The one rule for a full disk (mdl.errors.disk_error), which every local write goes through."""

from __future__ import annotations

import errno

import pytest

from mdl.errors import ExitCode, LocalFSError, NoSpaceError, disk_error


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_is_no_space(number: int) -> None:
    error = disk_error(OSError(number, "full"), full="no space left in /d", other="cannot write")
    assert isinstance(error, NoSpaceError) and error.message == "no space left in /d"
    assert error.exit_code == ExitCode.LOCAL


@pytest.mark.parametrize("number", [errno.EACCES, errno.EROFS, errno.EIO])
def test_any_other_failure_is_a_local_error_in_its_own_words(number: int) -> None:
    error = disk_error(OSError(number, "no"), full="no space", other="cannot write /d: no")
    assert type(error) is LocalFSError and error.message == "cannot write /d: no"
    assert error.exit_code == ExitCode.LOCAL
