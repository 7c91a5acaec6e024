"""Fork server for the fault-injection tests (tests/test_faults.py).

Importing torch, transformers and uegr costs seconds per process; this server pays it once, then forks one
`uegr` CLI process per request, so a test can kill -9 many training processes cheaply. The server itself
never runs torch ops (so forking is safe). Protocol: one JSON request per stdin line, one JSON reply per
stdout line:
    {"op": "spawn", "argv": [...], "log": path, "hook": name, "arg": value}  -> {"pid": pid}
    {"op": "wait", "pid": pid}                                                -> {"rc": exit code}
Hooks (applied in the child before `uegr.cli.main`) slow a write down or pause inside it, touching
`<marker>` first, so the test's kill lands exactly there.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import traceback
from pathlib import Path


def _pause(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)  # the test kills us here


def hook_slow_checkpoints(arg) -> None:
    """Every checkpoint write takes `arg` seconds longer, half inside the folder write, half before the link."""
    import uegr.trainer as T
    from uegr.runs import Run

    real_save, real_link = T.save_checkpoint, Run._link

    def save(model, tok, folder):
        real_save(model, tok, folder)
        time.sleep(arg / 2)

    def link(self, which, target, link_tmp=None):
        time.sleep(arg / 2)
        real_link(self, which, target, link_tmp)

    T.save_checkpoint, Run._link = save, link


def hook_pause(arg) -> None:
    """Pause (after touching arg['marker']) at arg['phase'] of the first `last` checkpoint at step >= arg['step']."""
    import torch

    import uegr.runs as R

    phase, marker, at = arg["phase"], arg["marker"], arg["step"]
    if phase == "state_half_written":  # trainer_state.pt half written, model.safetensors complete
        real_save = torch.save

        def save(obj, f, *a, **k):
            if str(f).endswith("trainer_state.pt") and obj["step"] >= at:
                buf = io.BytesIO()
                real_save(obj, buf, *a, **k)
                Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
                _pause(marker)
            return real_save(obj, f, *a, **k)

        torch.save = save
    elif phase in ("before_link", "before_drop"):
        name = "_link" if phase == "before_link" else "_drop_unlinked"
        real = getattr(R.Run, name)

        def wrapped(self, which, *a, **k):
            if phase == "before_link" and which == "last" and R._step_of(a[0]) >= at:
                _pause(marker)
            if phase == "before_drop" and which == "last" and self._versions("last") and \
                    R._step_of(self._versions("last")[-1]) >= at and len(self._versions("last")) > 1:
                _pause(marker)
            return real(self, which, *a, **k)

        setattr(R.Run, name, wrapped)
    elif phase == "torn_metrics":  # half of a metrics line written
        real = R.Run.append_metrics

        def append(self, records):
            if any(r.get("kind") == "train" and r.get("step", 0) >= at for r in records):
                line = json.dumps(records[0]) + "\n"
                with self.metrics_path.open("a") as fh:
                    fh.write(line[: len(line) // 2])
                _pause(marker)
            return real(self, records)

        R.Run.append_metrics = append
    elif phase == "status_write":  # inside the atomic write of status.json: a temp file written, not renamed
        real = R.atomic_write_bytes

        def write(path, data):
            if Path(path).name == "status.json" and b'"best_metric"' in data:  # the write after the first eval
                Path(path).with_name(".status.json.partial.tmp").write_bytes(data[: len(data) // 2])
                _pause(marker)
            return real(path, data)

        R.atomic_write_bytes = write
    else:
        raise ValueError(phase)


HOOKS = {"slow_checkpoints": hook_slow_checkpoints, "pause": hook_pause}


def _child(req: dict) -> None:
    rc = 99
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        import torch

        torch.set_num_threads(1)
        import uegr.cli as cli

        cli._STARTED = time.time()
        if req.get("hook"):
            HOOKS[req["hook"]](req.get("arg"))
        rc = cli.main(req["argv"])
    except BaseException:  # noqa: BLE001 - a traceback here is what the tests look for in the log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def main() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import accelerate  # noqa: F401
    import torch  # noqa: F401 - imported once here, shared by every forked child
    import transformers  # noqa: F401
    from transformers import AutoTokenizer, BertForSequenceClassification  # noqa: F401 - lazy modules, warmed

    import uegr.cli  # noqa: F401
    import uegr.trainer  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(req)
            reply = {"pid": pid}
        else:
            _, status = os.waitpid(req["pid"], 0)
            reply = {"rc": os.waitstatus_to_exitcode(status)}
        print(json.dumps(reply), flush=True)


class ForkServer:
    """Client side, used by the tests."""

    def __init__(self, env: dict):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def spawn(self, argv: list[str], log: Path, hook: str | None = None, arg=None) -> int:
        return self._ask({"op": "spawn", "argv": argv, "log": str(log), "hook": hook, "arg": arg})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["rc"]

    def run(self, argv: list[str], log: Path, **kw) -> int:
        return self.wait(self.spawn(argv, log, **kw))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
