"""`sad_eval/WebShop-v0`: a text client of the WebShop server.

Observations (`obs_format=`): `full` (ours, the default: every line of the page, chosen options
as `[[x]]`), `react` (ReAct's WebShop client text) or `simple` (the original WebAgentTextEnv's
`[SEP]`-joined text); docs/webshop.md says why `full` is the default.

Actions: `search[query]` (on the search page) and `click[label]` (a bracketed item of the
current observation). An action that does not apply returns an error observation and leaves
the page as it was. Buying (`click[Buy Now]`) ends the episode with the server's reward;
`success` = reward == 1.0. Episodes are capped at 15 steps (ReAct's WebShop budget).

Tasks are the server's synthetic goals `fixed_N` (docs/webshop.md): split `test` = fixed_0..
fixed_499 (WebShop's and ReAct's test range), `train` = fixed_500..fixed_6909. Each reset opens
the server session `<digest>_fixed_N`, the digest derived from task, seed and sample index (the
harness passes `options={"task_id", "sample"}`), so the jobs of a run have distinct sessions and two
identical runs write identical JSONL (a random part made `meta.session_id` differ run to run).

Without `server_url` the env starts the bundled server on a free loopback port (one per data
root, shared by all envs of the process, stopped when the last one closes).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from sad_eval.envs.base import EnvError, TextEnv
from sad_eval.envs.webshop.html_text import Page, parse_page, render
from sad_eval.envs.webshop.obs_formats import react_text, simple_text
from sad_eval.errors import SadEvalError

MAX_STEPS = 15
TEST_SIZE = 500
SPLITS = ("train", "test")
# full: ours (every line, chosen options as [[x]], explicit invalid-action messages; the default);
# react: ReAct's WebShop client text; simple: the original WebAgentTextEnv's [SEP]-joined text
OBS_FORMATS = ("full", "react", "simple")
_ACTION = re.compile(r"^\s*(search|click|think)\s*\[(.*)\]\s*$", re.I | re.S)


def _n_goals(data_root: Path | None) -> int:
    from sad_eval.envs.webshop.goals import load_goals

    return len(load_goals(data_root))


def list_tasks(split: str = "test", data_root: Path | None = None) -> list[str]:
    """Task ids of a split, in goal order: `fixed_0`, `fixed_1`, ..."""
    n = _n_goals(data_root)
    if split == "test":
        r = range(0, min(TEST_SIZE, n))
    elif split == "train":
        r = range(TEST_SIZE, n)
    else:
        raise SadEvalError(f"unknown WebShop split {split!r}; choose one of {', '.join(SPLITS)}")
    return [f"fixed_{i}" for i in r]


def goal_index(task_id: str) -> int:
    m = re.fullmatch(r"fixed_(\d+)", task_id.strip())
    if not m:
        raise SadEvalError(f"bad WebShop task id {task_id!r}: expected fixed_<goal number>")
    return int(m.group(1))


def session_id_for(task_id: str, seed: int | None, sample: int = 0) -> str:
    """A server session id that is a function of the job: `<16 hex>_fixed_N` (the server pins the
    goal by the `fixed_N` tail, as the original does)."""
    digest = hashlib.sha256(f"{task_id}|{seed}|{sample}".encode()).hexdigest()[:16]
    return f"{digest}_{task_id}"


# ------------------------------------------------------------------ the bundled server process

TEMP_PREFIX = "sad-eval-webshop-"


def _sweep_stale_dirs(max_age_s: float = 3600.0) -> None:
    """Remove server folders left by processes that were killed (a clean stop removes its own):
    those whose server pid is gone, or that never got a port file and are old."""
    import os
    import shutil

    for d in Path(tempfile.gettempdir()).glob(TEMP_PREFIX + "*"):
        try:
            port_file = d / "port.json"
            if port_file.is_file():
                pid = int(json.loads(port_file.read_text()).get("pid", 0))
                try:
                    os.kill(pid, 0)
                    continue  # still serving
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue  # someone else's live process
            elif time.time() - d.stat().st_mtime < max_age_s:
                continue  # maybe starting right now
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue


class _Server:
    def __init__(self, data_root: Path | None, start_timeout_s: float):
        _sweep_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        self.log_path = self.dir / "server.log"
        port_file = self.dir / "port.json"
        cmd = [sys.executable, "-m", "sad_eval.envs.webshop.server", "--host", "127.0.0.1", "--port", "0",
               "--port-file", str(port_file), "--exit-with-parent"]
        if data_root is not None:
            cmd += ["--data-root", str(data_root)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.refs = 0
        deadline = time.monotonic() + start_timeout_s
        while not port_file.exists():
            if self.proc.poll() is not None:
                tail = self._tail()  # before stop() removes the folder with the log
                self.stop()
                raise EnvError(f"the WebShop server exited with code {self.proc.returncode} while starting: {tail}")
            if time.monotonic() > deadline:
                tail = self._tail()
                self.stop()
                raise EnvError(f"the WebShop server did not start within {start_timeout_s:.0f} s: {tail}")
            time.sleep(0.05)
        self.url = json.loads(port_file.read_text())["url"]

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)  # its log and port file: nothing to keep


_SERVERS: dict[str, _Server] = {}
_SERVERS_LOCK = threading.Lock()


def _acquire(data_root: Path | None, start_timeout_s: float) -> _Server:
    key = str(Path(data_root).resolve()) if data_root else ""
    with _SERVERS_LOCK:
        srv = _SERVERS.get(key)
        if srv is None or srv.proc.poll() is not None:
            srv = _SERVERS[key] = _Server(data_root, start_timeout_s)
        srv.refs += 1
        return srv


def _release(srv: _Server) -> None:
    with _SERVERS_LOCK:
        srv.refs -= 1
        if srv.refs <= 0:
            srv.stop()
            for k, v in list(_SERVERS.items()):
                if v is srv:
                    del _SERVERS[k]


@atexit.register
def _stop_all() -> None:
    with _SERVERS_LOCK:
        for srv in _SERVERS.values():
            srv.stop()
        _SERVERS.clear()


# ------------------------------------------------------------------ the env

class WebShopEnv(TextEnv):
    """The WebShop client (contract: `envs.base`); see the module docstring. With `privileged=True`
    `info["privileged"]` holds the goal (attributes, options, price, product): the oracle does not
    ask for it (it reads the pages), it is there for analysis."""

    env_name = "WebShop"  # in messages

    # start_timeout_s: the bundled server loads the catalogue and builds its index first (seconds alone;
    # past 60 s measured on a 2-core machine with ~10 runnable processes)
    def __init__(self, split: str = "test", data_root: Path | str | None = None, max_steps: int = MAX_STEPS,
                 server_url: str | None = None, privileged: bool = False, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.5, start_timeout_s: float = 300.0,
                 obs_format: str = "full"):
        if obs_format not in OBS_FORMATS:
            raise SadEvalError(f"unknown WebShop obs_format {obs_format!r}; choose one of {', '.join(OBS_FORMATS)}")
        self.obs_format = obs_format
        self.data_root = Path(data_root) if data_root else None
        self.max_steps = max_steps
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._init_text_env(split, list_tasks(split, self.data_root), privileged)
        self._n_goals = _n_goals(self.data_root)
        self._server: _Server | None = None
        if server_url is None:
            self._server = _acquire(self.data_root, start_timeout_s)
            server_url = self._server.url
        self.base = server_url.rstrip("/")
        self.http = requests.Session()
        self._page: Page | None = None
        self._html = ""
        self._seed: int | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.task_id, self.session_id, self.url = "", "", ""
        self.steps, self.done = 0, False
        self._privileged: dict[str, Any] | None = None
        self._meta: dict[str, Any] = {}

    # ---- HTTP with retries: connection errors and 5xx are retried, 4xx is a contract error
    def _request(self, method: str, url: str, data: dict | None = None) -> requests.Response:
        last: str = ""
        for attempt in range(self.retries + 1):
            try:
                r = self.http.request(method, url, data=data, timeout=(min(5.0, self.timeout_s), self.timeout_s))
            except (requests.ConnectionError, requests.Timeout) as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code < 400:
                    return r
                if r.status_code < 500:
                    raise EnvError(f"WebShop server {self.base} answered {r.status_code} for {url[len(self.base):][:120]}: "
                                   f"{r.text.strip()[:200]}")
                last = f"HTTP {r.status_code}"
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2 ** attempt)
        raise EnvError(f"WebShop server at {self.base} is unreachable after {self.retries + 1} attempts "
                       f"(last error: {last[:300]})")

    def _load(self, url: str, method: str = "GET", data: dict | None = None) -> Page:
        r = self._request(method, url, data)
        self.url, self._html = r.url, r.text
        self._page = parse_page(r.text, r.url)
        return self._page

    def _observe(self) -> str:
        """The current page in the chosen format."""
        page = self._page or Page()
        if self.obs_format == "react":
            return react_text(self._html, search_page=page.search_action is not None)
        if self.obs_format == "simple":
            return simple_text(self._html)
        return render(page)

    def _invalid(self, message: str) -> tuple[str, float, bool, dict[str, Any]]:
        """ReAct's loop answered `Invalid action!`; WebAgentTextEnv left the page (and its text) as
        it was; ours explains."""
        text = {"react": "Invalid action!", "simple": self._observe()}.get(self.obs_format, message)
        return text, 0.0, False, {"invalid_action": True, "rejected": True}

    def _page_kind(self) -> str:
        path = self.url[len(self.base):]
        for prefix, kind in (("/search_results/", "results"), ("/item_sub_page/", "sub"), ("/item_page/", "item"),
                             ("/done/", "done")):
            if path.startswith(prefix):
                return kind
        return "search"

    def _info(self, **extra: Any) -> dict[str, Any]:
        page = self._page or Page()
        info: dict[str, Any] = {
            "task_id": self.task_id,
            "instruction": self._instruction,
            "url": self.url,
            "page": self._page_kind(),
            "has_search_bar": page.search_action is not None,
            "clickables": [c.label for c in page.clickables],
            "selected_options": {c.group: c.label for c in page.clickables if c.kind == "option" and c.selected},
            "meta": {"goal_index": goal_index(self.task_id), "session_id": self.session_id, "steps": self.steps,
                     **self._meta},
        }
        if self._privileged is not None:
            info["privileged"] = self._privileged
        info.update(extra)
        return info

    # ---- the contract (`TextEnv`): task selection and reset/step order live in the base
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._seed = seed  # part of the session id
        return super().reset(seed=seed, options=options)

    def _reset_task(self, task_id: str, options: dict[str, Any]):
        self._reset_state()
        self.task_id = task_id
        self.session_id = session_id_for(task_id, self._seed, options.get("sample", 0))
        page = self._load(f"{self.base}/{self.session_id}")
        self._instruction = page.instruction
        if self.privileged:
            self._privileged = self._goal_facts()
        return self._observe(), self._info()

    def _goal_facts(self) -> dict[str, Any]:
        """The oracle's view of the goal, read from the goal data (the same deterministic goals
        the server builds); checked against the instruction the server shows."""
        from sad_eval.envs.webshop.catalog import load_catalog
        from sad_eval.envs.webshop.goals import load_goals

        goal = dict(load_goals(self.data_root).goals[goal_index(self.task_id)])
        if " ".join(goal["instruction_text"].split()) != self._instruction:
            raise EnvError(f"the server's goal for {self.task_id} differs from the local goal data "
                           f"(server: {self._instruction[:80]!r}); is it serving another catalogue?")
        product = load_catalog(self.data_root).by_asin[goal["asin"]]
        goal["price"] = load_catalog(self.data_root).prices[goal["asin"]]
        goal["price_text"] = product["Price"]
        goal["title"] = product["Title"]
        return goal

    def _step_task(self, action: str):
        self.steps += 1
        obs, reward, terminated, extra = self._act(action)
        truncated = not terminated and self.steps >= self.max_steps
        if terminated or truncated:
            self.done = True
            extra.setdefault("success", False)
            extra.setdefault("score", 0.0)
        return obs, reward, terminated, truncated, self._info(**extra)

    def _act(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        page = self._page or Page()
        m = _ACTION.match(action or "")
        if not m or (m.group(1).lower() == "think" and self.obs_format != "react"):
            return self._invalid("Invalid action: use search[your query] on the search page or "
                                 "click[an item in brackets].")
        verb, arg = m.group(1).lower(), m.group(2).strip()
        if verb == "think":  # ReAct's client answers a thought without touching the page
            return "OK.", 0.0, False, {}
        if verb == "search":
            if page.search_action is None:
                return self._invalid("Invalid action: search is only possible on the search page; "
                                     "click [Back to Search] first.")
            if not arg.split():
                return self._invalid("Invalid action: the search query is empty.")
            self._load(page.search_action, "POST", {"search_query": arg})
            return self._observe(), 0.0, False, {}
        if arg.casefold() == "search" and page.search_action is not None:
            return self._invalid("Invalid action: type your query with search[...].")
        target = page.find(arg)
        if target is None:
            labels = ", ".join(f"[{c.label}]" for c in page.clickables) or "nothing"
            return self._invalid(f"Invalid action: [{arg}] is not on this page. You can click: {labels}.")
        page = self._load(target.url, "GET")
        if page.reward is not None:
            parts = self.url[len(self.base):].split("/")  # /done/<sid>/<asin>/<options>
            self._meta["purchased_asin"] = parts[3] if len(parts) > 3 else ""
            return (self._observe(), float(page.reward), True,
                    {"success": page.reward >= 1.0 - 1e-9, "score": float(page.reward)})
        if target.kind == "option" and self.obs_format == "react":
            return f"You have clicked {target.label}.", 0.0, False, {}
        return self._observe(), 0.0, False, {}

    def close(self) -> None:
        self.http.close()
        if self._server is not None:
            _release(self._server)
            self._server = None
        super().close()
