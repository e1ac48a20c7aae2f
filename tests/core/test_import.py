import subprocess
import sys


def test_import_demp_stays_light():
    code = (
        "import sys, demp; heavy = [m for m in ('torch_pruning', 'matplotlib', 'mnist1d', "
        "'safetensors', 'scipy', 'lightning', 'transformers', 'demp.experiments') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
