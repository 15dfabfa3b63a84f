"""The baseline of the libvirt-at-scale bench: one libvirt connection with libvirt's event loop
in a thread, keepalive, and the callbacks a watcher registers (lifecycle events; QEMU's own
events too with ``monitor``), doing nothing else. Prints ``ready``, then runs until ended."""

from __future__ import annotations

import sys

import libvirt
import libvirt_qemu


def ignore(*_args: object) -> None:
    return None


def main(uri: str, mode: str) -> None:
    libvirt.virEventRegisterDefaultImpl()
    conn = libvirt.open(uri)
    conn.setKeepAlive(5, 3)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, ignore, None)
    if mode == "monitor":
        libvirt_qemu.qemuMonitorEventRegister(conn, None, None, ignore, None, 0)
    print("ready", flush=True)
    while True:
        libvirt.virEventRunDefaultImpl()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
