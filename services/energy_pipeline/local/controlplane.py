"""A real Kubernetes control plane on 127.0.0.1: etcd and kube-apiserver, nothing else.

The binaries are built from released Go modules once (:mod:`energy_pipeline.local.gobuild`,
recipe in ``tools/controlplane``) and cached under ``~/.cache/energy-pipeline/``. The
API server authenticates with a static token file (an admin token in
``system:masters``) and ServiceAccount tokens signed with a key generated here,
authorizes with RBAC and keeps its default admission plugins, PodSecurity among
them. No kubelet, scheduler or controller-manager runs: objects are stored and
validated, Pods never run, namespaces get no ``default`` ServiceAccount and a
deleted namespace stays ``Terminating``.

Used by ``make apiserver-up`` / ``make apiserver-down`` (through
:mod:`energy_pipeline.local.controlplane_cli`) and by the pytest session fixture.
"""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from energy_pipeline.local.broker import HOST, pid_alive, port_is_free, read_pid, stop_pid
from energy_pipeline.local.gobuild import ETCD, KUBE_APISERVER, ensure_built

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

ADMIN_USER = "energy-admin"
# Cluster IPs are only allocated from this range: nothing routes to it here.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Admission plugins that wait on a controller which does not run here. The
# ServiceAccount plugin refuses every Pod of a namespace whose ``default``
# ServiceAccount the (absent) controller-manager has not created.
DISABLED_ADMISSION_PLUGINS = ("ServiceAccount",)


class ControlPlaneError(RuntimeError):
    pass


def openssl_binary() -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ControlPlaneError(
            "openssl is not installed: it generates the ServiceAccount signing key "
            "(apt-get install openssl)"
        )
    return openssl


def generate_rsa_key_pair(private_key: Path, public_key: Path) -> None:
    """An RSA key pair in PEM files, made by the ``openssl`` command."""
    openssl = openssl_binary()
    private = ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    public = ["pkey", "-in", str(private_key), "-pubout"]
    for arguments, output in ((private, private_key), (public, public_key)):
        result = subprocess.run(  # noqa: S603 - fixed argument list
            [openssl, *arguments, "-out", str(output)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ControlPlaneError(f"openssl {arguments[0]} failed: {result.stderr}")
    private_key.chmod(0o600)


def kubeconfig(server: str, token: str, user: str, ca_file: Path | None = None) -> dict[str, Any]:
    """A kubeconfig with one cluster, one token user and one current context."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None and ca_file.exists():
        cluster["certificate-authority-data"] = base64.b64encode(ca_file.read_bytes()).decode()
    else:
        cluster["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


@dataclass
class ControlPlane:
    """etcd and kube-apiserver processes and their files under ``workdir``."""

    workdir: Path
    apiserver_port: int
    etcd_port: int
    etcd_peer_port: int
    kubeconfig_path: Path | None = None
    etcd_pid: int | None = None
    apiserver_pid: int | None = None

    def __post_init__(self) -> None:
        # The processes run in the workdir: every path handed to them is absolute.
        self.workdir = self.workdir.resolve()
        if self.kubeconfig_path is None:
            self.kubeconfig_path = self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{HOST}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{HOST}:{self.etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        assert self.kubeconfig_path is not None  # noqa: S101 - set in __post_init__
        return self.kubeconfig_path

    @property
    def cert_dir(self) -> Path:
        return self.workdir / "certs"

    @property
    def ca_file(self) -> Path:
        """The API server's self-signed serving certificate and its CA, once it wrote them."""
        return self.cert_dir / "apiserver.crt"

    def log_file(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    def pid_file(self, component: str) -> Path:
        return self.workdir / f"{component}.pid"

    @property
    def admin_token(self) -> str:
        return (self.workdir / "admin.token").read_text().strip()

    def prepare(self) -> None:
        """The signing key and the token file (kept across restarts of one workdir)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_dir.mkdir(exist_ok=True)
        key, public = self.workdir / "sa.key", self.workdir / "sa.pub"
        if not key.exists() or not public.exists():
            generate_rsa_key_pair(key, public)
        token_file = self.workdir / "admin.token"
        if not token_file.exists():
            token_file.write_text(secrets.token_hex(24) + "\n")
            token_file.chmod(0o600)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)

    def etcd_command(self) -> list[str]:
        peer = f"http://{HOST}:{self.etcd_peer_port}"
        return [
            str(ensure_built(ETCD)),
            "--name=local",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            "--initial-cluster-state=new",
            "--log-level=warn",
            # Test data: losing the last writes on a crash of the machine is fine.
            "--unsafe-no-fsync",
        ]

    def apiserver_command(self) -> list[str]:
        return [
            str(ensure_built(KUBE_APISERVER)),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.cert_dir}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={self.workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The reconciler of the `kubernetes` Service's endpoints refuses a loopback
            # advertise address; nothing here routes to that Service anyway.
            "--endpoint-reconciler-type=none",
            f"--disable-admission-plugins={','.join(DISABLED_ADMISSION_PLUGINS)}",
            # As kubeadm and kind do: Pod Security, not the API server, refuses privileged Pods.
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def build(self) -> None:
        """Build (or find in the cache) both binaries; the first time takes minutes."""
        ensure_built(ETCD)
        ensure_built(KUBE_APISERVER)

    def start(self, timeout: float = 120.0) -> None:
        """Start etcd, then kube-apiserver, wait until it is ready, write the kubeconfig."""
        for port in (self.apiserver_port, self.etcd_port, self.etcd_peer_port):
            if not port_is_free(port):
                raise ControlPlaneError(
                    f"port {HOST}:{port} is already taken: stop what listens there "
                    "(make apiserver-down) or choose other ports"
                )
        self.build()
        self.prepare()
        try:
            etcd = self._spawn("etcd", self.etcd_command())
            self.etcd_pid = etcd.pid
            self._wait_etcd(etcd, timeout)
            apiserver = self._spawn("kube-apiserver", self.apiserver_command())
            self.apiserver_pid = apiserver.pid
            self._wait_apiserver(apiserver, timeout)
        except BaseException:
            self.stop()
            raise
        write_kubeconfig(
            self.kubeconfig, kubeconfig(self.server, self.admin_token, ADMIN_USER, self.ca_file)
        )

    def _spawn(self, component: str, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log_file(component), "ab") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed argument list
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.pid_file(component).write_text(f"{process.pid}\n")
        return process

    def _wait(
        self,
        component: str,
        process: subprocess.Popen[bytes],
        url: str,
        ready: str,
        timeout: float,
        **client: Any,
    ) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, **client) as http:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"{component} exited with code {process.returncode}:\n"
                        f"{self.log_tail(component)}"
                    )
                try:
                    response = http.get(url)
                    if response.status_code == 200 and ready in response.text:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise ControlPlaneError(
            f"{component} was not ready within {timeout:.0f}s:\n{self.log_tail(component)}"
        )

    def _wait_etcd(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        self._wait("etcd", process, f"{self.etcd_url}/health", '"health":"true"', timeout)

    def _wait_apiserver(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        # The serving certificate does not exist before the server writes it.
        self._wait(
            "kube-apiserver",
            process,
            f"{self.server}/readyz",
            "ok",
            timeout,
            verify=False,  # noqa: S501 - localhost, self-signed; the kubeconfig pins it
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

    def log_tail(self, component: str, lines: int = 40) -> str:
        path = self.log_file(component)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def running_pids(self) -> dict[str, int]:
        """The components whose PID file names a live process."""
        pids = {}
        for component in ("kube-apiserver", "etcd"):
            pid = read_pid(self.pid_file(component))
            if pid is not None and pid_alive(pid):
                pids[component] = pid
        return pids

    def stop(self, timeout: float = 30.0) -> None:
        """Stop kube-apiserver, then etcd, each by its PID."""
        for component, attribute in (("kube-apiserver", "apiserver_pid"), ("etcd", "etcd_pid")):
            pid = getattr(self, attribute) or read_pid(self.pid_file(component))
            if pid is not None:
                stop_pid(pid, timeout)
            setattr(self, attribute, None)
            self.pid_file(component).unlink(missing_ok=True)

    def api_client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` authenticated as the admin."""
        return api_client(self.kubeconfig)

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name``."""
        return serviceaccount_kubeconfig(self.kubeconfig, namespace, name, path, expiration_seconds)


def serviceaccount_kubeconfig(
    admin_kubeconfig: Path,
    namespace: str,
    name: str,
    path: Path,
    expiration_seconds: int = 3600,
) -> Path:
    """Write to ``path`` a kubeconfig that authenticates as ServiceAccount ``namespace/name``.

    The admin kubeconfig's cluster is reused. The ServiceAccount is created if it is
    missing (the namespace must exist); its token comes from the TokenRequest API,
    since no token controller runs here.
    """
    from kubernetes import client

    with api_client(admin_kubeconfig) as admin:
        core = client.CoreV1Api(admin)
        try:
            core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        except client.ApiException as error:
            if error.status != 409:
                raise
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(expiration_seconds=expiration_seconds)
        )
        answer = core.create_namespaced_service_account_token(name, namespace, request)
    if answer.status is None or not answer.status.token:
        raise ControlPlaneError(f"the TokenRequest for {namespace}/{name} returned no token")
    admin_config = yaml.safe_load(admin_kubeconfig.read_text())
    user = f"system:serviceaccount:{namespace}:{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin_config["clusters"][:1],
        "users": [{"name": user, "user": {"token": answer.status.token}}],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": admin_config["clusters"][0]["name"], "user": user},
            }
        ],
        "current-context": "local",
        "preferences": {},
    }
    write_kubeconfig(path, config)
    return path


def api_client(kubeconfig_path: Path) -> ApiClient:
    """A ``kubernetes.client.ApiClient`` for one kubeconfig file; close it after use."""
    from kubernetes import config

    client: ApiClient = config.new_client_from_config(config_file=str(kubeconfig_path))
    return client
