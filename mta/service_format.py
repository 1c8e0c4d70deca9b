"""Print master.cf rows as postconf -M and -Mf do.

The model is postconf(1) (``postconf_master.c``), quirks included: see `format_row()`.
Rows come from `mta.service_table`, which keeps every field as written (``raw``).
"""

from __future__ import annotations

from collections.abc import Iterable

# master(8)'s field rules, shared so that printing unwraps `{ }` and `name = value`
# exactly as parsing does.
from mta.service_table import _BLANKS, ServiceRow, _extpar, _split_nameval

_COLUMN_GOAL = (0, 11, 17, 25, 33, 41, 49, 57)  # postconf -M column starts
_LINE_LIMIT = 80  # postconf -Mf folds before this width
_INDENT = "    "


# PRINTING, as postconf(1)'s pcf_normalize_daemon_args() and pcf_print_master_entry().


def _postconf_args(raw_args: Iterable[str]) -> list[str]:
    """Normalise raw arguments as postconf does before printing them.

    ``-vo x=y`` becomes ``-v -o x=y``, ``-ox=y`` becomes ``-o x=y``, and ``-o { x = y }``
    becomes ``-o x=y``; after the options, ``{ a b }`` becomes ``a b``.
    """
    argv = list(raw_args)
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        arg = argv[i]
        split = arg.find("o", 2)
        if split != -1:
            argv[i:i + 1] = [arg[:split], "-" + arg[split:]]
            arg = argv[i]
        # C's strchr("o", arg[1]) also matches the NUL of a lone "-", so "-" takes a value.
        if arg[1:2] not in ("o", ""):
            i += 1
            continue
        if len(arg) > 2:
            argv[i:i + 1] = [arg[:2], arg[2:]]
        if i + 1 < len(argv):
            i += 1
            if argv[i].startswith("{"):
                argv[i] = _extpar(argv[i])[0]
                pair = _split_nameval(argv[i]) if argv[i - 1][1:2] == "o" else None
                if isinstance(pair, tuple):
                    argv[i] = f"{pair[0]}={pair[1]}"
        i += 1
    return argv[:i] + [_extpar(arg)[0] if arg.startswith("{") else arg for arg in argv[i:]]


def _has_blank(text: str) -> bool:
    return any(ch in _BLANKS for ch in text)


def format_row(row: ServiceRow, fold: bool = False) -> str:
    """Return the row as ``postconf -M`` prints it (``postconf -Mf`` when fold), no newline.

    + row: a parsed row; its raw fields are printed, so ``-`` stays ``-``.
    + fold: wrap the arguments before column 80 onto lines indented by four spaces.

    The columns start at 0, 11, 17, 25, 33, 41, 49 and 57, with at least one space
    between them. Each ``-o name=value`` goes on its own line when folding. Arguments
    with blanks are shown in ``{ }``, except the first non-option argument: postconf
    decides the braces for that one before it knows it is not an option.
    """
    out: list[str] = []
    length = 0
    for goal, text in zip(_COLUMN_GOAL, row.raw[:8]):
        if length > 0:
            pad = max(1, goal - length)
            out.append(" " * pad)
            length += pad
        out.append(text)
        length += len(text)
    argv = _postconf_args(row.raw[8:])
    in_options = True
    i = 0
    while i < len(argv):
        arg = argv[i]
        width = len(arg)
        value: str | None = None
        braces = False
        if in_options:
            if not arg.startswith("-") or arg == "--":
                in_options = False
            elif arg[1:2] in ("o", "") and i + 1 < len(argv):
                value = argv[i + 1]
                length = _LINE_LIMIT  # an option with a value starts a line
                braces = _has_blank(value)
                width += len(value) + 3 + (2 if braces else 0)
        else:
            braces = _has_blank(arg)
        if length > len(_INDENT):
            if not fold or length + 1 + width < _LINE_LIMIT:
                out.append(" ")
                length += 1
            else:
                out.append("\n" + _INDENT)
                length = len(_INDENT)
        shown = f"{{{arg}}}" if not in_options and braces else arg
        out.append(shown)
        length += len(shown)
        if value is not None:
            out.append(f" {{{value}}}" if braces else f" {value}")
            length = _LINE_LIMIT  # and ends it
            i += 1
        i += 1
    return "".join(out)


def format_table(rows: Iterable[ServiceRow], fold: bool = False) -> str:
    """Return rows as ``postconf -M`` (``-Mf`` when fold) prints them, a newline after each."""
    return "".join(format_row(row, fold) + "\n" for row in rows)
