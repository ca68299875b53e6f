"""What may cross the system's edges: the pure rules of its boundaries, each enforced where input arrives or a
file is written.

- Formula cells: a text cell a spreadsheet would evaluate (it begins with `=`, `+`, `-`, `@`, a tab or a carriage
  return; OWASP "CSV injection") gets a leading apostrophe in CSV. A plain negative number (`-1`, `-33.33`) is a
  number to a spreadsheet, not a formula, and stays as it is; decimal columns are never touched.
- Free text we store and later write into files (internal ids, PO numbers) is restricted at input to letters,
  digits and a few separators, starting with a letter or digit.
- Ids are checked with `fullmatch`: `re.match` with a `$` pattern accepts a trailing newline ("1234567\\n").
- JSON bodies: nesting depth is measured before the body is parsed (a deep body made the parser recurse).
- App settings a tenant may name for its client secret carry a fixed prefix, so a tenant cannot name the
  storage connection or the token signing key.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import PydanticCustomError

FORMULA_TRIGGERS = "=+-@\t\r"
_TRIGGER_BYTES = np.zeros(256, dtype=bool)
_TRIGGER_BYTES[np.frombuffer(FORMULA_TRIGGERS.encode(), dtype=np.uint8)] = True
_OFFSET, _LARGE_OFFSET, _LARGE = np.dtype(np.int32), np.dtype(np.int64), pa.large_string()
_TEXT = (pa.string(), _LARGE)
_PLAIN_NEGATIVE = r"^-[0-9]+(\.[0-9]+)?$"  # what a spreadsheet reads as a number, never as a formula
_PLAIN_NEGATIVE_RE = re.compile(_PLAIN_NEGATIVE)
# The same test as `is_formula_text`, as one RE2 pattern (no look-ahead there): a trigger other than "-", or a "-"
# that does not begin a plain number (nothing after it, a non-digit, or digits followed by anything else).
_FORMULA_START = r"^([=+@\t\r]|-$|-[^0-9]|-[0-9]+([^0-9.]|\.$|\.[^0-9]|\.[0-9]+[^0-9]))"


def is_formula_text(value: str | None) -> bool:
    """Whether a spreadsheet would evaluate this text cell (or treat it as the start of a formula)."""
    return bool(value) and value[0] in FORMULA_TRIGGERS and not _PLAIN_NEGATIVE_RE.fullmatch(value)


def neutralise_text(value: str) -> str:
    """One text cell made inert: a leading apostrophe (Excel and LibreOffice then show it as text)."""
    return "'" + value if is_formula_text(value) else value


def restore_text(value: str) -> str:
    """The text `neutralise_text` was given (for a file this app reads back, such as findings.csv)."""
    return value[1:] if value[:1] == "'" and is_formula_text(value[1:]) else value


def _may_hold_formulas(arr: pa.Array) -> bool:
    """Cheap screen over Arrow's buffers: is the first byte of any value a trigger? (~15 µs per 6,144 values, so
    the regular expressions below run only on the rare column that needs them.) An empty value's "first byte" is
    its neighbour's: at worst a needless exact check, never a missed one."""
    _, offsets_buf, data_buf = arr.buffers()
    if not data_buf or not len(arr):
        return False
    width = _LARGE_OFFSET if arr.type == _LARGE else _OFFSET
    starts = np.frombuffer(offsets_buf, dtype=width, count=len(arr), offset=arr.offset * width.itemsize)
    return bool(_TRIGGER_BYTES[np.frombuffer(data_buf, dtype=np.uint8).take(starts, mode="clip")].any())


def neutralise_formulas(arr: pa.Array) -> pa.Array:
    """A text column with every cell a spreadsheet would evaluate prefixed by an apostrophe (vectorised).
    Anything that is not text (decimals, dates as types) is returned unchanged."""
    if arr.type not in _TEXT or not _may_hold_formulas(arr):
        return arr
    mask = pc.fill_null(pc.match_substring_regex(arr, _FORMULA_START), False)
    prefixed = pc.binary_join_element_wise(pa.scalar("'", arr.type), arr, pa.scalar("", arr.type))
    return pc.if_else(mask, prefixed, arr)


# ---- free text we write into files ----------------------------------------------------------------------------

FILE_TEXT_PATTERN = r"^[\w][\w .,/#:()&+_-]{0,99}$"
FILE_TEXT_RE = re.compile(FILE_TEXT_PATTERN)
FILE_TEXT_RULE = ("at most 100 characters: letters, digits, spaces and . , / # : ( ) & + _ -, starting with a "
                  "letter or digit")


def check_file_text(value: str) -> str:
    """An internal id or PO number: text that ends up in every file's cells, so nothing a spreadsheet could run
    and no control characters (a pydantic AfterValidator: the error names the rule, pydantic the field)."""
    if not FILE_TEXT_RE.fullmatch(value):
        raise PydanticCustomError("file_text", f"must be {FILE_TEXT_RULE}")
    return value


# ---- ids --------------------------------------------------------------------------------------------------------

def full_match(pattern: str | re.Pattern[str], value: object) -> bool:
    """Whether the whole of `value` matches (never `re.match`, whose `$` also matches before a final newline)."""
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


def is_whole_number(value: object, digits: int = 9) -> bool:
    """ASCII digits only, and few enough for int(): `str.isdigit` accepts "²" (int() then fails) and int() refuses
    more than 4,300 digits, both of which were a 500."""
    return full_match(rf"[0-9]{{1,{digits}}}", value)


# ---- JSON bodies -------------------------------------------------------------------------------------------------

MAX_JSON_DEPTH = 32  # our request bodies nest three levels at most
# A JSON string (possibly unterminated: matched to the end, once) or one bracket; possessive, so linear time.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """The deepest bracket nesting of a JSON text, brackets inside strings ignored; measured without parsing
    (numpy over the bytes once the strings are blanked), so a hostile body costs milliseconds, not a stack."""
    blanked = _JSON_STRING.sub(b'""', body)
    if not blanked:
        return 0
    steps = _OPEN[np.frombuffer(blanked, dtype=np.uint8)]
    depth = np.cumsum(steps, dtype=np.int64)
    return int(depth.max()) if depth.size else 0


# ---- app settings a tenant may name ------------------------------------------------------------------------------

SECRET_SETTING_PREFIX = "PC_SECRET_"
SECRET_SETTING_PATTERN = r"^PC_SECRET_[A-Za-z0-9_]{1,118}$"


def is_secret_setting_name(name: object) -> bool:
    """Only settings made for Partner Center secrets may be named by a tenant (never AzureWebJobsStorage,
    TOKEN_SIGNING_KEY or any other app setting)."""
    return full_match(SECRET_SETTING_PATTERN, name)


def check_secret_setting_name(name: str) -> str:
    """A pydantic AfterValidator for `clientSecretSetting`: a 400 naming the field, and the rule, never whether
    such a setting exists."""
    if not is_secret_setting_name(name):
        raise PydanticCustomError(
            "secret_setting", f"must be the name of an app setting that starts with {SECRET_SETTING_PREFIX} "
                              "(then letters, digits or _): only those may hold a Partner Center client secret")
    return name
