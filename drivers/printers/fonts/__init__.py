"""The fonts edge ships: DejaVu Sans (text on cards and graphic text on tickets) and DejaVu Sans
Mono (the FGL interpreter's stand-in for the printer's resident fonts). Licence: LICENSE here.

DejaVu covers every Latin script (German, French, Polish, Czech, ... and Vietnamese), Greek and
Cyrillic, so a holder's name prints without configuration.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent
SANS = str(FOLDER / "DejaVuSans.ttf")
SANS_BOLD = str(FOLDER / "DejaVuSans-Bold.ttf")
MONO = str(FOLDER / "DejaVuSansMono.ttf")
MONO_BOLD = str(FOLDER / "DejaVuSansMono-Bold.ttf")

# Faces a template names by word (`font = "sans-bold"`) instead of by file.
FACES: dict[str, str] = {"sans": SANS, "sans-bold": SANS_BOLD, "mono": MONO, "mono-bold": MONO_BOLD}
