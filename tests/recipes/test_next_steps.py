"""The end of ``formers train``: where the run went and the commands that use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from formers.recipes.recipe import list_recipes
from formers.recipes.run import NEXT_COMMANDS, TASKS, next_steps


@pytest.mark.parametrize("name", ["quickstart", "gpt-shakespeare-char-cpu", "digits-cpu", "bert-finetune-spam-cpu"])
def test_next_steps_name_the_run_and_a_command_for_it(name):
    recipe = list_recipes()[name]
    text = next_steps(recipe, Path("runs") / "my run")
    lines = text.splitlines()
    assert lines[0].startswith("run: runs/my run (results.json")
    assert lines[1].startswith("next: formers ") and "--checkpoint 'runs/my run'" in lines[1]


def test_every_task_but_token_classification_has_a_next_command():
    assert set(TASKS) - set(NEXT_COMMANDS) == {"token_classification"}
