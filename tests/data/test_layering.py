"""data/ sits below models/, train/ and eval/: no import of them, no module path of them by string, and importing
every data module loads none of them."""

import ast
import subprocess
import sys
from pathlib import Path

import latentlm.data

DATA = Path(latentlm.data.__file__).parent
ABOVE = ("latentlm.models", "latentlm.train", "latentlm.eval", "latentlm.compare", "latentlm.hf", "latentlm.cli")


def data_modules() -> list[Path]:
    files = sorted(DATA.rglob("*.py"))
    assert DATA / "reasoning" / "__init__.py" in files and len(files) > 10
    return files


def test_no_data_module_imports_or_names_a_layer_above():
    bad = []
    for path in data_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]  # "module:function" registrations
            else:
                continue
            bad += [f"{path.relative_to(DATA)}:{node.lineno}: {n}" for n in names if n.startswith(ABOVE)]
    assert not bad, "data/ reaches above itself:\n" + "\n".join(bad)


def test_importing_all_of_data_loads_no_layer_above():
    """Beyond what `import latentlm` itself loads (the lazy variant registry and the shared config)."""
    mods = [".".join(("latentlm", "data", *p.relative_to(DATA).with_suffix("").parts)) for p in data_modules()]
    mods = [m.removesuffix(".__init__") for m in mods]
    code = (
        "import importlib, sys, latentlm\n"
        f"above = {ABOVE!r}\n"
        "before = {m for m in sys.modules if m.startswith(above)}\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith(above) and m not in before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
