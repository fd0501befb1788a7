"""``make mutation``: mutation testing of the pure core with mutmut 3, one module at a time,
each against its own tests only; prints the score per module and every surviving mutant.

    .venv/bin/python scripts/mutation.py [MODULE ...]      # default: every module below
    .venv/bin/python scripts/mutation.py --again MODULE   # re-run the last survivors with today's tests

Why mutmut (3.x) and not cosmic-ray: mutmut imports the code and the tests once, then forks
a child per mutant that runs only the tests that executed the mutated function (a
trampoline picks the mutant at run time), about 1 mutant/s here; cosmic-ray rewrites the
file and starts a new pytest process per mutant, which pays the torch import (seconds)
every time. mutmut wants the package importable from its own copy of the tree, and the
editable install maps ``panoptic_ros.training`` to ``training/``; so each module runs in a
scratch folder (``.mutation/<module>/``) laid out as installed: ``panoptic_ros/`` with
``training/`` inside it, and ``test/``. Not part of ``make test`` (tens of minutes on two
cores); the figures and the equivalent mutants are in docs/testing.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
# module (repository path) -> the tests that specify it
MODULES: dict[str, list[str]] = {
    "panoptic_ros/segments.py": ["test/test_segments.py", "test/test_types.py"],
    "panoptic_ros/types.py": ["test/test_types.py", "test/test_id_properties.py", "test/test_segments.py"],
    "panoptic_ros/checkpoint.py": ["test/training/test_checkpoint_safety.py", "test/training/test_release.py",
                                   "test/training/test_bandwidth_search.py"],
    "panoptic_ros/postprocess/nms.py": ["test/postprocess/test_nms.py"],
    "panoptic_ros/postprocess/meanshift.py": ["test/postprocess/test_meanshift.py"],
    "panoptic_ros/postprocess/panonet.py": ["test/postprocess/test_panonet_postprocess.py"],
    "panoptic_ros/postprocess/ciae.py": ["test/postprocess/test_ciae_postprocess.py"],
    "panoptic_ros/serialized/cdr.py": ["test/serialized/test_cdr.py", "test/serialized/test_serialized_image.py"],
    "panoptic_ros/serialized/image.py": ["test/serialized/test_serialized_image.py", "test/serialized/test_cdr.py",
                                        "test/ros/test_image_messages.py"],
    "panoptic_ros/eval/pq.py": ["test/eval/test_pq.py", "test/eval/test_pq_properties.py"],
    "panoptic_ros/eval/miou.py": ["test/eval/test_miou.py"],
    "panoptic_ros/eval/scores.py": ["test/eval/test_scores.py"],
    "panoptic_ros/eval/coco_format.py": ["test/eval/test_coco_format.py"],
    "panoptic_ros/eval/png_ids.py": ["test/eval/test_png_ids.py"],
    "panoptic_ros/eval/cli.py": ["test/eval/test_eval_cli.py"],
    "training/losses/semantic.py": ["test/training/test_panonet_losses.py"],
    "training/losses/discriminative.py": ["test/training/test_panonet_losses.py"],
    "training/losses/panonet.py": ["test/training/test_panonet_losses.py"],
    "training/losses/fcos.py": ["test/training/test_fcos_losses.py"],
    "training/losses/ciae.py": ["test/training/test_ciae_losses.py"],
}
# mutmut forks a child per mutant from a process that has run the tests once: a torch
# OpenMP thread pool started there hangs in the children (libgomp after fork; seen as
# mutants of the training losses idle at 0 % CPU until mutmut's timeout). One thread each.
MUTMUT_ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KILLED = {1, 3}                 # mutmut: a test failed (3: pytest internal error)
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0}


def installed_path(module: str) -> str:
    """Where ``module`` lies in the installed layout (training/ is panoptic_ros/training/)."""
    return module.replace("training/", "panoptic_ros/training/", 1) if module.startswith("training/") else module


def prepare(module: str, tests: list[str]) -> Path:
    """A scratch tree for one module with a setup.cfg that points mutmut at it."""
    work = workdir(module)
    shutil.rmtree(work, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "panoptic_ros", work / "panoptic_ros", ignore=ignore)
    shutil.copytree(ROOT / "training", work / "panoptic_ros" / "training", ignore=ignore)
    shutil.copytree(ROOT / "test", work / "test", ignore=ignore)
    for name in ("config", "weights"):  # data some tests read next to the package
        (work / name).symlink_to(ROOT / name)
    write_config(work, module, tests)
    return work


def write_config(work: Path, module: str, tests: list[str]) -> None:
    # The whole package is the source tree (mutmut copies it, so nothing is imported from
    # the editable install); only the one module is mutated.
    (work / "setup.cfg").write_text("[mutmut]\n" + "".join(  # lists: one item per continuation line
        f"{key} =\n" + "".join(f"    {item}\n" for item in items) for key, items in (
            ("source_paths", ["panoptic_ros"]),
            ("only_mutate", [installed_path(module)]),
            ("pytest_add_cli_args_test_selection", tests),
            ("pytest_add_cli_args", ["-p", "no:cacheprovider", "-x", "-q"]))))


def workdir(module: str) -> Path:
    return WORK / Path(module).with_suffix("").as_posix().replace("/", ".")


def run(module: str, tests: list[str], *, again: bool = False) -> dict:
    """Mutate ``module`` and run its tests on every mutant; with ``again``, re-run only the
    survivors of the last run against the tests as they are now (after new tests)."""
    work = workdir(module)
    meta = work / "mutants" / f"{installed_path(module)}.meta"
    names = []
    if again:
        if not meta.is_file():
            return {"module": module, "error": "no earlier run to repeat"}
        names = [k for k, c in json.loads(meta.read_text())["exit_code_by_key"].items() if c in SURVIVED]
        for tree in (work / "test", work / "mutants" / "test"):
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(ROOT / "test", tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        write_config(work, module, tests)
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)   # which tests run which code
    else:
        prepare(module, tests)
    log = work / ("mutmut-again.log" if again else "mutmut.log")
    with log.open("w") as out:
        code = subprocess.call([sys.executable, "-m", "mutmut", "run", *names], cwd=work, stdout=out,
                               stderr=subprocess.STDOUT, env=MUTMUT_ENVIRONMENT)
    if code != 0 or not meta.is_file():
        return {"module": module, "error": f"mutmut exited {code}; see {log}"}
    return score(module, json.loads(meta.read_text())["exit_code_by_key"])


def score(module: str, codes: dict[str, int | None]) -> dict:
    killed = sorted(k for k, c in codes.items() if c in KILLED or c in TIMEOUT)
    survived = sorted(k for k, c in codes.items() if c in SURVIVED)
    other = sorted(f"{k} (exit {c})" for k, c in codes.items() if k not in killed and k not in survived)
    tested = len(killed) + len(survived)
    return {"module": module, "mutants": len(codes), "killed": len(killed), "survived": survived, "other": other,
            "score": 100.0 * len(killed) / tested if tested else 0.0}


def report(result: dict) -> str:
    if "error" in result:
        return f"{result['module']}: {result['error']}"
    lines = [f"{result['module']}: {result['score']:.1f} % killed ({result['killed']} of "
             f"{result['killed'] + len(result['survived'])}; {result['mutants']} mutants)"]
    lines += [f"  survived: {name}" for name in result["survived"]]
    lines += [f"  not scored: {name}" for name in result["other"]]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="repository paths of modules (default: all of them)")
    parser.add_argument("--again", action="store_true",
                        help="re-run only the survivors of the last run, against the tests as they are now")
    args = parser.parse_args(argv)
    again, modules = args.again, args.modules
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {', '.join(MODULES)}")
    results = []
    for module in modules or list(MODULES):
        results.append(run(module, MODULES[module], again=again))
        print(report(results[-1]), flush=True)
    (WORK / ("summary-again.json" if again else "summary.json")).write_text(json.dumps(results, indent=1) + "\n")
    print("\nscore per module (mutmut show <name> prints a mutant's diff, run in .mutation/<module>/):")
    for result in results:
        print(f"  {result['module']}: " + (f"{result['score']:.1f} %" if "score" in result else "error"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
