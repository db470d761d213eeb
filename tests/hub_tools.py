"""A real JupyterHub on localhost for tests: the course's deploy config, test-only login and spawner.

`running_hub` starts `jupyterhub` with `deploy/jupyterhub/jupyterhub_config.py` loaded first and then,
for the test only, DummyAuthenticator (any password), SimpleLocalProcessSpawner (every user is a
process of the test's own user, with a home under the test's tmp folder), free ports, and a service
token for the test's admin calls. Every process it starts carries a marker in its environment, so
teardown can prove none is left (and end any that is, by its id).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
MARK_VAR = "ROADMAP_HUB_TEST_RUN"   # in the environment of the hub, the proxy, every server and kernel


def missing_tools() -> str | None:
    """Why the hub cannot run here (None when it can): Node, npm and configurable-http-proxy are needed."""
    absent = [tool for tool in ("node", "npm", "configurable-http-proxy") if shutil.which(tool) is None]
    if absent:
        return (f"{', '.join(absent)} not found: the JupyterHub test needs Node.js and "
                "`npm install -g configurable-http-proxy` (.ci/run installs them when run as root)")
    return None


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


TEST_CONFIG = '''\
# Written by tests/hub_tools.py: the course's hub config, then test-only login, spawner and ports.
c = get_config()  # noqa: F821
load_subconfig({deploy!r})  # noqa: F821

c.JupyterHub.authenticator_class = "dummy"          # any password: for this test only
c.JupyterHub.spawner_class = "simple"               # users are processes of the test's own user
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.environment = {{**c.Spawner.environment, {mark_var!r}: {mark!r}}}

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {state!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {state!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {state!r} + "/cookie_secret"
c.JupyterHub.pid_file = {state!r} + "/jupyterhub.pid"
c.JupyterHub.log_level = "WARN"

c.JupyterHub.services = [{{"name": "course-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "course-test", "services": ["course-test"],
                            "scopes": ["admin:users", "admin:servers", "list:users"]}}]
'''


@dataclass
class Hub:
    """A running hub: its public URL, the admin service token, and the users' tokens once logged in."""
    url: str
    admin_token: str
    mark: str
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        """A call to the hub's REST API (/hub/api/...)."""
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kw)

    def login(self, name: str, password: str = "any password") -> str:
        """Log in through the REST API (username and password in the body): the user's new token."""
        r = requests.post(f"{self.url}/hub/api/users/{name}/tokens", timeout=60,
                          json={"auth": {"username": name, "password": password}, "note": "course test"})
        assert r.status_code in (200, 201), f"login of {name} refused: {r.status_code} {r.text}\n{self.tail()}"
        self.tokens[name] = r.json()["token"]
        return self.tokens[name]

    def start_server(self, name: str) -> None:
        """Ask the hub to spawn `name`'s server, with the user's own token (returns before it is ready)."""
        r = self.api("POST", f"/users/{name}/server", token=self.tokens[name])
        assert r.status_code in (201, 202), f"spawn of {name} refused: {r.status_code} {r.text}\n{self.tail()}"

    def wait_ready(self, names: list[str], timeout: float = 90) -> None:
        """Wait until every named user's server is up (one cheap admin call a second: the hub is busy too)."""
        deadline = time.monotonic() + timeout
        waiting = set(names)
        while waiting and time.monotonic() < deadline:
            time.sleep(1)
            users = self.api("GET", "/users").json()
            waiting -= {u["name"] for u in users if ((u.get("servers") or {}).get("") or {}).get("ready")}
        assert not waiting, f"servers of {sorted(waiting)} not ready after {timeout:.0f} s\n{self.tail()}"

    def user(self, method: str, name: str, path: str, **kw: Any) -> requests.Response:
        """A call to `name`'s own server through the hub's proxy, with that user's token."""
        headers = {"Authorization": f"token {self.tokens[name]}"}
        return requests.request(method, f"{self.url}/user/{name}{path}", headers=headers, timeout=120, **kw)

    def user_json(self, method: str, name: str, path: str, **kw: Any) -> Any:
        r = self.user(method, name, path, **kw)
        assert r.status_code == 200, f"{method} /user/{name}{path}: {r.status_code} {r.text[:500]}\n{self.tail()}"
        return r.json()

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "hub log (last lines):\n" + "\n".join(lines[-n:])


def marked_processes(mark: str) -> list[int]:
    """Ids of live processes whose environment carries this run's marker (hub, proxy, servers, kernels)."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _stop(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@contextmanager
def running_hub(tmp: Path, env: dict[str, str], start_timeout: float = 60) -> Iterator[Hub]:
    """Start the hub (deploy config + test settings) and yield it; stop it and every process it started.

    `env` adds the deploy config's settings (ROADMAP_HUB_*). Leftover processes after a clean shutdown
    fail the test (after being ended by id), so a hub that leaks servers cannot pass unnoticed."""
    state, homes = tmp / "hub-state", tmp / "home"
    state.mkdir(parents=True)
    homes.mkdir(parents=True)
    port, hub_port, proxy_api_port = free_ports(3)
    mark, token = uuid.uuid4().hex, uuid.uuid4().hex
    singleuser = str(Path(sys.executable).with_name("jupyterhub-singleuser"))
    args = ["--allow-root"] if os.geteuid() == 0 else []
    config = state / "jupyterhub_config.py"
    config.write_text(TEST_CONFIG.format(
        deploy=str(DEPLOY_CONFIG), homes=str(homes), singleuser=singleuser, args=args, mark_var=MARK_VAR,
        mark=mark, port=port, hub_port=hub_port, proxy_api_port=proxy_api_port, state=str(state),
        token=token), encoding="utf-8")
    log = state / "hub.log"
    full_env = {**os.environ, **env, MARK_VAR: mark}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=state,
                                env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    hub = Hub(url=f"http://127.0.0.1:{port}", admin_token=token, mark=mark, log=log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            assert proc.poll() is None, f"jupyterhub exited with {proc.returncode}\n{hub.tail()}"
            try:
                if requests.get(f"{hub.url}/hub/api/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"the hub did not answer within {start_timeout:.0f} s\n{hub.tail()}"
            time.sleep(0.3)
        yield hub
    finally:
        # A clean shutdown first: the hub stops every user's server and its proxy (cleanup_* defaults).
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 10
        while marked_processes(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = marked_processes(mark)
        if left:
            _stop(left, signal.SIGKILL)
            raise AssertionError(f"processes left running after the hub stopped (ended now): {left}\n{hub.tail()}")


def notebook_cells_json(model: dict[str, Any]) -> dict[str, Any]:
    """The notebook in a contents-API model, as plain JSON (for editing and PUTting back)."""
    return json.loads(json.dumps(model["content"]))
