"""capture on real lab guests: whole, verified, private bundles; the guest never changes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import drgn
import pytest
from blake3 import blake3
from elftools.elf.elffile import ELFFile

from kvmha_forensics import __version__
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.capture.steps import CaptureOptions, Progress, capture, guest_lock
from kvmha_forensics.errors import ExitCode
from kvmha_forensics.lab import assets, scenarios
from kvmha_forensics.sources.elfcore import read_core
from kvmha_forensics.sources.qemu_log import parse_qemu_log
from kvmha_forensics.sources.registers import parse_register_dumps
from kvmha_forensics.transport.qmp import Endpoint, session
from kvmha_forensics.x86.modes import CpuMode
from kvmha_forensics.x86.prstatus import vcpu_registers
from tests import schemas
from tests.capture.tcp_guest import triple_fault_on_tcp
from tests.conftest import Lab, runstate
from tests.sockets import one_reply

pytestmark = pytest.mark.lab
LINUX = [s.name for s in scenarios.SCENARIOS if s.guest == "linux"]
CLI = [sys.executable, "-m", "kvmha_forensics"]
# The vCPUs' mode when frozen: Linux and the two KVM boot sectors run in long mode.
MODE_AT_FREEZE = {"triple-fault": CpuMode.PROTECTED_32}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def kernel_release(dump: Path, vmcoreinfo: str | None = None) -> str:
    prog = drgn.Program(vmcoreinfo=vmcoreinfo) if vmcoreinfo else drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(assets.kernel().vmlinux)])
    return prog["init_uts_ns"].name.release.string_().decode()


@pytest.mark.parametrize("name", [s.name for s in scenarios.SCENARIOS])
def test_bundle_is_whole_private_and_leaves_the_guest_as_it_was(lab: Lab, name: str) -> None:
    scenario = scenarios.get(name)
    path = lab.bundle(name)
    opened = Bundle.open(path)
    assert opened.verify() == []
    assert opened.manifest.status == "complete", opened.manifest.reasons
    kinds = {a.kind for a in opened.manifest.artifacts}
    assert {"freeze", "identity", "registers", "mtree", "memory-elf", "qemu-log"} <= kinds
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()} == {0o600}
    assert runstate(lab.frozen(name).qmp_spare) == scenario.runstate
    freeze = opened.read_json("freeze")
    assert isinstance(freeze, dict) and freeze["runstate"] == scenario.runstate
    identity = opened.read_json("identity")
    assert isinstance(identity, dict)
    guest = lab.frozen(name)
    assert len(identity["vcpus"]) == guest.vcpus  # type: ignore[arg-type]
    assert identity["qemu_pid"] == guest.pid
    assert identity["name"] == f"kvmha-lab-{name}" and identity["uuid"]
    assert identity["kvm"] == {"enabled": guest.accel == "kvm", "present": True}
    assert identity["memory"]["base-memory"] == guest.memory_mb << 20  # type: ignore[index]
    assert identity["machine"]["name"].startswith("pc")  # type: ignore[index]
    assert "qemu-system-x86_64" in identity["cmdline"][0]  # type: ignore[index]
    assert identity["qemu_version"].startswith("7.")  # type: ignore[union-attr]
    assert not list(path.parent.glob(".*partial*"))
    assert path.name.startswith(f"kvmha-lab-{name}-")  # the guest's name, prefixed once
    registers = opened.read_json("registers-parsed")
    assert isinstance(registers, list) and len(registers) == guest.vcpus
    modes = {r["mode"] for r in registers}  # type: ignore[index]
    assert modes == {MODE_AT_FREEZE.get(name, CpuMode.LONG_64)}
    manifest = json.loads((path / "manifest.json").read_text())
    schemas.check_manifest(manifest)
    chunked = any("chunks" in a for a in manifest["artifacts"])
    assert manifest["schema_version"] == (3 if chunked else 1)  # capture's chunks are blake3
    assert manifest["tool"]["version"] == __version__
    assert manifest["host"]["kvm_module"] and manifest["guest"]["qemu_pid"] == guest.pid
    assert [s["name"] for s in manifest["steps"]][:2] == ["freeze", "identity"]
    assert all(s["seconds"] >= 0 and s["status"] in ("ok", "skipped") for s in manifest["steps"])
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert set(listed) | {"manifest.json"} == {p.name for p in path.iterdir()}
    for rel, artifact in listed.items():
        data = (path / rel).read_bytes()
        assert artifact["size"] == len(data)
        if "chunks" not in artifact:
            assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
            continue
        size = artifact["chunks"]["size"]
        digests = [blake3(data[i : i + size]).digest() for i in range(0, len(data), size)]
        assert artifact["chunks"]["algorithm"] == "blake3" and "sha256" not in artifact["chunks"]
        assert artifact["chunks"]["blake3"] == [d.hex() for d in digests]
        assert artifact["sha256"] == hashlib.sha256(b"".join(digests)).hexdigest()


@pytest.mark.parametrize("name", [s.name for s in scenarios.SCENARIOS])
def test_elfcore_reads_each_dump_as_pyelftools_does(lab: Lab, name: str) -> None:
    dump = Bundle.open(lab.bundle(name)).file("memory-elf")
    assert dump is not None
    with dump.open("rb") as f:
        elf = ELFFile(f)
        want = [(s["p_type"], s["p_offset"], s["p_paddr"], s["p_filesz"])
                for s in elf.iter_segments()]  # fmt: skip
        notes = [(n["n_name"], n["n_descsz"]) for s in elf.iter_segments()
                 if s["p_type"] == "PT_NOTE" for n in s.iter_notes()]  # fmt: skip
        want_types = {"PT_LOAD": 1, "PT_NOTE": 4}
        want = [(want_types[t], o, p, z) for t, o, p, z in want]
        core = read_core(f)
        got = [(s.type, s.offset, s.paddr, s.filesz) for s in core.segments]
        assert got == want
        assert [(n.name, len(n.desc)) for n in core.notes(f)] == notes
        assert any(n[0] == "CORE" for n in notes)  # QEMU's per-vCPU NT_PRSTATUS


@pytest.mark.parametrize("name", [s.name for s in scenarios.SCENARIOS])
def test_prstatus_notes_give_each_vcpus_registers_as_info_registers(lab: Lab, name: str) -> None:
    opened = Bundle.open(lab.bundle(name))
    dump = opened.file("memory-elf")
    assert dump is not None
    text = opened.read_text("registers")
    assert text is not None
    want = []
    for r in parse_register_dumps(text):
        sp, ax = ("rsp", "rax") if r.width == 64 else ("esp", "eax")
        want.append((r.cpu, r.rip, r.gprs.get(sp), r.gprs.get(ax)))
    assert [(n.cpu, n.rip, n.rsp, n.rax) for n in vcpu_registers(dump)] == want


@pytest.mark.parametrize("name", ["panic", "oops"])
def test_elf_dump_opens_in_drgn_with_debug_info(lab: Lab, name: str) -> None:
    dump = Bundle.open(lab.bundle(name)).file("memory-elf")
    assert dump is not None
    assert kernel_release(dump) == assets.kernel().release


def test_the_dump_ends_on_qemus_dump_completed_event(lab: Lab) -> None:
    events = Bundle.open(lab.bundle("panic", source="dump")).read_json("events")
    assert isinstance(events, list)
    done = [e for e in events if e["event"] == "DUMP_COMPLETED"]
    assert len(done) == 1 and done[0]["data"]["result"]["status"] == "completed"
    assert "error" not in done[0]["data"]


def test_kdump_zlib_is_rearranged_and_opens_in_drgn(lab: Lab) -> None:
    opened = Bundle.open(lab.bundle("panic", "kdump-zlib", source="dump"))  # QEMU's stream
    assert opened.verify() == []
    dump = opened.file("memory-kdump")
    assert dump is not None and dump.read_bytes()[:8] == b"KDUMP   "
    assert kernel_release(dump) == assets.kernel().release


@pytest.mark.parametrize("name", ["emulation-failure", "mmio-fetch"])
def test_kvm_bundles_hold_the_parsed_internal_error(lab: Lab, name: str) -> None:
    opened = Bundle.open(lab.bundle(name))
    text = opened.read_text("qemu-log")
    assert text is not None
    parsed = parse_qemu_log(text)
    assert parsed.internal_errors, text[:400]
    record = opened.read_json("kvm-exit")
    assert isinstance(record, dict)
    error = record["internal_errors"][0]  # type: ignore[index]
    assert error["suberror"] == 1 and error["data"] == list(parsed.internal_errors[0].data)
    assert error["decoded"]["name"] == "KVM_INTERNAL_ERROR_EMULATION"
    code = record["code"]  # type: ignore[index]
    if name == "emulation-failure":
        assert error["emulation_failure"]
        assert error["decoded"]["instruction_bytes"].startswith("660fef00")  # pxor xmm0,[rax]
        assert code["bytes"][code["rip_index"]] == "66"
    else:
        assert set(code["bytes"]) == {"??"}  # RIP is in MMIO: QEMU could not read the code
    registers = opened.read_json("registers-parsed")
    assert isinstance(registers, list) and registers[0]["rip"] == parsed.register_dumps[0].rip  # type: ignore[index]
    assert registers[0]["mode"] == "long-64"  # type: ignore[index]  # both boot sectors go there
    stats = opened.read_json("vcpu-stats")  # KVM's own counters for each vCPU
    assert isinstance(stats, list) and stats, stats
    assert {entry["provider"] for entry in stats} == {"kvm"}  # type: ignore[index]
    names = {s["name"] for entry in stats for s in entry["stats"]}  # type: ignore[index]
    assert "exits" in names, names


def test_vmcoreinfo_is_recovered_when_the_guest_gave_none(lab: Lab, tmp_path: Path) -> None:
    guest = lab.up("panic", "-novmcoreinfo", vmcoreinfo=False)
    opts = CaptureOptions(Endpoint(path=guest.qmp), tmp_path, memory_source="dump")
    result = asyncio.run(capture(opts))
    opened = Bundle.open(result.bundle)
    info = opened.read_text("vmcoreinfo")
    assert info is not None and f"OSRELEASE={assets.kernel().release}" in info
    step = next(s for s in opened.manifest.steps if s.name == "vmcoreinfo")
    assert step.detail and "recovered" in step.detail
    dump = opened.file("memory-elf")
    assert dump is not None
    with pytest.raises(ValueError):
        kernel_release(dump)  # drgn refuses the dump alone ...
    assert kernel_release(dump, info) == assets.kernel().release  # ... and opens it with this
    lab.down(guest)


def test_running_guest_is_refused_without_live(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("running")
    done = cli("capture", "--qmp", guest.qmp, "--out", str(tmp_path))
    assert done.returncode == ExitCode.GUEST_STATE, done.stderr
    assert "--live" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
    assert runstate(guest.qmp_spare) == "running"


def test_live_capture_puts_the_guest_back_to_running(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("running")
    done = cli("capture", "--qmp", guest.qmp, "--out", str(tmp_path), "--live", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "complete" and Path(result["bundle"]).is_dir()
    assert runstate(guest.qmp_spare) == "running"


def test_missing_socket(tmp_path: Path) -> None:
    done = cli("capture", "--qmp", str(tmp_path / "nope.sock"), "--out", str(tmp_path))
    assert done.returncode == ExitCode.QMP
    assert "no QMP socket" in done.stderr and len(done.stderr.splitlines()) == 1


def test_refused_socket(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    done = cli("capture", "--qmp", str(path), "--out", str(tmp_path))
    assert done.returncode == ExitCode.QMP
    assert "refused" in done.stderr


def test_socket_that_is_not_qmp(tmp_path: Path) -> None:
    with one_reply(tmp_path / "http.sock", b"HTTP/1.0 200 OK\r\n\r\nhello\n") as path:
        done = cli("capture", "--qmp", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == ExitCode.QMP
    assert "does not speak QMP" in done.stderr


def test_socket_held_by_another_client_does_not_hang(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("triple-fault")

    async def hold_and_capture() -> subprocess.CompletedProcess[str]:
        async with session(Endpoint(path=guest.qmp_spare)):
            return await asyncio.to_thread(
                cli, "capture", "--qmp", guest.qmp_spare, "--out", str(tmp_path), "--timeout", "2"
            )

    done = asyncio.run(hold_and_capture())
    assert done.returncode == ExitCode.QMP
    assert "another client" in done.stderr


def test_a_terminal_gets_a_progress_bar_for_the_dump(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("panic")
    controller, terminal = os.openpty()
    argv = [*CLI, "capture", "--qmp", guest.qmp, "--out", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    shown = b""
    while chunk := _read_pty(controller):
        shown += chunk
    os.close(controller)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, shown.decode(errors="replace")
    assert b"dumping guest memory" in shown
    assert Path(out.strip()).parent == tmp_path


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed its end
        return b""


def test_bundle_verify_names_every_kind_of_damage(lab: Lab, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(lab.bundle("triple-fault"), bundle)
    whole = cli("bundle", "verify", str(bundle))
    assert whole.returncode == 0 and "artifacts verified" in whole.stdout, whole.stderr
    (bundle / "mtree.txt").write_text("resized")
    registers = bundle / "registers.txt"
    data = registers.read_bytes()
    registers.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, one bit flipped
    (bundle / "code.json").unlink()
    (bundle / "extra.txt").write_text("not captured")
    done = cli("bundle", "verify", str(bundle))
    assert done.returncode == ExitCode.BAD_INPUT
    size = len("resized")
    for said in (f"mtree.txt: {size} bytes, the manifest says", "registers.txt: does not match its"
                 " sha256", "code.json: missing", "extra.txt: not in the manifest"):  # fmt: skip
        assert said in done.stderr, done.stderr
    assert "4 problem(s) found" in done.stderr


def test_second_capture_of_the_same_guest_is_refused(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("triple-fault")
    with guest_lock(guest.pid, Endpoint(path=guest.qmp)):
        done = cli("capture", "--qmp", guest.qmp, "--out", str(tmp_path))
    assert done.returncode == ExitCode.BUSY
    assert "another capture" in done.stderr


def test_once_takes_the_bundle_of_this_freeze_already_there(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("triple-fault")
    args = ("capture", "--once", "--json", "--qmp", guest.qmp, "--out", str(tmp_path),
            "--memory-format", "none")  # fmt: skip

    def once() -> dict[str, object]:
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    first = once()
    assert first["existing"] is False
    # a bundle made before this QEMU started is of another freeze: captured again
    manifest = Path(str(first["bundle"])) / "manifest.json"
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "created": "2000-01-01T00:00:00Z"}))
    second = once()
    assert second["existing"] is False and second["bundle"] != first["bundle"]
    third = once()
    assert third == {**second, "existing": True}
    assert len(list(tmp_path.glob("kvmha-*"))) == 2


def test_timeout_leaves_an_incomplete_bundle_that_says_so(lab: Lab, tmp_path: Path) -> None:
    guest = lab.up("triple-fault", "-2g", memory_mb=2048)
    argv = ("--out", str(tmp_path), "--timeout", "1", "--json", "--memory-source", "dump")
    done = cli("capture", "--qmp", guest.qmp, *argv)
    assert done.returncode == ExitCode.INCOMPLETE, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "incomplete"
    assert any("memory" in r and "timeout" in r for r in result["reasons"])
    opened = Bundle.open(Path(result["bundle"]))
    assert opened.verify() == [] and opened.file("memory-elf") is None
    manifest = json.loads((Path(result["bundle"]) / "manifest.json").read_text())
    schemas.check_manifest(manifest)
    assert any(s["name"] == "memory" and s["status"] == "failed" for s in manifest["steps"])
    lab.down(guest)


def test_qemu_dying_mid_dump_leaves_an_incomplete_bundle(lab: Lab, tmp_path: Path) -> None:
    guest = lab.up("triple-fault", "-dies", memory_mb=2048)
    killed: list[int] = []

    def kill_on_progress(p: Progress) -> None:
        if p.status == "progress" and not killed:
            os.kill(guest.pid, 9)
            killed.append(guest.pid)

    opts = CaptureOptions(Endpoint(path=guest.qmp), tmp_path, memory_source="dump")
    result = asyncio.run(capture(opts, kill_on_progress))
    assert killed
    assert result.manifest.status == "incomplete"
    assert any(r.startswith("memory") for r in result.manifest.reasons)
    assert Bundle.open(result.bundle).verify() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_leaves_an_incomplete_bundle(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("panic")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(small)], check=True)
    try:
        result = asyncio.run(capture(CaptureOptions(Endpoint(path=guest.qmp), small)))
        assert result.manifest.status == "incomplete"
        reason = next(r for r in result.manifest.reasons if r.startswith("memory"))
        assert "space" in reason.lower(), reason
        assert Bundle.open(result.bundle).verify() == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert runstate(guest.qmp_spare) == "guest-panicked"


def code_at_rip(lab: Lab, name: str) -> dict[str, str]:
    code = Bundle.open(lab.bundle(name)).read_json("code")
    assert isinstance(code, list) and code
    first = code[0]
    assert isinstance(first, dict)
    return first


def test_code_at_rip_walks_linux_page_tables_like_drgn(lab: Lab) -> None:
    first = code_at_rip(lab, "panic")
    assert first["mode"] == "long-64" and int(first["rip"], 16) >= 0xFFFF_8000_0000_0000
    dump = Bundle.open(lab.bundle("panic")).file("memory-elf")
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(assets.kernel().vmlinux)])
    assert prog.read(int(first["rip"], 16), 16).hex() == first["at_rip"]
    assert prog.read(int(first["rip"], 16) - 16, 16).hex() == first["before"]


def test_code_at_rip_of_the_triple_fault_is_its_ud2(lab: Lab) -> None:
    first = code_at_rip(lab, "triple-fault")
    assert first["mode"] == "protected-32" and first["at_rip"].startswith("0f0b")


@pytest.mark.kvm
def test_code_at_rip_agrees_with_the_kvm_log(lab: Lab) -> None:
    first = code_at_rip(lab, "emulation-failure")
    text = Bundle.open(lab.bundle("emulation-failure")).read_text("qemu-log")
    assert text is not None
    code = parse_qemu_log(text).code
    assert code is not None
    assert bytes.fromhex(first["at_rip"]).startswith(code.from_rip()[:4])


def test_capture_over_qmp_tcp(tmp_path: Path) -> None:
    """QMP over TCP (HOST:PORT): no peer pid there, so no stderr file is found by itself."""
    with triple_fault_on_tcp(tmp_path) as (port, sockets):

        async def start() -> None:
            async with session(Endpoint(path=str(sockets[0]))) as qmp:
                await qmp.execute("cont")
                while (await qmp.execute("query-status"))["status"] != "shutdown":  # type: ignore[index]
                    await asyncio.sleep(0.05)

        asyncio.run(start())
        done = cli("capture", "--qmp", f"127.0.0.1:{port}", "--out", str(tmp_path / "b"), "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["runstate"] == "shutdown"
        opened = Bundle.open(Path(result["bundle"]))
        dump = opened.file("memory-elf")
        assert opened.verify() == [] and dump is not None
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600  # QEMU wrote into our 0600 file
        step = next(s for s in opened.manifest.steps if s.name == "qemu-log")
        assert step.status == "skipped" and step.detail and "--qemu-log" in step.detail
        assert runstate(str(sockets[1])) == "shutdown"


def test_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    plain = tmp_path / "qmp.sock"
    plain.write_text("not a socket\n")
    done = cli("capture", "--qmp", str(plain), "--out", str(tmp_path / "b"))
    assert done.returncode == ExitCode.QMP
    assert "is not a socket" in done.stderr and len(done.stderr.splitlines()) == 1
