"""capture.bounded_read: QEMU's stderr and the console keep their first and last 4 MiB."""

from __future__ import annotations

from pathlib import Path

from kvmha_forensics.capture.steps import LOG_HEAD, LOG_TAIL, bounded_read


def test_a_small_log_is_kept_whole(tmp_path: Path) -> None:
    log = tmp_path / "small.log"
    log.write_bytes(b"x" * (LOG_HEAD + LOG_TAIL))
    assert bounded_read(log) == log.read_bytes()


def test_a_large_log_keeps_its_head_and_tail_and_says_what_was_cut(tmp_path: Path) -> None:
    log = tmp_path / "large.log"
    cut = 1 << 20
    log.write_bytes(b"h" * LOG_HEAD + b"c" * cut + b"t" * LOG_TAIL)
    kept = bounded_read(log)
    marker = f"\n[kvmha-forensics: {cut} bytes cut here]\n".encode()
    assert kept == b"h" * LOG_HEAD + marker + b"t" * LOG_TAIL
