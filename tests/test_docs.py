"""What the README and docs name exists: linked files, repository paths, modules run with ``python -m``,
and every ``--key=value`` a documented recipe command gives is a key of its YAML or a SpeechBrain option."""
import glob
import importlib.util
import os
import re

import pytest

from tests.conftest import ROOT

DOCS = sorted(["README.md", "CHANGELOG.md", *(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / "docs" / "*.md")))])
REPOSITORY_PATH = re.compile(r"(?<![\w/.-])((?:hparams|recipes|benchmarks|tools|hieradist_lobes|docs|tests)/[\w./*<>{}-]*[\w*>}])")
UPSTREAM = re.compile(r"recipes/[A-Z]")  # SpeechBrain's own recipes (recipes/LibriSpeech/...), named as sources
CODE_BLOCK = re.compile(r"```(?:bash|shell)?\n(.*?)```", re.S)


def _text(doc):
    return (ROOT / doc).read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_and_named_path_exists(doc):
    text = _text(doc)
    folder = (ROOT / doc).parent
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if "://" in target or target.startswith("#"):
            continue
        assert (folder / target.split("#")[0]).exists(), f"{doc} links to {target}, which does not exist"
    for path in REPOSITORY_PATH.findall(text):
        if any(mark in path for mark in ("<", "*", "{", "...")) or UPSTREAM.match(path):
            continue
        path = path.rstrip(".")
        assert (ROOT / path).exists() or (ROOT / (path + ".py")).exists(), f"{doc} names {path}, which does not exist"
    for module in re.findall(r"python -m (hieradist_lobes[\w.]*)", text):
        assert importlib.util.find_spec(module) is not None, f"{doc} runs python -m {module}, which does not exist"


def _recipe_commands(text):
    """Each documented ``python recipes/...`` or ``torchrun ... recipes/...`` command, continuation lines joined."""
    for block in CODE_BLOCK.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].split(" # ")[0]
            match = re.search(r"(recipes/\S+\.py)\s+(hparams/\S+\.yaml)(.*)", line)
            if match:
                yield match.group(1), match.group(2), match.group(3).split()


def _check_commands(text, where):
    """Every recipe command of ``text``: its script and YAML exist, and its options are SpeechBrain's or keys
    its YAML chain declares (an undeclared key is an HparamsError naming it). Returns how many."""
    from hieradist_lobes.hparams import parse_arguments, resolve_chain

    commands = list(_recipe_commands(text))
    for script, yaml, options in commands:
        assert (ROOT / script).is_file() and (ROOT / yaml).is_file(), f"{where}: {script} {yaml}"
        options = [option.replace("$DATA", "/corpora/x").replace("$PLM", "/models/x").strip('"')
                   for option in options if option.startswith("--")]
        _, _, overrides = parse_arguments([str(ROOT / yaml), *options])  # SpeechBrain's options are taken here
        resolve_chain(str(ROOT / yaml), overrides)
    return len(commands)


@pytest.mark.parametrize("doc", DOCS)
def test_documented_recipe_commands_give_keys_their_yaml_declares(doc):
    _check_commands(_text(doc), doc)


def test_the_command_check_finds_the_readme_commands_and_refuses_an_undeclared_key():
    from hieradist_lobes.hparams import HparamsError

    assert _check_commands(_text("README.md"), "README.md") >= 10
    with pytest.raises(HparamsError, match="no_such_key"):
        _check_commands("```bash\npython recipes/cif_hieradist/train.py hparams/synth/cif.yaml --no_such_key=1\n```",
                        "a doc")


def test_the_readme_is_the_front_door():
    readme = _text("README.md")
    assert len(readme.splitlines()) <= 250
    assert "issue" not in readme.lower()
    for doc in DOCS:
        assert not re.search(r"\bissues?\b", _text(doc), re.I), f"{doc} speaks of issues"
