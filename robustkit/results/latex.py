"""Text made safe for a LaTeX document compiled by pdflatex (the leaderboard's ``.tex`` table).

pdflatex stops at a bare ``_``, ``%``, ``&``, ``#``, ``$``, ``{``, ``}``, ``~``, ``^`` or ``\\`` and at any
character its fonts lack (``ε``), so each becomes a command; a character with no command is
written as its code point (``[U+4E2D]``) rather than breaking the build.
"""

from __future__ import annotations

import re
import unicodedata

from robustkit.plugin_index import entries

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_SYMBOLS = {
    "∞": r"$\infty$",
    "×": r"$\times$",
    "→": r"$\rightarrow$",
    "←": r"$\leftarrow$",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "≈": r"$\approx$",
    "≠": r"$\neq$",
    "±": r"$\pm$",
    "·": r"$\cdot$",
    "ℓ": r"$\ell$",
    "°": r"$^\circ$",
    "−": "-",
    "–": "--",
    "—": "---",
    "…": r"\dots{}",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "\u00a0": "~",
    "ß": r"\ss{}",
    "æ": r"\ae{}",
    "Æ": r"\AE{}",
    "œ": r"\oe{}",
    "Œ": r"\OE{}",
    "ø": r"\o{}",
    "Ø": r"\O{}",
    "ł": r"\l{}",
    "Ł": r"\L{}",
    "§": r"\S{}",
    "⚑": r"$^\dagger$",
}  # ⚑: a flagged figure
_GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Pi",
    "Sigma",
    "Upsilon",
    "Phi",
    "Psi",
    "Omega",
}  # letters with a LaTeX math command
_ACCENTS = {
    "\u0300": "`",
    "\u0301": "'",
    "\u0302": "^",
    "\u0303": "~",
    "\u0304": "=",
    "\u0306": "u",
    "\u0307": ".",
    "\u0308": '"',
    "\u030a": "r",
    "\u030b": "H",
    "\u030c": "v",
    "\u0327": "c",
    "\u0328": "k",
}


def tex(text: str, *, norms: bool = False) -> str:
    """``text`` safe in a LaTeX document compiled by pdflatex: specials escaped, non-ASCII as commands
    (``ε`` → ``$\\varepsilon$``); with ``norms``, threat models' names as they write themselves (``ThreatModel.latex``:
    linf as ``$\\ell_\\infty$`` etc.)."""
    symbols = _norm_symbols() if norms else {}
    if symbols:
        named = "|".join(re.escape(name) for name in sorted(symbols, key=len, reverse=True))
        return "".join(symbols.get(word) or tex(word) for word in re.split(rf"\b({named})\b", text))
    return "".join(_TEX.get(ch) or (ch if ch.isascii() else _tex_unicode(ch)) for ch in text)


def _norm_symbols() -> dict[str, str]:
    """Threat model name → its LaTeX symbol, read from the plugin index (no torch) for those that have one."""
    return {entry["name"]: entry["latex"] for entry in entries("threats") if entry.get("latex")}


def _tex_unicode(ch: str) -> str:
    if ch in _SYMBOLS:
        return _SYMBOLS[ch]
    name = unicodedata.name(ch, "")
    if name.startswith(("GREEK SMALL LETTER ", "GREEK CAPITAL LETTER ")):
        letter = name.split(" ", 3)[3].lower()
        letter = {"lamda": "lambda", "epsilon": "varepsilon"}.get(letter, letter)
        letter = letter.capitalize() if "CAPITAL" in name else letter
        if letter in _GREEK:
            return f"$\\{letter}$"
    base, *marks = unicodedata.normalize("NFD", ch)
    if base.isascii() and base.isalpha() and marks and all(m in _ACCENTS for m in marks):
        for mark in marks:
            base = rf"\{_ACCENTS[mark]}{{{base}}}"
        return base
    return f"[U+{ord(ch):04X}]"  # no pdflatex glyph: say which character it was
