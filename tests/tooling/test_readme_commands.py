"""Every command the README tells a user to run works as written (issues 16 and 19).

The README is read the way a user reads it: each line of a ```sh block (comments dropped) and each inline
code span in the prose that starts with a program (`make`, `tt-*`, `tensorboard`, `wandb`, `pip`, `jupyter`,
`source`). Each command runs here, or a cheap equivalent where the real one needs a network, an account or
many minutes:

- `make train`: the `tt-train` line of its recipe (read with `make -n train`, so a changed preset or tracking
  setting is followed), with a few steps. That run stands in for the README's example run
  (`tiny-YYYYMMDD-HHMMSS`), and the files the README's run-folder table lists must be in it.
- `make test` is CI itself; another make target: `make -n <target>` (it exists and its recipe expands).
- `tensorboard --logdir DIR`: served on a free port; DIR's `train/loss` and `val/loss` scalars must be there.
- `wandb sync PATTERN`: the pattern matches one offline run and `wandb sync --help` works (uploading needs an
  account and a network).
- `tt-evaluate`, `tt-generate`, `tt-export`, `tt-config` with arguments: run as written on the stand-in run;
  `tt-train` with arguments: with `--print-config` added (validates everything, trains nothing); a bare
  command name (the commands table): `--help`.
- `pip install ...`: the requirement parses, names torch or this package with extras that setup.py defines,
  from settings.ini's git URL (installing from the network is CI's own install step).
- `jupyter lab DIR`: JupyterLab is installed and DIR holds notebooks.
- `source .venv/bin/activate`: it puts this package's console scripts on the PATH.

A command whose program has no rule fails the test, so no README command goes unchecked. The commands that
`tt-train` prints at the end of the run are checked with the same rules.
"""
from __future__ import annotations

import configparser
import glob
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import BIN, ROOT, corpus_path, stop_process

README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE_RUN = re.compile(r"tiny-\d{8}-\d{6}")  # the README's example run name
PROGRAMS = re.compile(r"^(make|tt-[a-z]+|tensorboard|wandb|pip|jupyter|source|\.venv/bin/\S+)(\s|$)")
FEW_STEPS = ["training.max_steps=20", "training.warmup_steps=2", "training.eval_every=10", "training.log_every=5",
             "training.eval_batches=2", "checkpoint.save_every=10"]


def readme_commands(text: str) -> list[str]:
    "Commands in ```sh blocks (one per line, comments dropped) and inline code spans that start with a program."
    commands = []
    for block in re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [span.strip() for span in re.findall(r"`([^`\n]+)`", prose) if PROGRAMS.match(span.strip())]
    return list(dict.fromkeys(commands))


def end_of_run_commands(stdout: str) -> list[str]:
    "Commands in tt-train's closing lines (`  label: command   (comment)`)."
    found = []
    for line in stdout.splitlines():
        m = re.match(r"^\s+[^:]{1,60}:\s+(.*?)(\s{2,}\(.*\))?\s*$", line)
        if m and PROGRAMS.match(m.group(1)):
            found.append(m.group(1))
    return found


def program(name: str) -> str:
    "A console script of this environment (next to the interpreter), else from PATH."
    exe = BIN / name
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([program(argv[0]), *argv[1:]], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_train_command() -> list[str]:
    "The tt-train command that `make train` runs, as its recipe says."
    dry = subprocess.run(["make", "-n", "train"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = [line for line in dry.stdout.splitlines() if re.search(r"(^|/)tt-train\s", line)]
    assert len(lines) == 1, f"`make -n train` should run tt-train once:\n{dry.stdout}"
    argv = shlex.split(re.sub(r"\$\([^)]*\)", "X", lines[0]))  # the shell's $(date ...) in the run name
    return ["tt-train", *argv[1:]]


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    "What `make train` does, with a few steps: (work folder, run name, tt-train's output)."
    work = tmp_path_factory.mktemp("make-train")
    name = "tiny-20000101-000000"
    argv = [a if not a.startswith("name=") else f"name={name}" for a in make_train_command()]
    corpus_path()  # the run reads $TT_DATA, as `make train` does when it is set
    result = run([*argv, *FEW_STEPS], cwd=work, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, name, result.stdout + result.stderr


class Checker:
    "Runs one README command (or its cheap equivalent) in the stand-in run's work folder; asserts it worked."

    def __init__(self, work: Path, run_name: str):
        self.work, self.run_name = work, run_name

    def __call__(self, command: str) -> None:
        argv = shlex.split(EXAMPLE_RUN.sub(self.run_name, command))
        name = argv[0]
        if name.startswith(".venv/bin/"):  # a path into the environment `make` creates: it must be there
            assert (ROOT / name).is_file(), f"{command!r}: {name} does not exist (the environment holds " \
                                            f"{sorted(p.name for p in (ROOT / '.venv' / 'bin').iterdir())})"
            name = Path(name).name
        rule = getattr(self, "check_" + name.replace("-", "_"), None)
        assert rule is not None, f"no rule checks README command {command!r}: add one to {Path(__file__).name}"
        rule(argv[1:], command)

    def ok(self, argv: list[str], command: str, timeout: float = 300) -> str:
        result = run(argv, self.work, timeout)
        assert result.returncode == 0, f"{command!r} ({argv}) exited {result.returncode}:\n" \
                                       f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        return result.stdout

    def check_make(self, args, command):
        target = args[0] if args else "help"
        if target == "help":
            listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert listed.returncode == 0 and re.search(r"^train\t", listed.stdout, re.M), listed.stdout
            return
        if target in ("train", "test"):
            return  # train: the `train_run` fixture; test: this suite
        dry = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"{command!r}: {dry.stderr.strip()}"

    def check_tensorboard(self, args, command):
        assert args[:1] == ["--logdir"] and len(args) == 2, f"{command!r}: expected `tensorboard --logdir DIR`"
        logdir = self.work / args[1]
        assert logdir.is_dir(), f"{command!r}: {args[1]} does not exist after `make train`"
        assert list(logdir.rglob("events.out.tfevents.*")), f"{command!r}: {args[1]} holds no TensorBoard events"
        port = free_port()
        server = subprocess.Popen([program("tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1",
                                   "--port", str(port)], cwd=self.work, env=env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline, tags = time.monotonic() + 120, {}
            while time.monotonic() < deadline and not tags:
                assert server.poll() is None, f"{command!r}: tensorboard exited with {server.returncode}"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as r:
                        tags = json.loads(r.read())
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    time.sleep(0.5)
        finally:
            stop_process(server, timeout=20)
        served = {tag for run_tags in tags.values() for tag in run_tags}
        assert {"train/loss", "val/loss"} <= served, f"{command!r} serves no train/loss and val/loss: {tags}"

    def check_wandb(self, args, command):
        assert args[:1] == ["sync"] and len(args) == 2, f"{command!r}: expected `wandb sync PATTERN`"
        matches = glob.glob(str(self.work / args[1]))
        assert len(matches) == 1 and Path(matches[0]).is_dir(), f"{command!r} matches {matches} after `make train`"
        assert list(Path(matches[0]).glob("*.wandb")), f"{command!r}: {matches[0]} holds no offline run"
        self.ok(["wandb", "sync", "--help"], command)

    def _tt(self, name, args, command):
        if not args:
            self.ok([name, "--help"], command)
        else:
            self.ok([name, *args], command, timeout=600)

    def check_tt_train(self, args, command):
        self._tt("tt-train", [*args, "--print-config"] if args else [], command)

    def check_tt_evaluate(self, args, command):
        self._tt("tt-evaluate", args, command)

    def check_tt_generate(self, args, command):
        self._tt("tt-generate", args, command)

    def check_tt_export(self, args, command):
        self._tt("tt-export", args, command)

    def check_tt_config(self, args, command):
        self._tt("tt-config", args, command)

    def check_tt_serve(self, args, command):
        assert not args, f"{command!r}: add a rule that starts the server and asks /health"
        self.ok(["tt-serve", "--help"], command)

    def check_pip(self, args, command):
        from packaging.requirements import Requirement

        assert args[:1] == ["install"] and len(args) == 2, f"{command!r}: expected `pip install REQUIREMENT`"
        req = Requirement(args[1])
        if req.name == "torch":
            return
        settings = configparser.ConfigParser()
        settings.read(ROOT / "settings.ini")
        cfg = settings["DEFAULT"]
        assert req.name == cfg["lib_name"], f"{command!r} installs {req.name}, not {cfg['lib_name']}"
        assert req.url == f"git+{cfg['git_url']}".replace("%(user)s", cfg["user"]).replace("%(repo)s", cfg["repo"]), \
            f"{command!r}: the URL is not settings.ini's git_url"
        assert req.extras <= setup_extras(), f"{command!r}: setup.py has no extra(s) {req.extras - setup_extras()}"

    def check_jupyter(self, args, command):
        assert args[:1] == ["lab"] and len(args) == 2, f"{command!r}: expected `jupyter lab DIR`"
        assert list((ROOT / args[1]).glob("*.ipynb")), f"{command!r}: {args[1]} holds no notebooks"
        self.ok(["jupyter", "lab", "--version"], command)

    def check_source(self, args, command):
        script = ROOT / args[0]
        assert script.is_file(), f"{command!r}: {args[0]} does not exist"
        found = subprocess.run(["bash", "-c", f"source {shlex.quote(str(script))} && command -v tt-train"],
                               capture_output=True, text=True, timeout=60)
        assert found.returncode == 0 and found.stdout.strip(), f"{command!r} does not put tt-train on the PATH"


def setup_extras() -> set[str]:
    "The extras setup.py defines (from the metadata it writes)."
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", tmp], cwd=ROOT, check=True,
                       capture_output=True, timeout=120)
        requires = next(Path(tmp).glob("*.egg-info")).joinpath("requires.txt").read_text()
    return set(re.findall(r"^\[(\w+)\]$", requires, re.M))


COMMANDS = readme_commands(README)


def test_readme_commands_are_found():
    "The extraction sees the commands a reader sees (if it found none, the tests below would check nothing)."
    for expected in ("make train", "make test", "make help", "make docs", "tt-train"):
        assert expected in COMMANDS, (expected, COMMANDS)
    assert any(c.startswith("tensorboard --logdir") for c in COMMANDS)
    assert any(c.startswith("pip install") for c in COMMANDS)


def test_run_folder_holds_what_the_readme_lists(train_run):
    "The README's table of what `make train` leaves behind, against the folder it really left."
    work, name, _ = train_run
    table = README.split("## What `make train` leaves behind", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([^`]+)` \|", table, re.M)
    assert "config.yaml" in listed and "loss.png" in listed, listed
    run_dir = work / "runs" / name
    missing = [item for item in listed if not (run_dir / EXAMPLE_RUN.sub(name, item).rstrip("/")).exists()]
    assert not missing, f"the README says `make train` writes {missing}; {run_dir.name} holds " \
                        f"{sorted(p.name for p in run_dir.iterdir())}"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_works(command, train_run):
    work, name, _ = train_run
    Checker(work, name)(command)


@pytest.mark.slow
def test_end_of_run_commands_work(train_run):
    "What tt-train tells the user to run next, at the end of the run, works too."
    work, name, stdout = train_run
    commands = end_of_run_commands(stdout)
    assert any(c.startswith("tt-generate") for c in commands), stdout[-1500:]
    for command in commands:
        Checker(work, name)(command)


@pytest.mark.parametrize("wrong", [
    "make tarin",
    "tt-train --preset tiny trainig.max_steps=10",
    "tt-evaluate --checkpoint runs/nothing-here",
    "tensorboard --logdir runs/latest",
    "wandb sync runs/tiny-20261201-120000/wandb/online-run-*",
    'pip install "tiny_transformer[gpu] @ git+https://github.com/tiny-transformer/tiny_transformer"',
    'pip install "tiny_transformer[all] @ git+https://github.com/someone-else/tiny_transformer"',
    "jupyter lab notebooks/",
    ".venv/bin/tt-trian --help",
    "docker run tiny_transformer",
])
def test_a_wrong_command_fails(wrong, train_run):
    "The checks can fail: each of these README mistakes is caught."
    work, name, _ = train_run
    with pytest.raises(AssertionError):
        Checker(work, name)(wrong)
