"""The README's two commands are the ones CI runs, and the main job does what the README says."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_them():
    commands = readme_commands()
    assert len(commands) == 2, commands
    install_and_run, test = commands
    steps = [s.strip() for s in install_and_run.split("&&")]
    assert steps[-1] == ".venv/bin/formers train quickstart"
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    for step in steps[:-1]:  # the install, step by step, exactly as the README says
        assert step in ci, (step, ci)
    assert ci[-1] == test.strip()  # and the README's test command last


def test_quickstart_command_trains_prints_bleu_and_saves_a_usable_checkpoint(tmp_path):
    """Runs the README's main job exactly (``formers train quickstart``) and then its translate example."""
    formers_bin = Path(sys.executable).parent / "formers"
    main_job = readme_commands()[0].split("&&")[-1].split()
    assert main_job[1:] == ["train", "quickstart"]
    done = subprocess.run([str(formers_bin), *main_job[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r"final: final\s+sacreBLEU\s+([\d.]+)", done.stdout)
    assert match, done.stdout
    assert float(match.group(1)) > 3.0  # it learns: an untrained model scores ~0
    assert (tmp_path / "runs" / "quickstart" / "checkpoints" / "latest").is_file()
    example = re.search(r"\(`\.venv/bin/formers (translate [^`]+)`\)", (REPO / "README.md").read_text()).group(1)
    out = subprocess.run([str(formers_bin), *shlex.split(example)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
