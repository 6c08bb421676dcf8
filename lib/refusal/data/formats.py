"""Prompt data formats: validation, the study's JSON formats, and loaders for public datasets.

Formats (as in the original study): pairs, a JSON list of ``[harmful, safe]`` string pairs
(``List[List[str, str]]``); eval prompts, a JSON list of strings (``List[str]``), optionally with an aligned
metadata list (``List[{field: value}]``, one entry per prompt, checked by ``validate_meta``). Loaders for AdvBench,
HarmBench, JailbreakBench, Alpaca and one-prompt-per-line files turn public formats into the same lists.
Every error is a :class:`DataError` naming the file and the place.

Strict where a careful user would be: an empty dataset is an error; a file that is not UTF-8 names the file and
the line (a UTF-8 byte-order mark is accepted); a prompt made only of invisible characters (zero-width spaces,
format characters, fillers) counts as empty; two prompts that differ only in Unicode form (NFC vs NFD, full-width
letters), case, spacing or invisible characters are duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DataError", "Pair", "validate_pairs", "validate_prompts", "validate_meta", "load_instructions",
           "load_pairs", "load_prompts",
           "load_advbench", "load_harmbench", "load_jailbreakbench", "load_alpaca", "load_lines"]

Pair = tuple[str, str]


class DataError(ValueError):
    """Invalid prompt data; the message names the file and the index."""


# Letters and symbols that render as nothing (fillers, the blank braille pattern).
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _norm(s: str) -> str:
    """The key two prompts are compared by: NFKC, no format characters, single spaces, case-folded."""
    s = unicodedata.normalize("NFKC", s)
    s = "".join(c for c in s if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", " ".join(s.split()).casefold())


def _visible(s: str) -> bool:
    """Whether ``s`` has a character that shows: a letter, digit, punctuation or symbol (not a blank glyph)."""
    return any(unicodedata.category(c)[0] in "LNPS" and c not in _BLANK_GLYPHS for c in s)


def _check_prompt(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: empty or whitespace-only prompt")
    if not _visible(value):
        raise DataError(f"{where}: prompt has only invisible characters: {value!r}")
    return value


def _nonempty(data: list, source: str, what: str) -> None:
    if not data:
        raise DataError(f"{source}: no {what} (an empty dataset)")


def validate_pairs(data: Any, source: str = "<pairs>") -> list[Pair]:
    """Check ``List[[harmful, safe]]`` and return it as a list of tuples.

    Raises:
        DataError: naming ``source`` and the index (``[i]`` or ``[i][j]``).
    """
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a JSON list of [harmful, safe] pairs, got {type(data).__name__}")
    _nonempty(data, source, "pairs")
    seen: dict[str, str] = {}
    out: list[Pair] = []
    for i, item in enumerate(data):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            n = len(item) if isinstance(item, (list, tuple)) else type(item).__name__
            raise DataError(f"{source}: item [{i}] must be a [harmful, safe] pair of 2 strings, got {n}")
        harmful = _check_prompt(item[0], f"{source}: item [{i}][0] (harmful)")
        safe = _check_prompt(item[1], f"{source}: item [{i}][1] (safe)")
        if _norm(harmful) == _norm(safe):
            raise DataError(f"{source}: item [{i}]: harmful and safe prompts are the same")
        for j, s in ((0, harmful), (1, safe)):
            key = _norm(s)
            if key in seen:
                raise DataError(f"{source}: item [{i}][{j}] duplicates {seen[key]}: {s[:60]!r}")
            seen[key] = f"[{i}][{j}]"
        out.append((harmful, safe))
    return out


def validate_prompts(data: Any, source: str = "<prompts>") -> list[str]:
    """Check ``List[str]`` (non-empty strings, no duplicates) and return it."""
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a JSON list of prompt strings, got {type(data).__name__}")
    _nonempty(data, source, "prompts")
    return _unique_prompts(((f"item [{i}]", item) for i, item in enumerate(data)), source)


def _unique_prompts(entries: Iterable[tuple[str, Any]], source: str) -> list[str]:
    """Each ``(place, text)`` checked as a prompt, in order; a prompt equal to an earlier one (after normalization)
    is a :class:`DataError` naming ``source`` and both places (``item [3] duplicates item [0]``)."""
    seen: dict[str, str] = {}
    out = []
    for place, item in entries:
        s = _check_prompt(item, f"{source}: {place}")
        key = _norm(s)
        if key in seen:
            raise DataError(f"{source}: {place} duplicates {seen[key]}: {s[:60]!r}")
        seen[key] = place
        out.append(s)
    return out


def validate_meta(data: Any, n_prompts: int, allowed: Mapping[str, Collection[str]],
                  source: str = "<meta>") -> list[dict[str, str]]:
    """Check a metadata list aligned with a prompt list and return it.

    ``data`` must be ``List[{field: value}]`` with exactly ``n_prompts`` entries (entry ``i`` describes prompt ``i``),
    each entry holding exactly the fields of ``allowed`` with a value among ``allowed[field]``.

    Raises:
        DataError: naming ``source`` and the index (``[i]`` or ``[i].field``); a length mismatch names both lengths.
    """
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a JSON list of metadata objects, got {type(data).__name__}")
    if len(data) != n_prompts:
        raise DataError(f"{source}: {len(data)} metadata entries for {n_prompts} prompts; "
                        "the lists must be aligned, one entry per prompt")
    fields = sorted(allowed)
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(f"{source}: item [{i}]: expected an object with fields {fields}, got {type(item).__name__}")
        if sorted(item) != fields:
            raise DataError(f"{source}: item [{i}]: fields {sorted(item)}, expected {fields}")
        for field in fields:
            if item[field] not in allowed[field]:
                choices = sorted(allowed[field])
                raise DataError(f"{source}: item [{i}].{field} = {item[field]!r} is not one of {choices}")
        out.append(dict(item))
    return out


def _read_text(path: str | Path) -> str:
    """A file's text as UTF-8 (a byte-order mark is dropped); any other encoding names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text: line {line}, byte {e.start} ({raw[e.start:e.start + 1]!r}: "
                        f"{e.reason}); convert the file to UTF-8") from None


def _read_json(path: str | Path) -> Any:
    path = Path(path)
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def load_instructions(path: str | Path) -> dict[str, str]:
    """Read ``List[[prompt, answer]]`` (written answers to instructions) as ``{prompt: answer}``.

    Raises:
        DataError: naming the file and the item index.
    """
    data, seen, out = _read_json(path), {}, {}
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of [prompt, answer] pairs, got {type(data).__name__}")
    _nonempty(data, str(path), "[prompt, answer] pairs")
    for i, item in enumerate(data):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise DataError(f"{path}: item [{i}] must be a [prompt, answer] pair of 2 strings")
        prompt = _check_prompt(item[0], f"{path}: item [{i}][0] (prompt)")
        answer = _check_prompt(item[1], f"{path}: item [{i}][1] (answer)")
        if _norm(prompt) in seen:
            raise DataError(f"{path}: item [{i}] duplicates item [{seen[_norm(prompt)]}]: {prompt[:60]!r}")
        seen[_norm(prompt)] = i
        out[prompt] = answer
    return out


def load_pairs(path: str | Path) -> list[Pair]:
    """Read and validate a pairs JSON file."""
    return validate_pairs(_read_json(path), str(path))


def load_prompts(path: str | Path) -> list[str]:
    """Read and validate an eval-prompts JSON file."""
    return validate_prompts(_read_json(path), str(path))


def _read_csv(path: str | Path, column: str) -> list[dict[str, str]]:
    path = Path(path)
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise DataError(f"{path}: missing column '{column}' (found: {', '.join(reader.fieldnames or [])})")
    rows = list(reader)
    if not rows:
        raise DataError(f"{path}: no data rows (only a header): an empty dataset")
    return rows


def _csv_prompts(path: str | Path, column: str, category: str | None) -> list[str] | tuple[list[str], list[str]]:
    rows = _read_csv(path, column)
    prompts = validate_prompts([r[column] for r in rows], f"{path} (column '{column}', data row)")
    if category is None:
        return prompts
    return prompts, [r.get(category, "") for r in rows]


def load_advbench(path: str | Path) -> list[str]:
    """AdvBench ``harmful_behaviors.csv`` (columns ``goal``, ``target``): the goals."""
    return _csv_prompts(path, "goal", None)  # type: ignore[return-value]


def load_harmbench(path: str | Path, functional_category: str | None = "standard") -> list[str]:
    """HarmBench behaviors CSV (``Behavior``, ``FunctionalCategory``).

    Keeps rows whose ``FunctionalCategory`` equals ``functional_category``, ignoring case and surrounding spaces
    (``None`` keeps all; contextual rows need their context and are not plain prompts). A category that no row
    has is an error listing those found.
    """
    rows = _read_csv(path, "Behavior")
    if functional_category is not None:
        want = functional_category.strip().casefold()
        found = sorted({(r.get("FunctionalCategory") or "").strip() for r in rows})
        rows = [r for r in rows if (r.get("FunctionalCategory") or functional_category).strip().casefold() == want]
        if not rows:
            raise DataError(f"{path}: no row has FunctionalCategory '{functional_category}' "
                            f"(found: {', '.join(found)}; pass functional_category=None to keep all)")
    return validate_prompts([r["Behavior"] for r in rows], f"{path} (column 'Behavior', kept row)")


def load_jailbreakbench(path: str | Path) -> tuple[list[str], list[str]]:
    """JailbreakBench behaviors CSV (``Goal``, ``Category``): (goals, categories)."""
    return _csv_prompts(path, "Goal", "Category")  # type: ignore[return-value]


def load_alpaca(path: str | Path, limit: int | None = None, no_input_only: bool = True) -> list[str]:
    """Alpaca JSON (list of ``{instruction, input, output}``): harmless instructions.

    With ``no_input_only`` keep items with an empty ``input``; otherwise append
    the input to the instruction. ``limit`` (None for all, else at least 1) keeps the first ``limit`` of them.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"load_alpaca: limit must be None (all) or an integer >= 1, got {limit!r}")
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of Alpaca records, got {type(data).__name__}")
    _nonempty(data, str(path), "Alpaca records")
    out = []
    for i, rec in enumerate(data):
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(rec, dict) or "instruction" not in rec:
            raise DataError(f"{path}: item [{i}] has no 'instruction' field")
        instruction = _check_prompt(rec["instruction"], f"{path}: item [{i}] field 'instruction'")
        inp = rec.get("input")
        if inp is not None and not isinstance(inp, str):
            raise DataError(f"{path}: item [{i}] field 'input': expected a string, got {type(inp).__name__}")
        inp = (inp or "").strip()
        if no_input_only and inp:
            continue
        out.append(instruction + (f"\n\n{inp}" if inp else ""))
    if not out:
        raise DataError(f"{path}: no record without an 'input' (pass no_input_only=False to keep those)")
    return validate_prompts(out, f"{path} (kept instruction)")


def load_lines(path: str | Path) -> list[str]:
    """One prompt per line; blank lines are skipped, every other line is a prompt (a line starting with ``#``
    too: prompts have no comment syntax). Errors name the file's own line numbers."""
    path = Path(path)
    lines = enumerate(_read_text(path).splitlines(), start=1)
    out = _unique_prompts(((f"line {n}", line) for n, line in lines if line.strip()), str(path))
    _nonempty(out, str(path), "prompts (only blank lines)")
    return out
