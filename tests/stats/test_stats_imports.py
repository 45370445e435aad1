"""The package's light modules do not load the compiled estimators (numba) with them."""

import subprocess
import sys


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_ism_and_moments_do_not_import_numba() -> None:
    assert "numba" not in _loaded_after("import dmr_ray.stats.moments, dmr_ray.ism")


def test_estimators_are_imported_on_first_use() -> None:
    loaded = _loaded_after("from dmr_ray.stats import ivw, mbe, batched, r_density")
    assert {"dmr_ray.stats.mr", "dmr_ray.stats.batched", "dmr_ray.stats.density", "numba"} <= loaded
