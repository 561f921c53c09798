"""The documentation keeps its promises: every command it shows still runs as written, every link resolves.

A command in README.md, CHANGELOG.md or docs/*.md (a line of a shell code block, or an inline `artnet ...` with
flags) must be either a `make` target that CI runs, or parse against the code today:

- `artnet SUB ...` through `artnet.cli.build_parser()`, and a `--config` recipe loads with its `--set` overrides,
  so a renamed flag, recipe or config field fails here rather than in a reader's shell;
- `tfds build ...` through the tfds command's own flag parser, with a config the builder defines;
- `python SCRIPT --flag ...` against the flags the script's argparse declares; `python -c CODE` compiles;
- `make TARGET` names a target of the Makefile, and the commands of the recipes it runs parse as above.

Nothing here trains, builds or downloads: the whole file runs in seconds (most of it importing tfds's parser).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose commands are checked too, though they are not the docs/ pages themselves.
COMMAND_PAGES = [*DOCS, ROOT / "benchmarks" / "README.md", ROOT / "experiments" / "results" / "README.md"]
SCREENSHOT = ROOT / "docs" / "images" / "demo.png"
README_MAX_LINES = 100  # "a README a newcomer reads in three minutes"
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
WRAPPERS = {"srun", "time", "nice", "nohup", "exec"}  # run the command that follows them
BIN_PREFIXES = (".venv/bin/", "$(BIN)/", "$(VENV)/bin/")

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


# === Reading the pages ===


@dataclasses.dataclass(frozen=True)
class Command:
    page: Path
    text: str  # as written (continuations joined)
    argv: tuple[str, ...]  # program first, with env assignments, wrappers and `.venv/bin/` removed
    fenced: bool

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}: {self.text}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    for match in FENCE.finditer(text):
        yield match.group(1).lower(), match.group(2)


def prose(text: str) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", text)


def _shell_lines(block: str) -> Iterator[str]:
    """Logical lines of a shell block: backslash continuations joined, blank lines and comments dropped."""
    pending = ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.strip()


def split_commands(line: str) -> Iterator[list[str]]:
    """Each simple command of a line (split at &&, ||, ; and |), tokens as the shell would see them."""
    tokens = shlex.split(line, comments=True)
    current: list[str] = []
    for token in tokens:
        if token in ("&&", "||", ";", "|"):
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


def normalise(tokens: list[str]) -> tuple[str, ...]:
    """Drop `VAR=value` prefixes and wrappers like `srun`; `.venv/bin/artnet` -> `artnet`."""
    tokens = list(tokens)
    while tokens and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]) or tokens[0] in WRAPPERS):
        tokens.pop(0)
    if tokens:
        for prefix in BIN_PREFIXES:
            if tokens[0].startswith(prefix):
                tokens[0] = tokens[0][len(prefix) :]
        if tokens[0] in ("python3", "$(PYTHON)"):
            tokens[0] = "python"
    return tuple(tokens)


def page_commands(page: Path) -> list[Command]:
    text = page.read_text(encoding="utf-8")
    found = []
    for language, block in fenced_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        for line in _shell_lines(block):
            for tokens in split_commands(line):
                found.append(Command(page, line, normalise(tokens), fenced=True))
    # Inline commands with flags (`artnet train --config ...` in a table); `artnet train ... --set x` elides on purpose.
    for span in INLINE_CODE.findall(prose(text)):
        span = span.strip()
        if "..." in span or "…" in span or " --" not in span:
            continue
        argv = normalise(shlex.split(span))
        if argv and (argv[0] == "artnet" or re.fullmatch(r"(benchmarks|experiments)/\w+\.py", argv[0])):
            if argv[0] != "artnet":
                argv = ("python", *argv)
            found.append(Command(page, span, argv, fenced=False))
    return found


ALL_COMMANDS = [command for page in COMMAND_PAGES if page.is_file() for command in page_commands(page)]


def commands_of(program: str) -> list[Command]:
    return [command for command in ALL_COMMANDS if command.argv and command.argv[0] == program]


def _ids(commands: list[Command]) -> list[str]:
    return [f"{_rel(c.page)}:{' '.join(c.argv)[:70]}" for c in commands]


# === The Makefile and CI ===


def makefile() -> tuple[dict[str, str], dict[str, tuple[list[str], list[str]]]]:
    """(variables, target -> (prerequisites, recipe lines)), with variables expanded in target names."""
    variables: dict[str, str] = {}
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        if not line.strip() or line.startswith("#"):
            continue
        assignment = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$", line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(3).strip()
            current = None
            continue
        rule = re.match(r"^([^:=#]+?)\s*:(?!=)\s*(.*)$", line)
        if rule:
            prerequisites = [p for p in rule.group(2).split() if p != "|"]
            current = []
            for target in rule.group(1).split():
                rules[expand(target, variables)] = ([expand(p, variables) for p in prerequisites], current)
        else:
            current = None
    return variables, rules


def expand(text: str, variables: dict[str, str], depth: int = 0) -> str:
    """$(NAME) -> its value; $(if COND,THEN,ELSE) -> THEN or ELSE; other make functions ($(wildcard ...)) -> ""
    (a flag that may be absent)."""
    if depth > 10:
        return text
    out, i = "", 0
    while i < len(text):
        if text.startswith("$(", i):
            level, j = 0, i
            while j < len(text):
                level += {"(": 1, ")": -1}.get(text[j], 0)
                if level == 0 and text[j] == ")":
                    break
                j += 1
            inner = text[i + 2 : j]
            if inner.startswith("if "):  # $(if COND,THEN,ELSE): COND's functions are "" here, so mostly ELSE
                condition, then, otherwise = (inner[3:].split(",") + ["", ""])[:3]
                chosen = then if expand(condition, variables, depth + 1).strip() else otherwise
                out += expand(chosen, variables, depth + 1)
            else:
                out += expand(variables[inner], variables, depth + 1) if inner in variables else ""
            i = j + 1
        else:
            out += text[i]
            i += 1
    return out


def ci_make_targets() -> set[str]:
    """The targets .ci/run runs (`make install VENV=...` -> install)."""
    return set(re.findall(r"^\s*make\s+([\w-]+)", (ROOT / ".ci" / "run").read_text(), re.MULTILINE))


def recipe_commands(target: str, seen: set[str] | None = None) -> list[tuple[str, ...]]:
    """Every simple command that `make TARGET` runs, its prerequisites' first, variables expanded."""
    variables, rules = makefile()
    seen = set() if seen is None else seen
    if target in seen or target not in rules:
        return []
    seen.add(target)
    prerequisites, recipe = rules[target]
    found = [command for prerequisite in prerequisites for command in recipe_commands(prerequisite, seen)]
    for line in recipe:
        for tokens in split_commands(expand(line.lstrip("@-"), variables)):
            found.append(normalise(tokens))
    return found


# === Checking one command ===


def check_artnet(argv: tuple[str, ...]) -> None:
    from artnet.cli import build_parser
    from artnet.config import apply_overrides, load_config

    try:
        args = build_parser().parse_args(list(argv[1:]))
    except SystemExit as exit_:
        raise AssertionError(f"`artnet` refuses {' '.join(argv[1:])!r} (exit {exit_.code})") from None
    config = getattr(args, "config", None)
    if args.command in ("train", "probe") or (args.command == "data-stats" and ".py" in config):
        apply_overrides(load_config(config), list(getattr(args, "set", None) or []))
    elif args.command == "data-stats":
        assert config in wga_configs(), f"data-stats --config {config}: not a config of datasets/wga"
    if getattr(args, "wga_config", None):
        assert args.wga_config in wga_configs(), f"--wga-config {args.wga_config}: not a config of datasets/wga"
    also = getattr(args, "also_wga", None)
    if also:
        assert also.partition(":")[0] in wga_configs(), f"--also-wga {also}: not a config of datasets/wga"


def wga_configs() -> set[str]:
    source = (ROOT / "datasets" / "wga" / "wga_dataset_builder.py").read_text()
    return set(re.findall(r"\bname=\"(\w+)\"", source))


def argparse_flags(script: Path) -> set[str]:
    """The option strings a script's argparse declares (read from its source: nothing is imported or run)."""
    flags = {"-h", "--help"}
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
    return flags


def check_python(argv: tuple[str, ...]) -> None:
    if len(argv) >= 3 and argv[1] == "-c":
        compile(argv[2], "<python -c>", "exec")
        return
    if len(argv) >= 2 and argv[1] == "-m":
        return  # a module of the environment (`python -m venv`, `python -m pytest`)
    script = ROOT / argv[1]
    assert script.is_file(), f"no script {argv[1]}"
    declared = argparse_flags(script)
    used = {token.split("=", 1)[0] for token in argv[2:] if token.startswith("-")}
    assert used <= declared, f"{argv[1]} declares no {sorted(used - declared)} (it has {sorted(declared)})"


def check_pip(argv: tuple[str, ...]) -> None:
    setup = (ROOT / "setup.cfg").read_text()
    block = setup.split("[options.extras_require]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^(\w+)\s*=", block, re.MULTILINE))
    for token in argv:
        for wanted in re.findall(r"\.\[([\w,]+)\]", token):
            assert set(wanted.split(",")) <= extras, f"setup.cfg has no extra {wanted} (it has {sorted(extras)})"


def check_make(argv: tuple[str, ...]) -> None:
    _, rules = makefile()
    targets = [token for token in argv[1:] if "=" not in token and not token.startswith("-")]
    assert targets, "`make` with no target"
    for target in targets:
        assert target in rules, f"the Makefile has no target {target!r}"
        for command in recipe_commands(target):
            if command and command[0] in CHECKERS and command[0] != "make":
                CHECKERS[command[0]](command)


def check_export(argv: tuple[str, ...]) -> None:
    for assignment in argv[1:]:
        name, _, value = assignment.partition("=")
        if name == "TF_CONFIG":
            cluster = json.loads(value)
            assert {"cluster", "task"} <= set(cluster), f"TF_CONFIG needs cluster and task: {value}"


def check_tfds(argv: tuple[str, ...]) -> None:
    from tensorflow_datasets.scripts.cli.main import _parse_flags  # tfds's own parser (argv[0] is skipped)

    try:
        args = _parse_flags(["tfds", *argv[1:]])
    except SystemExit as exit_:
        raise AssertionError(f"`tfds` refuses {' '.join(argv[1:])!r} (exit {exit_.code})") from None
    build = args.command
    for dataset in build.positional_datasets:
        assert (ROOT / dataset).is_dir(), f"tfds build {dataset}: no such builder folder"
    if build.generation.config:
        assert build.generation.config in wga_configs(), f"--config {build.generation.config}: no such wga config"


CHECKERS = {
    "artnet": check_artnet,
    "python": check_python,
    "pip": check_pip,
    "make": check_make,
    "export": check_export,
    "tfds": check_tfds,
}


# === The commands ===


def test_every_shell_line_is_a_command_this_file_knows_how_to_check():
    unknown = [str(c) for c in ALL_COMMANDS if c.argv and c.argv[0] not in CHECKERS]
    assert not unknown, "commands no test checks (teach tests/test_docs.py, or drop them):\n" + "\n".join(unknown)


@pytest.mark.parametrize("command", commands_of("artnet"), ids=_ids(commands_of("artnet")))
def test_artnet_commands_parse_and_their_recipes_load(command):
    check_artnet(command.argv)


@pytest.mark.parametrize("command", commands_of("python"), ids=_ids(commands_of("python")))
def test_python_commands_name_a_script_and_only_flags_it_declares(command):
    check_python(command.argv)


def test_tfds_commands_parse_with_the_tfds_parser_and_name_real_configs():
    commands = commands_of("tfds")
    assert commands, "the docs show how to build the dataset"
    for command in commands:
        check_tfds(command.argv)


@pytest.mark.parametrize("program", ["make", "pip", "export"])
def test_make_pip_and_export_lines(program):
    for command in commands_of(program):
        CHECKERS[program](command.argv)


def test_the_makefile_recipes_behind_the_two_commands_parse():
    """`make demo` is not run in CI (it trains for minutes): its recipes' artnet and tfds lines are checked here."""
    programs = [command[0] for command in recipe_commands("demo")]
    assert programs.count("artnet") >= 3 and "tfds" in programs, programs  # stats, train, demo; build
    check_make(("make", "demo", "test"))


def test_the_readme_shows_exactly_the_two_commands_up_front_and_ci_runs_the_test_one():
    text = README.read_text()
    first_language, first_block = next(fenced_blocks(text))
    commands = [normalise(tokens) for line in _shell_lines(first_block) for tokens in split_commands(line)]
    assert first_language in SHELL_LANGUAGES
    assert commands == [("make", "demo"), ("make", "test")], commands
    assert text.index("```") < text.index("\n## ", text.index("\n## ") + 1), "the two commands come first"
    assert {"test", "lint", "install"} <= ci_make_targets()
    for page in DOCS:  # every make target a page names exists
        for span in INLINE_CODE.findall(prose(page.read_text())):
            if re.fullmatch(r"make [\w-]+( [\w-]+)*", span):
                check_make(tuple(span.split()))


def test_the_readme_is_short_and_its_screenshot_is_committed():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the depth to docs/"
    assert "docs/images/demo.png" in README.read_text()
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size < 300_000, "keep the screenshot small (it is committed)"


def test_config_fields_named_in_the_docs_exist():
    """`data.feature_views=2`, `heads_from=probe`, ...: a renamed field of artnet.config fails here."""
    from artnet.config import TrainConfig

    def has(obj, path: list[str]) -> bool:
        fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        if path[0] not in fields:
            return False
        return len(path) == 1 or has(getattr(obj, path[0]), path[1:])

    named = {
        span.partition("=")[0]
        for page in DOCS
        for span in INLINE_CODE.findall(prose(page.read_text()))
        if re.fullmatch(r"[a-z_]+(\.[a-z_]+)*=\S*", span)
    }
    assert {"strategy", "data.feature_views", "heads_from"} <= named
    missing = sorted(key for key in named if not has(TrainConfig(), key.split(".")))
    assert not missing, f"the docs name config fields that artnet.config does not have: {missing}"


def test_python_blocks_compile_and_call_real_endpoints():
    serving = "\n".join(p.read_text() for p in (ROOT / "artnet" / "serving").rglob("*.py"))
    for page in DOCS:
        for language, block in fenced_blocks(page.read_text()):
            if language == "python":
                compile(block, str(page), "exec")
                for endpoint in re.findall(r"api_name=\"/(\w+)\"", block):
                    assert f'api_name="{endpoint}"' in serving, f"{_rel(page)}: the demo has no /{endpoint}"


# === Links and names ===


def github_anchors(page: Path) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+\s+(.*)$", prose(page.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", DOCS, ids=[_rel(p) for p in DOCS])
def test_every_relative_link_points_at_an_existing_file_and_heading(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path_text, _, anchor = target.partition("#")
        path = (page.parent / path_text).resolve() if path_text else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in github_anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{_rel(page)}: broken links {broken}"


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defines(module: Path, name: str) -> bool:
    """A top-level def, class, assignment or import of `name` in the module's source."""
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def resolves(dotted: str) -> bool:
    """`artnet.serving.predictor` (a module) or `artnet.serving.predictor.Predictor` (a name defined in one)."""
    if module_file(dotted):
        return True
    parent, _, name = dotted.rpartition(".")
    module = module_file(parent)
    return bool(module and defines(module, name))


def test_module_paths_named_in_the_docs_exist():
    """The docs name packages and modules; when a module moves, its mention must move too."""
    missing = []
    for page in [p for p in DOCS if p.name != "CHANGELOG.md"]:
        for span in INLINE_CODE.findall(prose(page.read_text())):
            for dotted in re.findall(r"\bartnet(?:\.\w+)+", span):
                if not resolves(dotted):
                    missing.append(f"{_rel(page)}: {dotted}")
            for path in re.findall(r"^artnet/[\w/.]*\w/?$", span):
                if not (ROOT / path).exists():
                    missing.append(f"{_rel(page)}: {path}")
    assert not missing, "\n".join(missing)


def changelog_moves() -> list[tuple[str, str]]:
    rows = re.findall(r"^\| `(artnet[\w.]*)` \| `(artnet[\w.]*)`", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert rows, "CHANGELOG.md has no `old` -> `new` table"
    return rows


def test_the_changelog_sends_every_moved_import_to_a_home_that_exists():
    moves = dict(changelog_moves())
    assert moves["artnet.predict"] == "artnet.serving.predictor"
    assert moves["artnet.predict.Predictor"] == "artnet.serving.predictor.Predictor"
    assert moves["artnet.train.train"] == "artnet.training.train.train"
    for old, new in moves.items():
        assert resolves(new), f"CHANGELOG.md: {old} -> {new}, but {new} does not exist"
        if module_file(new):  # a moved module: its old file is gone
            assert not module_file(old), f"CHANGELOG.md: {old} still exists"


def test_the_design_page_lists_the_layers_that_import_linter_checks():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    design = (ROOT / "docs" / "design.md").read_text()
    stated = re.search(r"The layers, top to bottom: (.*?)\.\n\n", design, re.DOTALL)
    assert stated, "docs/design.md states the layers in one sentence"
    listed = [re.sub(r"\s+", " ", layer).strip() for layer in re.findall(r"`([^`]+)`", stated.group(1))]
    assert listed == [re.sub(r"\s+", " ", layer) for layer in layers]
    assert "lint-imports" in (ROOT / "Makefile").read_text() and "make lint" in (ROOT / ".ci" / "run").read_text()
