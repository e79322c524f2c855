"""Where the measured NIST LJH files are (shared/data/real/nist_mass beside the checkout, or
$CRYOPIPE_NIST_DIR); tests that need them skip where they are absent."""
import os
from pathlib import Path

_CANDIDATES = [os.environ.get("CRYOPIPE_NIST_DIR", ""),
               str(Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "nist_mass"),
               "/work/shared/data/real/nist_mass"]
NIST_DIR = next((Path(c) for c in _CANDIDATES if c and (Path(c) / "regress_chan1.ljh").is_file()),
                Path(_CANDIDATES[1]))
