"""The documentation says what the code does: every command in README.md and docs/*.md is
parsed by the program it names (options that exist, values of the right type, files that
exist), every program's --help runs, and the parameter tables, figures and error exits the
docs quote are checked against the code. Nothing here trains or replays: commands stop
right after their argument parsing."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# our programs -> "module:function" (setup.py's console scripts, but the ROS node) or a bench script
CONSOLE_SCRIPTS = dict(re.findall(r'"(panoptic-[\w-]+) = ([\w.]+:\w+)"', (ROOT / "setup.py").read_text()))
PROGRAMS = {
    **CONSOLE_SCRIPTS,
    **{f"bench/{p.name}": str(p) for p in sorted((ROOT / "bench").glob("*.py"))},
    "scripts/mutation.py": str(ROOT / "scripts" / "mutation.py"),
}
# Programs of other projects the docs show; their options are theirs. panoptic_node takes
# ROS arguments only (tested by test/ros/test_console.py).
EXTERNAL = {"make", "cd", "pip", "colcon", "ros2", "rosdep", "csCreatePanopticImgs", "tensorboard", "source", "curl", "mkdir",
            "panoptic_node", ".venv/bin/python"}
# Synopsis placeholders in the docs -> a value of the right type
PLACEHOLDERS = {"N": "2", "CKPT": "weights/panonet_synthstreet"}


def code_blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a markdown file."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.M | re.S)


def shell_commands() -> list[tuple[str, str, list[str]]]:
    """(doc file, program, arguments) of every command line in the docs' bash blocks."""
    found = []
    for doc in DOCS:
        for block in code_blocks(doc, "bash"):
            pending = ""
            for line in block.replace("\\\n", " ").splitlines():
                pending += line if not pending else "\n" + line
                try:   # a quoted argument may span lines (python -c '...')
                    words = shlex.split(pending.split("  #")[0].replace("[", " ").replace("]", " "))
                except ValueError:
                    continue
                pending = ""
                if words and not words[0].startswith("#"):
                    found.append((doc.name, *_program(words)))
    return found


def _program(words: list[str]) -> tuple[str, list[str]]:
    """The program a command line runs and its arguments, through the usual launchers."""
    if words[0] == ".venv/bin/python" and words[1].startswith(("bench/", "scripts/")):
        return words[1], words[2:]
    if words[0] == "torchrun":  # torchrun's own options, then -m our module
        module = words.index("-m")
        return _program_of_module(words[module + 1]), words[module + 2:]
    return words[0], words[1:]


def _program_of_module(module: str) -> str:
    return next(name for name, target in PROGRAMS.items() if target.split(":")[0] == module)


COMMANDS = shell_commands()
OURS = [(doc, program, args) for doc, program, args in COMMANDS if program in PROGRAMS]


class Parsed(Exception):
    """Raised right after a program has parsed its arguments: the command stops there."""


def run_program(program: str, args: list[str]) -> int | None:
    target = PROGRAMS[program]
    if program.startswith(("bench/", "scripts/")):
        saved, environment = sys.argv, dict(os.environ)   # a script may set variables at import
        sys.argv = [target, *args]
        try:
            runpy.run_path(target, run_name="__main__")
        finally:
            sys.argv = saved
            os.environ.clear()
            os.environ.update(environment)
        return 0
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)(args)


def test_the_docs_show_commands_of_every_kind():
    programs = {program for _, program, _ in COMMANDS}
    assert {"panoptic-train", "panoptic-replay", "panoptic-eval", "panoptic-synth", "bench/meanshift.py"} <= programs
    unknown = programs - set(PROGRAMS) - EXTERNAL - {"torchrun"}
    assert not unknown, f"commands of unknown programs in the docs: {unknown}"


@pytest.mark.parametrize("program", sorted({p for _, p, _ in OURS}))
def test_help_runs_and_lists_every_option_the_docs_use(program, capsys):
    with pytest.raises(SystemExit) as done:
        run_program(program, ["--help"])
    assert done.value.code in (0, None)
    text = capsys.readouterr().out
    assert text.startswith("usage:")
    used = {w.split("=")[0] for _, p, args in OURS if p == program for w in args if w.startswith("--")}
    missing = sorted(o for o in used if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text))
    assert not missing, f"{program} --help does not know {missing}"


@pytest.mark.parametrize("doc, program, args", OURS, ids=[f"{d}:{p} {' '.join(a)}"[:90] for d, p, a in OURS])
def test_every_documented_command_parses(doc, program, args, monkeypatch):
    args = [PLACEHOLDERS.get(a, a) for a in args]
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **kw):
        raise Parsed(parse(self, *a, **kw))   # argparse exits 2 on a bad option or value

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(Parsed):
        run_program(program, args)


def test_files_the_commands_name_exist():
    # (files that a command creates, e.g. the mkdir of the backbone folder, are not named)
    named = [w for _, program, args in COMMANDS if program not in ("mkdir", "curl") for w in args
             if re.match(r"(training/configs|config|weights)/", w) or w.startswith("bench/")]
    assert named, "no repository files named in the docs' commands?"
    for word in named:
        path = ROOT / word
        assert path.exists() or path.with_suffix(".json").exists(), word


# Options of other programs that the prose mentions, and our options written in a form
# the help cannot show (the --set of several CLIs as KEY=VALUE)
FOREIGN_OPTIONS = {"--ros-args", "--params-file", "--show-args", "--standalone", "--nproc_per_node", "--nnodes",
                   "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id", "--packages-select", "--from-paths",
                   "--ignore-src", "--dataset-folder", "--output-folder", "--set-names", "--logdir", "--clock", "--base-paths",
                   "--headless", "--no-deps"}


def test_options_mentioned_in_the_prose_exist(capsys):
    known = set(FOREIGN_OPTIONS)
    for program in PROGRAMS:
        with pytest.raises(SystemExit):
            run_program(program, ["--help"])
        known |= set(re.findall(r"(?<![\w-])--[a-z][\w-]*", capsys.readouterr().out))
    for doc in DOCS:
        text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)   # prose only
        mentioned = {m for code in re.findall(r"`([^`]+)`", text)
                     for m in re.findall(r"(?<![\w-])--[a-z][\w-]*", code)}
        assert not mentioned - known, f"{doc.name}: unknown options {sorted(mentioned - known)}"


# ---- parameter tables --------------------------------------------------------------


def _table_rows(doc: str, header: str) -> list[list[str]]:
    """Rows (cells) of the markdown table whose header row starts with ``header``."""
    lines = (ROOT / doc).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    """`a.b`, `.c` -> a.b, a.c"""
    names = re.findall(r"`([^`]+)`", cell)
    prefix = names[0].rsplit(".", 1)[0]
    return [prefix + n if n.startswith(".") else n for n in names]


def _doc_value(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    if isinstance(value, (list, tuple)):
        return f"`[{', '.join(map(str, value))}]`"
    return "unset" if value is None else f"`{value}`"


def test_the_node_parameter_table_is_the_declared_parameters():
    from panoptic_ros.ros.params import NODE_PARAMETERS, all_specs

    specs = {s.name: s for s in all_specs()}
    documented = set()
    for row in _table_rows("docs/node.md", "| parameter | default | kind |"):
        for name in _names(row[0]):
            if name.endswith(".*"):
                assert any(n.startswith(name[:-1]) for n in specs), name
                documented |= {n for n in specs if n.startswith(name[:-1])}
                continue
            spec = specs[name]
            kind = "runtime" if spec.runtime else "start-up" if spec.read_only else "configure"
            assert (row[1], row[2]) == (_doc_value(spec.default), kind), name
            documented.add(name)
    assert {s.name for s in NODE_PARAMETERS} <= documented


def test_the_launch_argument_table_is_the_launch_arguments():
    from panoptic_ros.launch_config import LAUNCH_ARGUMENTS

    rows = _table_rows("docs/node.md", "| argument | default |")
    documented = {_names(r[0])[0]: r[1] for r in rows}
    assert documented == {a.name: ("empty" if a.default == "" else f"`{a.default}`") for a in LAUNCH_ARGUMENTS}


# ---- figures -----------------------------------------------------------------------


def test_readme_weights_table_quotes_the_manifests():
    text = (ROOT / "README.md").read_text()
    for manifest_path in sorted((ROOT / "weights").glob("*.manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        name = manifest_path.name.removesuffix(".manifest.json")
        row = next(line for line in text.splitlines() if line.strip().startswith(f"| `{name}`"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        v = manifest["validation"]
        expected = [f"{100 * x:.1f}" for x in (v["All"]["pq"], v["Things"]["pq"], v["Stuff"]["pq"], v["miou"])]
        assert cells[1:5] == expected, name
        assert f"{manifest['train_seconds']} s" in text, f"{name}: last-stage train_seconds not quoted"


def test_parameter_counts_quoted_in_models_md():
    import yaml

    from panoptic_ros.kinds import build_model, model_config_from_dict

    blocks = "".join(code_blocks(ROOT / "docs" / "models.md", "yaml")).replace(",\n ", ", ")
    presets = re.findall(r"^(\{.*?\})\s+#.*?([\d.]+) M", blocks, flags=re.M)
    assert len(presets) == 6, blocks
    for preset, quoted in presets:
        model = build_model(model_config_from_dict(yaml.safe_load(preset)))
        count = sum(p.numel() for p in model.parameters()) / 1e6
        assert f"{count:.{len(quoted.split('.')[1])}f}" == quoted, (preset, count)


# ---- error exits -------------------------------------------------------------------


@pytest.mark.parametrize("program, args, code, says", [
    # docs/evaluation.md: bad input -> one line naming the file, exit 2
    ("panoptic-eval", ["--gt-json", "missing/gt.json", "--gt-folder", "g", "--pred-json", "p.json",
                       "--pred-folder", "p"], 2, "missing/gt.json"),
    # docs/training.md: bad input -> one line naming the file or key, exit 2
    ("panoptic-evaluate", ["--checkpoint", "missing/model", "--dataset", "synthstreet"], 2, "missing/model"),
    ("panoptic-export", ["--checkpoint", "missing/model", "--out", "m.onnx"], 2, "missing/model"),
    ("panoptic-train", ["--config", "missing.yaml"], 2, "missing.yaml"),
    # docs/replay.md: unusable options, bag, model or node -> exit 1
    ("panoptic-replay", ["missing_bag", "--model", "ciae", "--offline"], 1, "missing_bag"),
])
def test_documented_error_exits(program, args, code, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_program(program, args) == code
    err = capsys.readouterr().err.strip()
    assert says in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 or program == "panoptic-replay"


def test_links_between_docs_point_at_existing_headings():
    def anchor(heading: str) -> str:  # GitHub's rule: lower case, punctuation dropped, spaces -> '-'
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    for doc in DOCS:
        for target, fragment in re.findall(r"\]\(([\w./-]*\.md)?#([\w-]+)\)", doc.read_text()):
            path = (doc.parent / target) if target else doc
            headings = {anchor(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), flags=re.M)}
            assert fragment in headings, f"{doc.name}: link to {target}#{fragment}"
