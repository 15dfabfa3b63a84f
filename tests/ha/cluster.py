"""A real two-node Pacemaker cluster on one machine, for tests.

Each node is a network namespace (``ip netns``; the two joined by a veth pair) with its own
mount and UTS namespaces, held open by a ``sleep`` process: per-node ``/var/lib/pacemaker``,
``/var/log/pacemaker``, ``/var/lib/corosync`` and ``/etc/corosync`` (bind mounts of directories
under the cluster's root), tmpfs ``/run`` and ``/dev/shm`` (corosync and Pacemaker use fixed IPC
names), and read-only overlays that add the project's OCF agent to
``/usr/lib/ocf/resource.d/kvmha``, the test fence agent to ``/usr/sbin``, ``kvmha-forensics``
and the project's HA scripts to ``/usr/local/bin``, the alert agent's helper to
``/usr/local/sbin`` (its configuration, ``out`` the cluster's ``shared/bundles``, at
``shared/alert.conf`` instead of ``/etc/kvmha-forensics/alert.conf``) and its sudoers rule to
``/etc/sudoers.d``, as an operator installs them, so the host's system directories are never
written. With ``libvirt``, each node runs its own libvirtd and virtlogd (their state and
runtime directories the node's own). Everything else (the repository, the virtualenv, the
cluster's ``shared`` directory) is the host's filesystem, seen by both nodes alike.

``Cluster.close`` ends every process in each node's network namespace (corosync, Pacemaker,
the agents' QEMU, a watcher) and deletes the namespaces; the fixtures call it also on failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "ha" / "ocf" / "kvmha-guest"
FENCE_AGENT = Path(__file__).with_name("fence_kvmha_test")
BINARY = Path(sys.executable).with_name("kvmha-forensics")
# installed in each node's /usr/local/bin, as docs/ha/pacemaker.md says
LOCAL_BIN = {"kvmha-alert": ROOT / "ha" / "alert" / "kvmha-alert",
             "kvmha-domain-monitor": ROOT / "ha" / "virtualdomain" / "kvmha-domain-monitor",
             "kvmha-crm-fail": ROOT / "ha" / "hook" / "kvmha-crm-fail"}  # fmt: skip
SUDOERS = ROOT / "ha" / "alert" / "kvmha-alert.sudoers"
HELPER = ROOT / "ha" / "alert" / "kvmha-alert-helper"
LIBVIRT_DIRS = ("/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt", "/etc/libvirt/qemu")
# what systemd gives pacemaker.service: agents find programs there, not on the test's PATH
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DAEMONS = ("corosync", "pacemakerd")
PACEMAKER_DIRS = ("lib-pacemaker", "lib-pacemaker/cib", "lib-pacemaker/pengine",
                  "lib-pacemaker/blackbox", "lib-pacemaker/cores", "log-pacemaker")  # fmt: skip
UP_TIMEOUT = 60.0  # an upper bound on waiting for the cluster, not a speed requirement


class ClusterError(RuntimeError):
    """The cluster did not come up, or a command in a node failed."""


def feature_set() -> str:
    """The CIB feature set the installed Pacemaker supports (a newer one stops its controller)."""
    out = subprocess.run(["pacemakerd", "--features"], capture_output=True, text=True, check=True)
    found = re.search(r"Supporting v(\d+\.\d+\.\d+)", out.stdout)
    if found is None:
        raise ClusterError(f"no feature set in 'pacemakerd --features': {out.stdout!r}")
    return found.group(1)


def ids() -> tuple[int, int]:
    """hacluster's uid and haclient's gid (the owners of Pacemaker's files)."""
    import grp
    import pwd

    return pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid


def libvirtd_answers(node: Node) -> bool:
    return node.run("virsh", "-c", "qemu:///system", "version", check=False).returncode == 0


def corosync_answers(node: Node) -> bool:
    return node.run("corosync-cfgtool", "-s", check=False).returncode == 0


@dataclass
class Node:
    """One cluster node: its namespaces (held by ``holder``) and its own directories."""

    name: str
    nodeid: int
    address: str
    netns: str
    root: Path
    holder: subprocess.Popen[str] | None = None
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this node's namespaces."""
        assert self.holder is not None
        pid = str(self.holder.pid)
        return ["nsenter", "--target", pid, "--mount", "--uts", "--net", "--", *command]

    def run(
        self,
        *command: str,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the node; with ``check``, a failure raises with its output."""
        done = subprocess.run(
            self.argv(command), capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        if check and done.returncode != 0:
            raise ClusterError(
                f"{self.name}: {shlex.join(command)} exited {done.returncode}: "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def spawn(self, name: str, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Start a long-running ``command`` in the node, its output to ``root/NAME.out``."""
        with (self.root / f"{name}.out").open("ab") as out:
            self.daemons[name] = subprocess.Popen(
                self.argv(command), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )  # fmt: skip

    def path(self, inside: str) -> Path:
        """A path as the node sees it (through its holder's root: ``/run`` is the node's own)."""
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root") / inside.lstrip("/")

    def processes(self) -> list[int]:
        """Every process in this node's network namespace but its holder."""
        try:
            mine = os.stat(f"/run/netns/{self.netns}").st_ino
        except OSError:
            return []
        holder = self.holder.pid if self.holder is not None else -1
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != holder:
                with contextlib.suppress(OSError):
                    if os.stat(entry / "ns" / "net").st_ino == mine:
                        pids.append(int(entry.name))
        return pids

    def power_off(self) -> None:
        """Kill every process of the node (a node that dies), keeping its namespaces."""
        for _ in range(50):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for proc in self.daemons.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


class Cluster:
    """Two nodes, ``node-a`` and ``node-b``, with corosync (knet, two_node) and Pacemaker."""

    def __init__(
        self,
        root: Path,
        stonith: bool = False,
        libvirt: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.env = env or {}  # Pacemaker's environment, so its agents' too
        self.shared = root / "shared"
        self.stonith = stonith
        self.libvirt = libvirt
        tag = f"kvmha{os.getpid()}x{id(self) % 10000}"
        self.nodes = [
            Node("node-a", 1, "10.213.0.1", f"{tag}a", root / "node-a"),
            Node("node-b", 2, "10.213.0.2", f"{tag}b", root / "node-b"),
        ]

    @property
    def a(self) -> Node:
        return self.nodes[0]

    @property
    def b(self) -> Node:
        return self.nodes[1]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- bring-up ----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the nodes, start corosync and Pacemaker on both, wait for a DC and both online."""
        self._layout()
        for node in self.nodes:
            subprocess.run(["ip", "netns", "add", node.netns], check=True)
        a, b = self.nodes
        subprocess.run(
            ["ip", "link", "add", "ha0", "netns", a.netns, "type", "veth",
             "peer", "name", "ha0", "netns", b.netns], check=True,
        )  # fmt: skip
        for node in self.nodes:
            self._hold(node)
            node.run("ip", "link", "set", "lo", "up")
            node.run("ip", "addr", "add", f"{node.address}/24", "dev", "ha0")
            node.run("ip", "link", "set", "ha0", "up")
        if self.libvirt:
            for node in self.nodes:
                self._libvirtd(node)
        for node in self.nodes:
            node.spawn("corosync", ["corosync", "-f", "-c", "/etc/corosync/corosync.conf"])
        for node in self.nodes:
            self._until(node, corosync_answers, "corosync answering")
        env = {"PCMK_logfile": "/var/log/pacemaker/pacemaker.log", "PCMK_logfacility": "none",
               "PATH": SYSTEM_PATH, **self.env}  # fmt: skip
        for node in self.nodes:
            node.spawn("pacemakerd", ["pacemakerd", "-f"], env)
        self._until(self.a, lambda n: self.online() == {"node-a", "node-b"}, "both nodes online")

    def _layout(self) -> None:
        uid, gid = ids()
        (self.shared / "ocf" / "kvmha").mkdir(parents=True)
        (self.shared / "ocf" / "kvmha" / "kvmha-guest").symlink_to(AGENT)
        (self.shared / "sbin").mkdir()
        (self.shared / "sbin" / FENCE_AGENT.name).symlink_to(FENCE_AGENT)
        (self.shared / "bin").mkdir()
        (self.shared / "bin" / BINARY.name).symlink_to(BINARY)  # run as root only
        for name, source in LOCAL_BIN.items():  # copies: hacluster runs the alert agent
            shutil.copyfile(source, self.shared / "bin" / name)
            (self.shared / "bin" / name).chmod(0o755)
        (self.shared / "sbin-local").mkdir()
        conf = self.shared / "alert.conf"  # root's, as the helper requires
        conf.write_text(f"out={self.shared / 'bundles'}\n")
        helper = self.shared / "sbin-local" / HELPER.name
        text = HELPER.read_text()
        if "\nCONF=/etc/kvmha-forensics/alert.conf\n" not in text:
            raise ClusterError(f"no CONF= line in {HELPER} to point at {conf}")
        helper.write_text(text.replace("CONF=/etc/kvmha-forensics/alert.conf", f"CONF={conf}"))
        helper.chmod(0o755)
        (self.shared / "sudoers").mkdir()
        shutil.copyfile(SUDOERS, self.shared / "sudoers" / "kvmha-alert")
        (self.shared / "sudoers" / "kvmha-alert").chmod(0o440)
        (self.shared / "holders").mkdir()
        for node in self.nodes:
            for sub in PACEMAKER_DIRS:
                (node.root / sub).mkdir(parents=True)
                os.chown(node.root / sub, uid, gid)
                os.chmod(node.root / sub, 0o770)
            (node.root / "lib-corosync").mkdir()
            (node.root / "etc-corosync").mkdir()
            (node.root / "etc-corosync" / "corosync.conf").write_text(self._corosync_conf())
            cib = node.root / "lib-pacemaker" / "cib" / "cib.xml"
            cib.write_text(self._seed_cib())
            os.chown(cib, uid, gid)
            cib.chmod(0o600)
            log = node.root / "log-pacemaker" / "pacemaker.log"
            log.touch()
            os.chown(log, uid, gid)

    def _hold(self, node: Node) -> None:
        mounts = [
            f"hostname {node.name}",
            "mount -t tmpfs -o mode=755 tmpfs /run",
            "mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
            f"mount --bind {node.root}/lib-pacemaker /var/lib/pacemaker",
            f"mount --bind {node.root}/log-pacemaker /var/log/pacemaker",
            f"mount --bind {node.root}/lib-corosync /var/lib/corosync",
            f"mount --bind {node.root}/etc-corosync /etc/corosync",
            "mount -t overlay overlay -o "
            f"lowerdir={self.shared}/ocf:/usr/lib/ocf/resource.d /usr/lib/ocf/resource.d",
            f"mount -t overlay overlay -o lowerdir={self.shared}/sbin:/usr/sbin /usr/sbin",
            f"mount -t overlay overlay -o lowerdir={self.shared}/bin:/usr/local/bin /usr/local/bin",
            "mount -t overlay overlay -o "
            f"lowerdir={self.shared}/sbin-local:/usr/local/sbin /usr/local/sbin",
            "mount -t overlay overlay -o "
            f"lowerdir={self.shared}/sudoers:/etc/sudoers.d /etc/sudoers.d",
            "mkdir -p /run/kvmha",
            "echo ready",
            "exec sleep infinity",
        ]
        node.holder = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "--", "sh", "-ec", "\n".join(mounts)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert node.holder.stdout is not None
        if node.holder.stdout.readline().strip() != "ready":
            raise ClusterError(f"{node.name}: its namespaces could not be set up")
        (self.shared / "holders" / node.name).write_text(f"{node.holder.pid}\n")

    def _libvirtd(self, node: Node) -> None:
        """The node's own libvirtd and virtlogd, on its own /var/{lib,log,cache}/libvirt and
        /etc/libvirt/qemu. The capabilities cache is seeded from the host's, else from
        node-a's (node-a's libvirtd starts first): one QEMU probe (~8 s) at most."""
        for sub in LIBVIRT_DIRS:
            source = node.root / sub.strip("/").replace("/", "-")
            seed = Path(sub) if node is self.a else self.a.root / "var-cache-libvirt"
            if sub == "/var/cache/libvirt" and (seed / "qemu").is_dir():
                shutil.copytree(seed, source, symlinks=True)
            source.mkdir(exist_ok=True)
            node.run("mount", "--bind", str(source), sub)
        node.run("mkdir", "-p", "/var/lib/libvirt/qemu", "/var/log/libvirt/qemu",
                 "/var/cache/libvirt/qemu", "/run/libvirt")  # fmt: skip
        node.run("virtlogd", "-d")
        # pinned like the lab's libvirtd (kvmha_forensics.lab.libvirtd): its cache stays valid
        node.run("taskset", "-c", "0", "libvirtd", "-d")
        self._until(node, libvirtd_answers, "libvirtd answering")

    def _corosync_conf(self) -> str:
        nodes = "".join(
            f"    node {{\n        ring0_addr: {n.address}\n        name: {n.name}\n"
            f"        nodeid: {n.nodeid}\n    }}\n"
            for n in self.nodes
        )
        return (
            "totem {\n    version: 2\n    cluster_name: kvmha-test\n    transport: knet\n"
            "    crypto_cipher: none\n    crypto_hash: none\n    token: 1000\n}\n"
            f"nodelist {{\n{nodes}}}\n"
            "quorum {\n    provider: corosync_votequorum\n    two_node: 1\n}\n"
            "logging {\n    to_logfile: yes\n    logfile: /var/log/pacemaker/corosync.log\n"
            "    to_syslog: no\n    to_stderr: no\n    timestamp: hires\n}\n"
        )

    def _seed_cib(self) -> str:
        props = {
            "stonith-enabled": "true" if self.stonith else "false",
            "no-quorum-policy": "ignore",
            "dc-deadtime": "2s",
        }
        pairs = "".join(f'<nvpair id="opt-{k}" name="{k}" value="{v}"/>' for k, v in props.items())
        return (
            f'<cib crm_feature_set="{feature_set()}" validate-with="pacemaker-3.0" epoch="1" '
            'num_updates="0" admin_epoch="0"><configuration><crm_config>'
            f'<cluster_property_set id="cib-bootstrap-options">{pairs}</cluster_property_set>'
            "</crm_config><nodes/><resources/><constraints/></configuration><status/></cib>\n"
        )

    def _until(
        self, node: Node, ready: Callable[[Node], bool], what: str, timeout: float = UP_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc_name, proc in node.daemons.items():
                if proc.poll() is not None:
                    raise ClusterError(f"{node.name}: {proc_name} exited with {proc.returncode}")
            if ready(node):
                return
            time.sleep(0.2)
        raise ClusterError(f"{node.name}: no {what} within {timeout:g}s")

    # -- the CIB -----------------------------------------------------------------------------

    def cib(self, node: Node | None = None) -> ET.Element:
        """The live CIB, as the given (default: a live) node sees it."""
        done = (node or self.alive()).run("cibadmin", "--query", "--local", timeout=30)
        return ET.fromstring(done.stdout)

    def alive(self) -> Node:
        """A node whose Pacemaker runs."""
        for node in self.nodes:
            proc = node.daemons.get("pacemakerd")
            if proc is not None and proc.poll() is None:
                return node
        raise ClusterError("no node runs Pacemaker")

    def online(self) -> set[str]:
        """Names of the nodes that are cluster members with a controller, once there is a DC."""
        try:
            cib = self.cib()
        except ClusterError:
            return set()
        if not cib.get("dc-uuid"):
            return set()
        return {
            s.get("uname", "")
            for s in cib.iter("node_state")
            if s.get("crmd") == "online" and s.get("join") == "member" and s.get("in_ccm") == "true"
        }

    def create(self, section: str, element: ET.Element) -> None:
        self.alive().run(
            "cibadmin", "--create", "-o", section, "--xml-text", ET.tostring(element, "unicode")
        )

    def delete(self, section: str, element: ET.Element) -> None:
        self.alive().run(
            "cibadmin", "--delete", "-o", section, "--xml-text", ET.tostring(element, "unicode")
        )

    def set_property(self, name: str, value: str) -> None:
        self.alive().run("crm_attribute", "--type", "crm_config", "--name", name, "--update", value)

    def operations(self, rsc: str) -> list[dict[str, str]]:
        """The resource's operation history on every node (``node`` added to each record)."""
        found = []
        for state in self.cib().iter("node_state"):
            for lrm in state.iter("lrm_resource"):
                if lrm.get("id") != rsc:
                    continue
                for op in lrm.iter("lrm_rsc_op"):
                    found.append({**op.attrib, "node": state.get("uname", "")})
        return found

    def running_on(self, rsc: str) -> str | None:
        """The node where the resource's last start succeeded and no stop followed."""
        done = self.alive().run(
            "crm_resource", "--locate", "--resource", rsc, "--quiet", check=False
        )
        names = done.stdout.split()
        return names[0] if len(names) == 1 else None

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """End every process of both nodes and delete their namespaces."""
        for node in self.nodes:
            node.power_off()
            if node.holder is not None and node.holder.poll() is None:
                node.holder.kill()
                node.holder.wait(10)
            subprocess.run(["ip", "netns", "delete", node.netns], capture_output=True, check=False)
