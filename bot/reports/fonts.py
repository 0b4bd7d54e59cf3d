"""The font the report charts are drawn in: one with Chinese glyphs, found on
this machine and chosen by name. Without one matplotlib falls back to DejaVu
Sans and draws a box for every Chinese character; `complaintbot check` fails
then, and the Dockerfile installs fonts-wqy-microhei."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from matplotlib import font_manager

# Families with Chinese glyphs, in order of preference (the Debian packages
# fonts-wqy-microhei and fonts-noto-cjk, then fonts found on other systems).
CJK_FAMILIES = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC",
                "Noto Sans SC", "SimHei", "Microsoft YaHei", "PingFang SC")
# The files those families come in: matplotlib's font cache, built when it was
# first imported, does not know a font installed after that, so the system's
# font directories are searched for these names too.
_FILES = re.compile(r"wqy-microhei|notosanscjk|sourcehansans|notosanssc|simhei|msyh|pingfang",
                    re.IGNORECASE)
INSTALL_HINT = "install fonts-wqy-microhei (Debian: apt-get install fonts-wqy-microhei)"


def _known() -> set[str]:
    return {entry.name for entry in font_manager.fontManager.ttflist}


@cache
def cjk_font() -> str | None:
    """The family name of an installed font with Chinese glyphs, or None."""
    known = _known()
    if not any(family in known for family in CJK_FAMILIES):
        for path in font_manager.findSystemFonts():
            if _FILES.search(Path(path).name):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue  # an unreadable file: look at the next one
        known = _known()
    return next((family for family in CJK_FAMILIES if family in known), None)
