"""The CLI as a user runs it (subprocesses): help everywhere, one-line errors and exit status 2
on bad input, users and versions round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path):
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_CONFIG": str(tmp_path / "studio.toml"),
        "PYTHONPATH": str(ROOT),
    }

    def run(*args: str, stdin: str = "", extra_env: dict | None = None):
        return subprocess.run(
            [sys.executable, "-m", "backend", *args], cwd=ROOT, input=stdin, text=True,
            capture_output=True, env={**env, **(extra_env or {})}, timeout=300,
        )

    return run


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _command_paths(parser, prefix=()):
    """Every command path of an argparse parser, e.g. ("users", "add")."""
    yield prefix
    subparsers = parser._subparsers
    for action in subparsers._group_actions if subparsers else []:
        for name, sub in action.choices.items():
            yield from _command_paths(sub, (*prefix, name))


def test_every_command_has_help(cli):
    from backend.cli import build_parser

    paths = list(_command_paths(build_parser()))
    assert ("users", "add") in paths and ("worker",) in paths
    for path in paths:
        proc = cli(*path, "--help")
        assert proc.returncode == 0, (path, proc.stderr)
        assert "usage:" in proc.stdout


def test_users_add_list_and_duplicates(cli):
    ok = cli("users", "add", "alice", "--role", "admin", "--password-stdin", stdin="s3cret-pass\n")
    assert ok.returncode == 0, ok.stderr
    assert "created admin 'alice'" in ok.stdout
    listed = cli("users", "list")
    assert "alice" in listed.stdout and "admin" in listed.stdout
    assert "already exists" in _one_line_error(
        cli("users", "add", "alice", "--password-stdin", stdin="another-pass\n")
    )


def test_generated_password_is_printed_once_and_works(cli, tmp_path):
    proc = cli("users", "add", "bob", "--generate")
    password = proc.stdout.strip().splitlines()[-1].removeprefix("password: ")
    assert len(password) >= 12
    from backend.config import Settings
    from backend.runtime import Runtime
    from backend.users import authenticate

    rt = Runtime(Settings(data_dir=tmp_path / "data"))
    assert authenticate(rt, "bob", password).role == "rater"
    assert authenticate(rt, "bob", "wrong-password") is None


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("users", "passwd", "nobody", "--password-stdin"), "whatever-pass\n", "unknown user"),
        (("users", "role", "nobody", "admin"), "", "unknown user"),
        (("users", "add", "x y", "--password-stdin"), "long-enough\n", "user name"),
        (("users", "add", "carol", "--password-stdin"), "short\n", "at least 8"),
        (("users", "add", "carol"), "", "no password"),
        (("jobs", "show", "12345"), "", "no job 12345"),
        (("jobs", "cancel", "12345"), "", "no job 12345"),
        (("versions", "lineage", "ghost"), "", "unknown model version"),
    ],
)
def test_bad_input_gives_one_line_error(cli, args, stdin, message):
    assert message in _one_line_error(cli(*args, stdin=stdin))


def test_bad_config_gives_one_line_error(cli, tmp_path):
    assert "bad config: server.port" in _one_line_error(
        cli("config", "show", extra_env={"STUDIO_SERVER__PORT": "not-a-port"})
    )
    (tmp_path / "studio.toml").write_text('world = "mars"\n')
    assert "bad config: world" in _one_line_error(cli("config", "show"))


def test_config_show_reads_toml_and_env_and_hides_db_password(cli, tmp_path):
    (tmp_path / "studio.toml").write_text('[dpo]\nbeta = 0.25\n[server]\nport = 9000\n')
    proc = cli("config", "show", extra_env={
        "STUDIO_SERVER__PORT": "9100",
        "STUDIO_DATABASE_URL": "postgresql+psycopg://app:hunter2@db.example:5432/studio",
    })
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["dpo"]["beta"] == 0.25  # from the file
    assert shown["server"]["port"] == 9100  # env wins over the file
    assert "hunter2" not in proc.stdout
    assert shown["database_url"] == "postgresql+psycopg://app:***@db.example:5432/studio"


def test_db_upgrade_and_downgrade(cli):
    assert cli("db", "upgrade").returncode == 0
    assert cli("db", "downgrade", "base").returncode == 0
    assert cli("db", "upgrade").returncode == 0


@pytest.mark.parametrize("command", [("config", "show"), ("users", "list"), ("jobs", "list"),
                                     ("versions", "list")])
def test_light_commands_do_not_import_torch(tmp_path, command):
    """Building the parser and running a store or settings command loads neither torch nor
    the models: such a command answers in a moment."""
    probe = ("import sys\nfrom backend.cli import main\n"
             f"code = main({list(command)!r})\n"
             "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'gradio')"
             " if m in sys.modules)\n"
             "print('HEAVY', heavy)\nsys.exit(code)\n")
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "data"),
           "STUDIO_CONFIG": str(tmp_path / "studio.toml"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_set_is_checked_against_the_settings_before_a_round_runs(cli):
    """A misspelt or ill-typed `--set` fails at once with the setting's name, before any job is
    queued or sampling starts."""
    proc = cli("round", "--set", "dpo.bta=0.2", "--no-wait")
    assert "bta" in _one_line_error(proc)
    proc = cli("round", "--set", "learning_rate=fast", "--no-wait")
    assert "learning_rate" in _one_line_error(proc)
    assert cli("jobs", "list").stdout.strip() == ""  # nothing was queued


def test_console_script_is_installed():
    """`make` installs the project (editable), so `studio` runs the same CLI from anywhere."""
    import shutil

    exe = shutil.which("studio", path=str(Path(sys.executable).parent))
    assert exe, "the `studio` console script is not installed in this environment"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60,
                          cwd="/")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: studio"), proc.stderr
