"""Text made safe for a LaTeX document compiled by pdflatex (the leaderboard's ``.tex`` table).

pdflatex stops at a bare ``_``, ``%``, ``&``, ``#``, ``$``, ``{``, ``}``, ``~``, ``^`` or ``\\`` and at any
character its fonts lack (``ε``), so each becomes a command; a character with no command is
written as its code point (``[U+4E2D]``) rather than breaking the build.
"""

from __future__ import annotations

import re
import unicodedata

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
        "|": r"\textbar{}"}  # fmt: skip
_NORMS = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$", "l0": r"$\ell_0$"}
_SYMBOLS = {"∞": r"$\infty$", "×": r"$\times$", "→": r"$\rightarrow$", "←": r"$\leftarrow$", "↓": r"$\downarrow$",
            "↑": r"$\uparrow$", "≤": r"$\leq$", "≥": r"$\geq$", "≈": r"$\approx$", "≠": r"$\neq$", "±": r"$\pm$",
            "·": r"$\cdot$", "ℓ": r"$\ell$", "°": r"$^\circ$", "−": "-", "–": "--", "—": "---", "…": r"\dots{}",
            "“": "``", "”": "''", "‘": "`", "’": "'", "\u00a0": "~", "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}",
            "œ": r"\oe{}", "Œ": r"\OE{}", "ø": r"\o{}", "Ø": r"\O{}", "ł": r"\l{}", "Ł": r"\L{}", "§": r"\S{}",
            "⚑": r"$^\dagger$"}  # fmt: skip  (⚑: a flagged figure)
_GREEK = {"alpha", "beta", "gamma", "delta", "varepsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
          "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
          "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}  # letters with a LaTeX math command
_ACCENTS = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u", "\u0307": ".",
            "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c", "\u0328": "k"}  # fmt: skip


def tex(text: str, *, norms: bool = False) -> str:
    """``text`` safe in a LaTeX document compiled by pdflatex: specials escaped, non-ASCII as commands
    (``ε`` → ``$\\varepsilon$``); with ``norms``, the words linf/l2/l0 as ``$\\ell_\\infty$`` etc."""
    if norms:
        return "".join(_NORMS.get(word) or tex(word) for word in re.split(r"\b(linf|l[012])\b", text))
    return "".join(_TEX.get(ch) or (ch if ch.isascii() else _tex_unicode(ch)) for ch in text)


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
