"""Driving a window from short commands: start it detached, wait and collect, stop it, size the carry.

A device call is limited in time (10 minutes) and in what comes back (files under ``$OUT``: at
most 8, 16 MiB each, 64 MiB together, two folders deep). So the training runs detached from the
call that starts it (a new session, output to ``OUT/window.log``), and short calls poll it and
copy the results into ``$OUT`` again and again, so that even a call cut off by its time limit
returns the latest checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sirst.engine.window import read_status

MIB = 1024 * 1024
FILE_LIMIT = 16 * MIB  # what one file returned from the device may weigh
LOG_TAIL = 1 * MIB


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, finished but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.is_file():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def window_pid(out: str | os.PathLike) -> int | None:
    path = Path(out) / "window.pid"
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def start_detached(out: str | os.PathLike, train_args: Sequence[str], settle_s: float = 3.0) -> int:
    """Start ``sirst window train TRAIN_ARGS`` in a new session (it outlives the calling command),
    output appended to ``OUT/window.log``, its pid in ``OUT/window.pid``; returns the pid.

    Raises ``RuntimeError`` with the log's tail if the process ends within ``settle_s`` seconds
    with an error.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    running = window_pid(out)
    if running is not None and pid_alive(running) and read_status(out).get("state") not in ("done", "failed"):
        raise RuntimeError(f"{out}: a window is already running (pid {running}); `sirst window stop {out}` first")
    (out / "status.json").unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The package's own folder first, so the child imports this same tree whatever its working directory.
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log_path = out / "window.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sirst", "window", "train", *train_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    (out / "window.pid").write_text(f"{proc.pid}\n")
    deadline = time.time() + settle_s
    while time.time() < deadline:
        code = proc.poll()
        if code is not None and code != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the window stopped at once (exit code {code}); {log_path} ends:\n{tail}")
        if code == 0:
            break
        time.sleep(0.1)
    return proc.pid


def check_window_inputs(plan: str | os.PathLike, pack: str | os.PathLike, device: str = "cuda",
                        resume_from: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError``/``FileNotFoundError`` before a window starts: a device that is not there, a plan
    whose runs need sources the pack lacks, a missing ``resume_from`` folder."""
    import torch

    from sirst.data.pack import read_manifest
    from sirst.engine.window import SYNTH, load_plan

    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:i], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here (use --device cpu to try it on a CPU)")
    available = {s["name"] for s in read_manifest(pack)["sources"]}
    for r in load_plan(plan).runs:
        missing = [n for n in [*r.train, *r.val_extra] if n != SYNTH and n not in available]
        if missing:
            raise ValueError(f"{pack}: run {r.name!r} needs sources {missing}; the pack holds {sorted(available)}")
    if resume_from and not Path(resume_from).is_dir():
        raise FileNotFoundError(f"{resume_from}: --resume-from folder not found")


def start_window(out: str | os.PathLike, plan: str | os.PathLike, pack: str | os.PathLike, deadline: float,
                 device: str = "cuda", resume_from: str | os.PathLike | None = None, workers: int | None = None) -> int:
    """Check the inputs (:func:`check_window_inputs`, here rather than in a detached log), then train ``plan``
    on ``pack`` into ``out`` until ``deadline`` (a ``time.time()``) in a detached ``sirst window train``
    (:func:`start_detached`); returns its pid."""
    check_window_inputs(plan, pack, device, resume_from)
    args = ["--plan", str(plan), "--pack", str(pack), "--out", str(out), "--deadline", f"{deadline:.3f}", "--device", device]
    if resume_from:
        args += ["--resume-from", str(resume_from)]
    if workers:
        args += ["--workers", str(workers)]
    return start_detached(out, args)


def train_in_foreground(plan: str | os.PathLike, pack: str | os.PathLike, out: str | os.PathLike, deadline: float,
                        device: str = "cuda", resume_from: str | os.PathLike | None = None,
                        workers: int | None = None) -> dict[str, Any]:
    """What a detached window runs (``sirst window train``): :func:`sirst.engine.window.train_window` in
    this process, which ends its epochs, evaluates and saves on SIGTERM/SIGINT and outlives its terminal
    (SIGHUP ignored). Returns the final status."""
    import threading

    from sirst.engine.window import load_plan, train_window

    # The evaluator thread holds the GIL for up to the switch interval (5 ms by default) at a time;
    # the launch loop needs it for ~0.1 ms per step, so switch more often.
    sys.setswitchinterval(0.0005)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # finish the epoch, evaluate, save, exit
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # outlive the calling command's terminal
    return train_window(load_plan(plan), pack, out, deadline, device=device, resume_dir=resume_from, stop=stop,
                        workers=workers)


def stop_window(out: str | os.PathLike, wait_s: float = 60.0) -> bool:
    """Ask a running window to stop (SIGTERM: each run ends its epoch, evaluates and saves) and wait up
    to ``wait_s`` for it; returns True when it has ended. Signals only the pid in ``OUT/window.pid``."""
    pid = window_pid(out)
    if pid is None or not pid_alive(pid):
        return True
    os.kill(pid, signal.SIGTERM)
    end = time.time() + wait_s
    while time.time() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.5)
    return False


def progress_line(status: dict[str, Any]) -> str:
    """One line of a status: state, time left, total img/s, and per run epoch, img/s, loss, best IoU."""
    if not status:
        return "no status yet"
    parts = [f"{status.get('state')}", f"left {status.get('left_s', float('nan')):.0f}s",
             f"{status.get('img_per_s') or 0:.0f} img/s"]
    for name, r in status.get("runs", {}).items():
        rate = f"{r['img_per_s']:.0f}" if r.get("img_per_s") else "-"
        loss = f"{r['loss']:.4f}" if r.get("loss") is not None else "-"
        best = f"{r['best_iou']:.4f}@{r['best_epoch']}" if r.get("best_epoch") is not None else "-"
        parts.append(f"{name} {r['state']} ep {r['epoch']}/{r['epochs']} {rate} img/s loss {loss} best {best}")
    if status.get("error"):
        parts.append(f"error: {status['error']}")
    return " | ".join(parts)


def _finished(out: Path) -> bool:
    status = read_status(out)
    if status.get("state") in ("done", "failed"):
        return True
    pid = window_pid(out)
    return pid is not None and not pid_alive(pid)


# --------------------------------------------------------------------------------------------------
# Collecting results within the return limits


def _copy_atomic(src: Path, dst: Path, limit: int | None = None) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    if limit is not None and src.stat().st_size > limit:  # a log: keep its end
        with open(src, "rb") as f:
            f.seek(-limit, os.SEEK_END)
            tmp.write_bytes(f.read())
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def collect(
    out: str | os.PathLike,
    dest: str | os.PathLike,
    max_files: int = 7,
    max_bytes: int = 60 * MIB,
    items: Sequence[str] = ("log", "best", "state"),
    runs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Copy a window's results into ``dest`` (flat, names ``window.json``, ``window.log``,
    ``RUN-best.pt``, ``RUN-state.pt``) within ``max_files`` files and ``max_bytes`` bytes.

    Priority: ``window.json`` (status, every run's evaluations, what was left out: always), the log's
    last MiB, every run's best weights, then the states of runs that have epochs left, then those of
    finished runs. What does not fit is listed under ``left_out`` (collect it in another call with
    ``runs``/``items``). The defaults keep one file and 4 MiB spare under the device's limits of 8
    files and 64 MiB, for a copy cut off half-way. Returns the ``window.json`` content.
    """
    out, dest = Path(out), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    status = read_status(out)
    names = runs or sorted(p.name for p in out.iterdir() if (p / "config.yaml").is_file())
    run_status = status.get("runs", {})
    candidates: list[tuple[str, Path, int | None]] = []  # (name in dest, source, byte limit)
    if "log" in items and (out / "window.log").is_file():
        candidates.append(("window.log", out / "window.log", LOG_TAIL))
    if "best" in items:
        candidates += [(f"{n}-best.pt", out / n / "best.pt", None) for n in names]
    if "state" in items:
        def unfinished(n: str) -> bool:
            r = run_status.get(n, {})
            return r.get("state") != "finished" and r.get("epoch", 0) < r.get("epochs", 1)

        ordered = [n for n in names if unfinished(n)] + [n for n in names if not unfinished(n)]
        candidates += [(f"{n}-state.pt", out / n / "state.pt", None) for n in ordered]
    chosen: list[tuple[str, Path, int | None]] = []
    left_out: list[str] = []
    used_files, used_bytes = 1, 64 * 1024  # window.json
    for name, src, limit in candidates:
        if not src.is_file():
            continue
        size = min(src.stat().st_size, limit) if limit else src.stat().st_size
        if size > FILE_LIMIT:
            left_out.append(f"{name} ({size} bytes, over the 16 MiB a file may have)")
        elif used_files + 1 > max_files or used_bytes + size > max_bytes:
            left_out.append(f"{name} ({size} bytes, over this call's {max_files} files / {max_bytes} bytes)")
        else:
            chosen.append((name, src, limit))
            used_files += 1
            used_bytes += size
    ours = {c[0] for c in candidates}
    for stale in dest.iterdir():  # an earlier collect of this call may have chosen differently
        if stale.name in ours and stale.name not in {c[0] for c in chosen}:
            stale.unlink()
    for name, src, limit in chosen:
        _copy_atomic(src, dest / name, limit)
    summary: dict[str, Any] = {
        "status": status,
        "collected": {name: (dest / name).stat().st_size for name, _, _ in chosen},
        "left_out": left_out,
        "evaluations": {},
        "collected_at": time.time(),
    }
    for n in names:
        path = out / n / "metrics.jsonl"
        if path.is_file():
            summary["evaluations"][n] = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    tmp = dest / ".window.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, dest / "window.json")
    return summary


def wait_window(
    out: str | os.PathLike,
    seconds: float,
    collect_to: str | os.PathLike | None = None,
    collect_every: float = 60.0,
    poll_s: float = 5.0,
    print_every: float = 30.0,
    log: Callable[[str], None] | None = None,
    **collect_options: Any,
) -> dict[str, Any]:
    """Follow a window for up to ``seconds``: print its progress every ``print_every`` seconds and,
    with ``collect_to``, collect its results there every ``collect_every`` seconds and once more at
    the end. Returns as soon as the window has finished (or after ``seconds``) with its status."""
    say = log or (lambda msg: print(msg, flush=True))
    out = Path(out)
    poll_s = min(poll_s, print_every, collect_every if collect_to is not None else poll_s)
    start = time.time()
    last_collect = last_print = 0.0
    while True:
        now = time.time()
        done = _finished(out)
        if now - last_print >= print_every or done:
            say(f"[wait {now - start:5.0f}s] {progress_line(read_status(out))}")
            last_print = now
        over = now - start >= seconds
        if collect_to is not None and (done or over or now - last_collect >= collect_every):
            summary = collect(out, collect_to, **collect_options)
            if done or over:
                files = ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in summary["collected"].items())
                say(f"collected into {collect_to}: {files}"
                    + (f"; left out: {'; '.join(summary['left_out'])}" if summary["left_out"] else ""))
            last_collect = now
        if done or over:
            return read_status(out)
        time.sleep(min(poll_s, max(0.05, seconds - (now - start))))


# --------------------------------------------------------------------------------------------------
# What travels to the device


def tree_budget(repo: str | os.PathLike, carry: Sequence[str | os.PathLike] = (),
                limit: int = 64 * MIB) -> dict[str, Any]:
    """Bytes that a device call would send: git's tracked and untracked-not-ignored files of ``repo``
    plus the ``carry`` paths (files or folders), against ``limit``."""
    repo = Path(repo)

    def git_files(*args: str) -> list[str]:
        text = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", *args], capture_output=True, check=True).stdout
        return [p for p in text.decode().split("\0") if p]

    def size_of(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0

    tracked = sum(size_of(repo / p) for p in git_files())
    untracked = sum(size_of(repo / p) for p in git_files("--others", "--exclude-standard"))
    carried = {str(c): size_of(repo / c) for c in carry}
    total = tracked + untracked + sum(carried.values())
    return {"tracked": tracked, "untracked": untracked, "carry": carried, "total": total, "limit": limit,
            "fits": total <= limit, "room": limit - total}
