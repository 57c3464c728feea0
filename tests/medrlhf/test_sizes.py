"""The size rules of docs/development.md: no product module over 500 lines,
no function over 80 (argparse builders excepted: a parser with many options is
one long list, not long logic)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("annotations", "models_ml", "medrlhf")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def product_modules() -> list[Path]:
    return sorted(
        p
        for package in PRODUCT
        for p in (ROOT / package).rglob("*.py")
        if "migrations" not in p.parts
    )


def long_modules(paths: list[Path], root: Path = ROOT) -> list[str]:
    out = []
    for path in paths:
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            out.append(f"{path.relative_to(root)}: {n} lines")
    return out


def builds_a_parser(node: ast.AST) -> bool:
    """A function whose body is mostly add_argument calls (made directly or
    through a local alias such as ``add = parser.add_argument``)."""
    aliases = {
        target.id
        for n in ast.walk(node)
        if isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Attribute)
        and n.value.attr == "add_argument"
        for target in n.targets
        if isinstance(target, ast.Name)
    }
    calls = [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument")
            or (isinstance(n.func, ast.Name) and n.func.id in aliases)
        )
    ]
    return len(calls) >= 10


def long_functions(
    source: str, name: str, limit: int = MAX_FUNCTION_LINES
) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and not builds_a_parser(node):
                out.append(f"{name}:{node.lineno} {node.name}: {n} lines")
    return out


def test_no_product_module_is_over_500_lines():
    assert long_modules(product_modules()) == []


def test_no_product_function_is_over_80_lines():
    found = []
    for path in product_modules():
        found += long_functions(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


def test_the_checks_catch_what_they_forbid(tmp_path):
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    found = long_modules(sorted(tmp_path.glob("*.py")), root=tmp_path)
    assert found == ["long.py: 501 lines"]

    def function(lines: int, indent: str = "") -> str:
        body = "".join(f"{indent}    y{i} = {i}\n" for i in range(lines - 1))
        return f"{indent}def f():\n{body}"

    assert long_functions(function(81), "m") == ["m:1 f: 81 lines"]
    assert long_functions(function(80), "m") == []
    assert long_functions("class C:\n" + function(81, "    "), "m") == [
        "m:2 f: 81 lines"
    ]
    parser = "".join(f"    p.add_argument('--a{i}')\n" for i in range(90))
    assert long_functions(f"def build(p):\n{parser}", "m") == []
    aliased = "    add = p.add_argument\n" + parser.replace("p.add_argument", "add")
    assert long_functions(f"def build(p):\n{aliased}", "m") == []
