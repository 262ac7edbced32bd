"""Go text/template for `--format`, over values decoded from JSON.

The language is Go's: text and {{actions}}, `{{- ` and ` -}}` trim markers,
comments, fields `.A.B`, variables `$x := ...` / `$x = ...`, pipelines
`a | f b`, parenthesised pipelines, `if`/`else if`/`with`/`else with`/`range`
(lists, maps in sorted key order, ints), `break`/`continue`, `define`,
`template` and `block`. Functions are Go's builtins (and or not len index
slice eq ne lt le gt ge print printf println html js urlquery) and docker's
(json split join title lower upper pad truncate).

Data is what `json.loads` gives: dict, list, str, int, float, bool, None.
A dict stands for a Go map: `.Key` looks the key up, and a missing key is an
error (Go's missingkey=error, what `docker inspect` uses on raw JSON) or, with
missingkey="default", prints "<no value>". Printing follows Go's fmt: None is
"<nil>", lists "[a b]", dicts "map[k:v]" in key order, floats as %v does
("1e+06"). `json` writes Go's encoding/json, HTML-escaped by default because
that is what `docker images --format '{{json .}}'` shows (docker's rows
marshal themselves with json.Marshal); pass escape_html=False for what the
bare `json` function does to inspect data.

Errors carry Go's wording, location and context, behind docker's prefix:
    template parsing error: template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"

Where Go's result hangs on static types that JSON does not keep, this picks
the common docker case: `index` of a missing key gives "" when the map holds
strings (labels) and None otherwise, `index` of None gives "", `len` of None
is 0, and functions that take strings refuse other values as Go does.
"""

from __future__ import annotations

from dockyard.cli.render import Table
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "NO_VALUE",
    "Template",
    "TemplateError",
    "format_rows",
    "go_quote",
    "go_sprint",
    "header_for",
    "is_table",
    "json_encode",
    "render",
]


class TemplateError(InvalidArgument):
    """A template that does not parse or does not execute.

    The message is docker's: "template parsing error: " + `detail`, where
    `detail` is Go's own text ("template: :1: unclosed action"). `docker
    inspect` words it "Template parsing error: ..." and can use `detail`.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("template parsing error: " + detail)
        self.detail = detail


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key gives by default."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: object = _NoValue()
_MISSING: object = object()  # "no value piped in from the previous command"


# --------------------------------------------------------------------------
# Go's fmt for JSON-shaped values


def go_type(value: object) -> str:
    """The Go type a JSON-decoded value would have, as %T prints it."""
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


_CONTROL_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
}


def go_quote(text: str, quote: str = '"', ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteRune with quote="'", QuoteToASCII with ascii_only)."""
    if text.isascii() and text.isprintable() and quote not in text and "\\" not in text:
        return quote + text + quote
    out = [quote]
    for char in text:
        code = ord(char)
        if char == quote or char == "\\":
            out.append("\\" + char)
        elif char.isprintable() and (code < 0x80 or not ascii_only):
            out.append(char)
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)


def _shortest(value: float) -> tuple[str, int]:
    """Shortest round-trip digits of abs(value) and the decimal point: 0.DIGITS x 10**dp."""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    stripped = stripped.rstrip("0")
    if not stripped:
        return "0", 1
    return stripped, point


def _fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _exponent(digits: str, point: int, letter: str = "e") -> str:
    exp = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}{letter}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _is_finite(value: float) -> bool:
    return value - value == 0.0


def _float_text(value: float, verb: str, prec: int | None) -> str:
    """abs(value) as Go's %v %g %G %e %E %f %F do (no sign, finite only)."""
    magnitude = abs(value)
    if verb in "vgG" and prec is None:
        digits, point = _shortest(magnitude)
        exp = point - 1
        if exp < -4 or exp >= 6:  # Go: %e when the exponent is < -4 or >= 6 (shortest)
            return _exponent(digits, point, "E" if verb == "G" else "e")
        return _fixed(digits, point)
    if verb in "vgG":
        text = f"{magnitude:.{prec}g}"
        return text.upper() if verb == "G" else text
    if verb in "eE":
        text = f"{magnitude:.{6 if prec is None else prec}e}"
        return text.upper() if verb == "E" else text
    return f"{magnitude:.{6 if prec is None else prec}f}"


def _float_v(value: float) -> str:
    if not _is_finite(value):
        return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    text = _float_text(value, "v", None)
    return "-" + text if value < 0 or (value == 0 and repr(value)[0] == "-") else text


def _sorted_keys(mapping: dict[object, object]) -> list[object]:
    try:
        return sorted(mapping)  # type: ignore[type-var]
    except TypeError:
        return sorted(mapping, key=lambda key: (go_type(key), go_sprint(key)))


def go_sprint(value: object) -> str:
    """fmt.Sprint of one value: what {{.}} prints."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_v(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_sprint(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(
            f"{go_sprint(key)}:{go_sprint(value[key])}" for key in _sorted_keys(value)
        ) + "]"
    if value is NO_VALUE:
        return "<no value>"
    return str(value)


def _sprint(args: tuple[object, ...]) -> str:
    """fmt.Sprint: a space between two operands when neither is a string."""
    out: list[str] = []
    previous_string = False
    for index, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if index and not is_string and not previous_string:
            out.append(" ")
        out.append(go_sprint(arg))
        previous_string = is_string
    return "".join(out)


def _sprintln(args: tuple[object, ...]) -> str:
    return " ".join(go_sprint(arg) for arg in args) + "\n"


class _Spec:
    __slots__ = ("minus", "plus", "prec", "sharp", "space", "width", "zero")

    def __init__(self) -> None:
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.width: int | None = None
        self.prec: int | None = None


def _pad(text: str, spec: _Spec) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    if spec.minus:
        return text.ljust(spec.width)
    return text.rjust(spec.width, "0" if spec.zero else " ")


def _pad_spaces(text: str, spec: _Spec) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    return text.ljust(spec.width) if spec.minus else text.rjust(spec.width)


def _pad_number(negative: bool, body: str, spec: _Spec, zero_ok: bool = True) -> str:
    sign = "-" if negative else "+" if spec.plus else " " if spec.space else ""
    if spec.zero and zero_ok and spec.width is not None and not spec.minus:
        body = body.rjust(spec.width - len(sign), "0")
    return _pad_spaces(sign + body, spec)


def _bad_verb(arg: object, verb: str) -> str:
    if arg is None or arg is NO_VALUE:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(arg)}={go_sprint(arg)})"


def _fmt_int(value: int, spec: _Spec, verb: str) -> str:
    if verb == "c":
        return _pad(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd", spec)
    if verb == "q":
        return _pad(go_quote(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd", "'"), spec)
    if verb == "U":
        text = f"U+{value:04X}"
        if spec.sharp and 0 <= value <= 0x10FFFF and chr(value).isprintable():
            text += f" '{chr(value)}'"
        return _pad(text, spec)
    base = {"v": "d", "d": "d", "b": "b", "o": "o", "O": "o", "x": "x", "X": "X"}.get(verb)
    if base is None:
        return _bad_verb(value, verb)
    digits = format(abs(value), base)
    if spec.prec is not None:
        digits = "" if spec.prec == 0 and value == 0 else digits.rjust(spec.prec, "0")
    prefix = ""
    if verb == "O":
        prefix = "0o"
    elif spec.sharp:
        prefix = {"b": "0b", "x": "0x", "X": "0X"}.get(verb, "0" if verb == "o" else "")
        if prefix == "0" and digits.startswith("0"):
            prefix = ""
    return _pad_number(value < 0, prefix + digits, spec, zero_ok=spec.prec is None)


def _fmt_float(value: float, spec: _Spec, verb: str) -> str:
    if verb not in "vgGeEfF":
        return _bad_verb(value, verb)
    if value != value:
        return _pad_spaces(("+" if spec.plus else " " if spec.space else "") + "NaN", spec)
    if not _is_finite(value):
        return _pad_spaces(("-" if value < 0 else "+") + "Inf", spec)
    negative = value < 0 or (value == 0 and repr(value)[0] == "-")
    return _pad_number(negative, _float_text(value, verb, spec.prec), spec)


def _fmt_str(value: str, spec: _Spec, verb: str) -> str:
    if verb in "vs":
        return _pad(value if spec.prec is None else value[: spec.prec], spec)
    if verb == "q":
        text = value if spec.prec is None else value[: spec.prec]
        if spec.sharp and "`" not in text and all(c == "\t" or c.isprintable() for c in text):
            return _pad("`" + text + "`", spec)
        return _pad(go_quote(text, ascii_only=spec.plus), spec)
    if verb in "xX":
        data = value.encode("utf-8", "surrogatepass")
        if spec.prec is not None:
            data = data[: spec.prec]
        prefix = ("0X" if verb == "X" else "0x") if spec.sharp else ""
        pieces = [f"{byte:02X}" if verb == "X" else f"{byte:02x}" for byte in data]
        if spec.space:
            return _pad(" ".join(prefix + piece for piece in pieces), spec)
        return _pad(prefix + "".join(pieces), spec)
    return _bad_verb(value, verb)


def _go_syntax(value: object) -> str:
    """%#v for JSON-shaped values."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, (list, tuple)):
        return "[]interface {}{" + ", ".join(_go_syntax(item) for item in value) + "}"
    if isinstance(value, dict):
        return "map[string]interface {}{" + ", ".join(
            f"{_go_syntax(key)}:{_go_syntax(value[key])}" for key in _sorted_keys(value)
        ) + "}"
    if value is None or value is NO_VALUE:
        return "interface {}(nil)"
    return go_sprint(value)


def _fmt_arg(arg: object, spec: _Spec, verb: str) -> str:
    if verb == "T":
        return _pad(go_type(arg), spec)
    if verb == "v" and spec.sharp:
        return _pad(_go_syntax(arg), spec)
    if arg is None or arg is NO_VALUE:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(arg, verb)
    if isinstance(arg, bool):
        return _pad("true" if arg else "false", spec) if verb in "tv" else _bad_verb(arg, verb)
    if isinstance(arg, int):
        return _fmt_int(arg, spec, verb)
    if isinstance(arg, float):
        return _fmt_float(arg, spec, verb)
    if isinstance(arg, str):
        return _fmt_str(arg, spec, verb)
    if isinstance(arg, (list, tuple)):
        return "[" + " ".join(_fmt_arg(item, spec, verb) for item in arg) + "]"
    if isinstance(arg, dict):
        return "map[" + " ".join(
            f"{_fmt_arg(key, spec, verb)}:{_fmt_arg(arg[key], spec, verb)}"
            for key in _sorted_keys(arg)
        ) + "]"
    return _pad(str(arg), spec)


def _star(args: tuple[object, ...], index: int) -> tuple[int | None, int]:
    if index < len(args):
        value = args[index]
        if isinstance(value, int) and not isinstance(value, bool):
            return value, index + 1
        return None, index + 1
    return None, index


def _sprintf(fmt: str, args: tuple[object, ...]) -> str:
    """fmt.Sprintf: flags #0+- and space, width and precision (or *), Go's verbs."""
    out: list[str] = []
    argi = 0
    i = 0
    end = len(fmt)
    while i < end:
        percent = fmt.find("%", i)
        if percent < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:percent])
        i = percent + 1
        spec = _Spec()
        while i < end and fmt[i] in "#0+- ":
            flag = fmt[i]
            if flag == "#":
                spec.sharp = True
            elif flag == "0":
                spec.zero = not spec.minus
            elif flag == "+":
                spec.plus = True
            elif flag == "-":
                spec.minus, spec.zero = True, False
            else:
                spec.space = True
            i += 1
        if i < end and fmt[i] == "*":
            i += 1
            spec.width, argi = _star(args, argi)
            if spec.width is None:
                out.append("%!(BADWIDTH)")
            elif spec.width < 0:
                spec.width, spec.minus, spec.zero = -spec.width, True, False
        else:
            start = i
            while i < end and "0" <= fmt[i] <= "9":
                i += 1
            if i > start:
                spec.width = int(fmt[start:i])
        if i < end and fmt[i] == ".":
            i += 1
            if i < end and fmt[i] == "*":
                i += 1
                spec.prec, argi = _star(args, argi)
                if spec.prec is None or spec.prec < 0:
                    spec.prec = None
                    out.append("%!(BADPREC)")
            else:
                start = i
                while i < end and "0" <= fmt[i] <= "9":
                    i += 1
                spec.prec = int(fmt[start:i]) if i > start else 0
        if i >= end:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
        elif argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_fmt_arg(args[argi], spec, verb))
            argi += 1
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if arg is None else f"{go_type(arg)}={go_sprint(arg)}" for arg in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --------------------------------------------------------------------------
# Go's encoding/json


_JSON_TABLE: dict[int, str] = {}
_JSON_HTML = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


def _json_table() -> dict[int, str]:
    if not _JSON_TABLE:
        for code in range(0x20):
            _JSON_TABLE[code] = f"\\u{code:04x}"
        _JSON_TABLE.update({
            ord("\b"): "\\b", ord("\f"): "\\f", ord("\n"): "\\n", ord("\r"): "\\r",
            ord("\t"): "\\t", ord('"'): '\\"', ord("\\"): "\\\\",
            0x2028: "\\u2028", 0x2029: "\\u2029",
        })
        for code in range(0xD800, 0xE000):  # lone surrogates: Go writes invalid UTF-8 as U+FFFD
            _JSON_TABLE[code] = "\\ufffd"
    return _JSON_TABLE


def _json_string(text: str, escape_html: bool) -> str:
    if (
        text.isascii()
        and text.isprintable()
        and '"' not in text
        and "\\" not in text
        and not (escape_html and ("<" in text or ">" in text or "&" in text))
    ):
        return '"' + text + '"'
    table = _json_table()
    text = text.translate(table)
    if escape_html:
        text = text.translate(_JSON_HTML)
    return '"' + text + '"'


def _json_float(value: float) -> str:
    if not _is_finite(value):
        raise _CallError(f"json: unsupported value: {_float_v(value)}")
    negative = value < 0 or (value == 0 and repr(value)[0] == "-")
    digits, point = _shortest(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = _exponent(digits, point)
        if text[-4:-1] == "e-0":  # Go trims e-07 to e-7
            text = text[:-2] + text[-1]
    else:
        text = _fixed(digits, point)
    return "-" + text if negative else text


def _json_into(value: object, out: list[str], escape_html: bool) -> None:
    if isinstance(value, str):
        out.append(_json_string(value, escape_html))
    elif value is None or value is NO_VALUE:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_json_float(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_json_string(key if isinstance(key, str) else go_sprint(key), escape_html))
            out.append(":")
            _json_into(item, out, escape_html)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _json_into(item, out, escape_html)
        out.append("]")
    else:
        raise _CallError(f"json: unsupported type: {go_type(value)}")


def json_encode(value: object, escape_html: bool = True) -> str:
    """Go's json.Marshal of a JSON-shaped value: compact, keys in dict order.

    With escape_html, < > & are written \\u003c \\u003e \\u0026, as
    json.Marshal does. Raises ValueError for NaN, infinities and other types.
    """
    out: list[str] = []
    try:
        _json_into(value, out, escape_html)
    except _CallError as err:
        raise ValueError(str(err)) from None
    return "".join(out)


# --------------------------------------------------------------------------
# Lexer

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(
    ("block", "break", "continue", "define", "else", "end", "if", "range", "template", "with")
)

# token kinds
_TEXT, _LEFT, _RIGHT, _SPACE_T, _EOF = "text", "{{", "}}", "space", "EOF"
_FIELD, _VAR, _DOT, _IDENT, _KEYWORD = "field", "variable", "dot", "identifier", "keyword"
_STRING, _RAWSTRING, _CHARCONST, _NUMBER = "string", "raw string", "char constant", "number"
_BOOL, _NIL, _PIPE, _LPAREN, _RPAREN = "bool", "nil", "|", "(", ")"
_DECLARE, _ASSIGN, _CHAR = ":=", "=", "char"


class _Tok:
    __slots__ = ("kind", "pos", "val")

    def __init__(self, kind: str, val: str, pos: int) -> None:
        self.kind = kind
        self.val = val
        self.pos = pos

    def __str__(self) -> str:  # Go's item.String, for "unexpected X in Y"
        if self.kind == _EOF:
            return "EOF"
        if self.kind == _KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def _is_alnum(char: str) -> bool:
    return char == "_" or char.isalpha() or char.isdigit()


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _parse_error(text: str, pos: int, message: str) -> TemplateError:
    return TemplateError(f"template: :{_line_of(text, pos)}: {message}")


def _char_name(char: str) -> str:  # Go's %#U
    code = f"U+{ord(char):04X}"
    return f"{code} {go_quote(char, chr(39))}" if char.isprintable() else code


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = []

    def error(self, pos: int, message: str) -> TemplateError:
        return _parse_error(self.text, pos, message)

    def run(self) -> list[_Tok]:
        text, toks = self.text, self.toks
        pos, end = 0, len(text)
        while True:
            start = text.find("{{", pos)
            if start < 0:
                if pos < end:
                    toks.append(_Tok(_TEXT, text[pos:], pos))
                break
            chunk = text[pos:start]
            inner = start + 2
            if text.startswith("-", inner) and inner + 1 < end and text[inner + 1] in _SPACE:
                chunk = chunk.rstrip(_SPACE)
                inner += 2
            if chunk:
                toks.append(_Tok(_TEXT, chunk, pos))
            if text.startswith("/*", inner):
                close = text.find("*/", inner + 2)
                if close < 0:
                    raise self.error(start, "unclosed comment")
                after = close + 2
                if text.startswith("}}", after):
                    pos = after + 2
                elif after < end and text[after] in _SPACE and text.startswith("-}}", after + 1):
                    pos = self.skip_space(after + 4)
                else:
                    raise self.error(start, "comment ends before closing delimiter")
                continue
            toks.append(_Tok(_LEFT, "{{", start))
            pos, trim = self.action(inner)
            if trim:
                pos = self.skip_space(pos)
        toks.append(_Tok(_EOF, "", end))
        return toks

    def skip_space(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] in _SPACE:
            pos += 1
        return pos

    def at_terminator(self, pos: int) -> bool:
        if pos >= len(self.text):
            return True
        return self.text[pos] in _SPACE + ".,|:)(" or self.text.startswith("}}", pos)

    def action(self, pos: int) -> tuple[int, bool]:
        text, toks = self.text, self.toks
        end = len(text)
        depth = 0
        while True:
            plain = text.startswith("}}", pos)
            if plain or (pos < end and text[pos] in _SPACE and text.startswith("-}}", pos + 1)):
                if depth:
                    raise self.error(pos, "unclosed left paren")
                toks.append(_Tok(_RIGHT, "}}", pos if plain else pos + 2))
                return (pos + 2, False) if plain else (pos + 4, True)
            if pos >= end:
                raise self.error(pos, "unclosed action")
            char = text[pos]
            if char in _SPACE:
                start = pos
                while pos < end and text[pos] in _SPACE and not text.startswith("-}}", pos + 1):
                    pos += 1
                if pos > start:
                    toks.append(_Tok(_SPACE_T, text[start:pos], start))
                continue
            if char == "|":
                toks.append(_Tok(_PIPE, char, pos))
                pos += 1
            elif char == "(":
                depth += 1
                toks.append(_Tok(_LPAREN, char, pos))
                pos += 1
            elif char == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(pos, "unexpected right paren")
                toks.append(_Tok(_RPAREN, char, pos))
                pos += 1
            elif char == ":":
                if not text.startswith("=", pos + 1):
                    raise self.error(pos, "expected :=")
                toks.append(_Tok(_DECLARE, ":=", pos))
                pos += 2
            elif char == "=":
                toks.append(_Tok(_ASSIGN, char, pos))
                pos += 1
            elif char == '"' or char == "'":
                pos = self.quoted(pos, char)
            elif char == "`":
                close = text.find("`", pos + 1)
                if close < 0:
                    raise self.error(pos, "unterminated raw quoted string")
                toks.append(_Tok(_RAWSTRING, text[pos : close + 1], pos))
                pos = close + 1
            elif char == "$" or (char == "." and not text[pos + 1 : pos + 2].isdigit()):
                pos = self.field_or_variable(pos, char)
            elif char in "+-." or "0" <= char <= "9":
                pos = self.number(pos)
            elif _is_alnum(char):
                start = pos
                while pos < end and _is_alnum(text[pos]):
                    pos += 1
                if not self.at_terminator(pos):
                    raise self.error(pos, f"bad character {_char_name(text[pos])}")
                word = text[start:pos]
                if word in _KEYWORDS:
                    kind = _KEYWORD
                elif word in ("true", "false"):
                    kind = _BOOL
                else:
                    kind = _NIL if word == "nil" else _IDENT
                toks.append(_Tok(kind, word, start))
            elif char.isascii() and char.isprintable():
                toks.append(_Tok(_CHAR, char, pos))
                pos += 1
            else:
                raise self.error(pos, f"unrecognized character in action: {_char_name(char)}")

    def quoted(self, pos: int, quote: str) -> int:
        text = self.text
        i = pos + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                what = "quoted string" if quote == '"' else "character constant"
                raise self.error(pos, f"unterminated {what}")
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                break
            i += 1
        self.toks.append(_Tok(_STRING if quote == '"' else _CHARCONST, text[pos : i + 1], pos))
        return i + 1

    def field_or_variable(self, pos: int, sigil: str) -> int:
        text = self.text
        i = pos + 1
        while i < len(text) and _is_alnum(text[i]):
            i += 1
        if not self.at_terminator(i):
            raise self.error(i, f"bad character {_char_name(text[i])}")
        if sigil == "$":
            self.toks.append(_Tok(_VAR, text[pos:i], pos))
        else:
            self.toks.append(_Tok(_FIELD if i > pos + 1 else _DOT, text[pos:i], pos))
        return i

    def number(self, pos: int) -> int:
        """Go's scanNumber: sign, 0x/0o/0b, digits with _, fraction, exponent, i."""
        text = self.text
        end = len(text)
        i = pos

        def accept(valid: str) -> bool:
            nonlocal i
            if i < end and text[i] in valid:
                i += 1
                return True
            return False

        def accept_run(valid: str) -> None:
            while accept(valid):
                pass

        accept("+-")
        digits = "0123456789_"
        if accept("0"):
            if accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif accept("oO"):
                digits = "01234567_"
            elif accept("bB"):
                digits = "01_"
        accept_run(digits)
        if accept("."):
            accept_run(digits)
        if len(digits) == 11 and accept("eE"):
            accept("+-")
            accept_run("0123456789_")
        if len(digits) == 23 and accept("pP"):
            accept("+-")
            accept_run("0123456789_")
        accept("i")
        if i < end and _is_alnum(text[i]):
            raise self.error(pos, f"bad number syntax: {go_quote(text[pos : i + 1])}")
        self.toks.append(_Tok(_NUMBER, text[pos:i], pos))
        return i


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"', "'": "'",
}


def _unquote(quoted: str) -> str:
    """strconv.Unquote for "...", `...` and '...'. Raises ValueError."""
    quote, body = quoted[0], quoted[1:-1]
    if quote == "`":
        return body.replace("\r", "")
    if "\\" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8", "surrogatepass")
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        if esc in _SIMPLE_ESCAPES and esc != ("'" if quote == '"' else '"'):
            out += _SIMPLE_ESCAPES[esc].encode()
            i += 2
        elif esc == "x":
            out.append(int(_hex(body[i + 2 : i + 4], 2), 16))
            i += 4
        elif esc and esc in "01234567":
            value = int(body[i + 1 : i + 4], 8)
            if len(body[i + 1 : i + 4]) != 3 or value > 255:
                raise ValueError(quoted)
            out.append(value)
            i += 4
        elif esc in ("u", "U"):
            size = 4 if esc == "u" else 8
            code = int(_hex(body[i + 2 : i + 2 + size], size), 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(quoted)
            out += chr(code).encode()
            i += 2 + size
        else:
            raise ValueError(quoted)
    return out.decode("utf-8", "replace")


def _hex(digits: str, size: int) -> str:
    if len(digits) != size or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(digits)
    return digits


# --------------------------------------------------------------------------
# Parse tree


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _List(_Node):
    __slots__ = ("nodes",)

    def __init__(self, pos: int, nodes: list[_Node] | None = None) -> None:
        super().__init__(pos)
        self.nodes: list[_Node] = nodes if nodes is not None else []

    def __str__(self) -> str:
        return "".join(str(node) for node in self.nodes)


class _Field(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: list[str]) -> None:
        super().__init__(pos)
        self.idents = idents

    def __str__(self) -> str:
        return "".join("." + ident for ident in self.idents)


class _Variable(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: list[str]) -> None:
        super().__init__(pos)
        self.idents = idents

    def __str__(self) -> str:
        return ".".join(self.idents)


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name


class _Dot(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class _Nil(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class _Bool(_Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: bool) -> None:
        super().__init__(pos)
        self.value = value

    def __str__(self) -> str:
        return "true" if self.value else "false"


class _Number(_Node):
    __slots__ = ("ideal", "int_value", "text")

    def __init__(self, pos: int, text: str, int_value: int | None, ideal: int | float) -> None:
        super().__init__(pos)
        self.text = text
        self.int_value = int_value
        self.ideal = ideal

    def __str__(self) -> str:
        return self.text


class _String(_Node):
    __slots__ = ("quoted", "text")

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        super().__init__(pos)
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({arg})" if isinstance(arg, _Pipe) else str(arg) for arg in self.args)


class _Pipe(_Node):
    __slots__ = ("cmds", "decl", "is_assign")

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.decl: list[_Variable] = []
        self.is_assign = False
        self.cmds: list[_Command] = []

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(cmd) for cmd in self.cmds)


class _Chain(_Node):
    __slots__ = ("fields", "node")

    def __init__(self, pos: int, node: _Node, fields: list[str]) -> None:
        super().__init__(pos)
        self.node = node
        self.fields = fields

    def __str__(self) -> str:
        head = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return head + "".join("." + field for field in self.fields)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _Branch(_Node):
    """if, with and range."""

    __slots__ = ("else_list", "keyword", "list", "pipe")

    def __init__(
        self, keyword: str, pipe: _Pipe, body: _List, else_list: _List | None
    ) -> None:
        super().__init__(pipe.pos)
        self.keyword = keyword
        self.pipe = pipe
        self.list = body
        self.else_list = else_list

    def __str__(self) -> str:
        tail = "" if self.else_list is None else "{{else}}" + str(self.else_list)
        return f"{{{{{self.keyword} {self.pipe}}}}}{self.list}{tail}{{{{end}}}}"


class _Keyword(_Node):
    """{{end}}, {{else}}, {{break}} and {{continue}}."""

    __slots__ = ("word",)

    def __init__(self, pos: int, word: str) -> None:
        super().__init__(pos)
        self.word = word

    def __str__(self) -> str:
        return "{{" + self.word + "}}"


class _Call(_Node):
    """{{template "name" pipeline}}."""

    __slots__ = ("name", "pipe")

    def __init__(self, pos: int, name: str, pipe: _Pipe | None) -> None:
        super().__init__(pos)
        self.name = name
        self.pipe = pipe

    def __str__(self) -> str:
        tail = "" if self.pipe is None else " " + str(self.pipe)
        return "{{template " + go_quote(self.name) + tail + "}}"


# --------------------------------------------------------------------------
# Parser: a port of text/template/parse's recursive descent


_OPERAND_START = frozenset(
    (_BOOL, _CHARCONST, _DOT, _FIELD, _IDENT, _NUMBER, _NIL, _RAWSTRING, _STRING, _VAR, _LPAREN)
)


class _Parser:
    def __init__(self, text: str, functions: frozenset[str]) -> None:
        self.text = text
        self.toks = _Lexer(text).run()
        self.i = 0
        self.functions = functions
        self.vars = ["$"]
        self.range_depth = 0
        self.defs: dict[str, _List] = {}

    # token stream -------------------------------------------------------
    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != _EOF:
            self.i += 1
        return tok

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next_non_space(self) -> _Tok:
        tok = self.next()
        while tok.kind == _SPACE_T:
            tok = self.next()
        return tok

    def peek_non_space(self) -> _Tok:
        tok = self.next_non_space()
        if tok.kind != _EOF:
            self.backup()
        return tok

    def error(self, message: str) -> TemplateError:
        tok = self.toks[max(self.i - 1, 0)]
        return _parse_error(self.text, tok.pos, message)

    def unexpected(self, tok: _Tok, context: str) -> TemplateError:
        return self.error(f"unexpected {tok} in {context}")

    def expect(self, kind: str, context: str) -> _Tok:
        tok = self.next_non_space()
        if tok.kind != kind:
            raise self.unexpected(tok, context)
        return tok

    # structure ----------------------------------------------------------
    def parse(self) -> _List:
        root = _List(0)
        while self.peek().kind != _EOF:
            if self.peek().kind == _LEFT:
                save = self.i
                self.next()
                tok = self.next_non_space()
                if tok.kind == _KEYWORD and tok.val == "define":
                    self.definition()
                    continue
                self.i = save
            node = self.text_or_action()
            if isinstance(node, _Keyword) and node.word in ("end", "else"):
                raise self.error(f"unexpected {node}")
            root.nodes.append(node)
        return root

    def definition(self) -> None:
        context = "define clause"
        name = self.template_name(self.next_non_space(), context)
        self.expect(_RIGHT, context)
        body, end = self.sub_tree()
        if end.word != "end":
            raise self.error(f"unexpected {end} in {context}")
        self.defs[name] = body

    def sub_tree(self) -> tuple[_List, _Keyword]:
        """A define or block body: a tree of its own, with no outer variables."""
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        try:
            return self.item_list()
        finally:
            self.vars, self.range_depth = saved_vars, saved_depth

    def item_list(self) -> tuple[_List, _Keyword]:
        body = _List(self.peek_non_space().pos)
        while self.peek_non_space().kind != _EOF:
            node = self.text_or_action()
            if isinstance(node, _Keyword) and node.word in ("end", "else"):
                return body, node
            body.nodes.append(node)
        raise self.error("unexpected EOF")

    def text_or_action(self) -> _Node:
        tok = self.next_non_space()
        if tok.kind == _TEXT:
            return _Text(tok.pos, tok.val)
        if tok.kind == _LEFT:
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> _Node:
        tok = self.next_non_space()
        if tok.kind == _KEYWORD:
            word = tok.val
            if word in ("if", "with", "range"):
                return self.control(word)
            if word == "end":
                return _Keyword(self.expect(_RIGHT, "end").pos, "end")
            if word == "else":
                return self.else_control()
            if word in ("break", "continue"):
                after = self.next_non_space()
                if after.kind != _RIGHT:
                    raise self.unexpected(after, "{{" + word + "}}")
                if not self.range_depth:
                    raise self.error(f"{{{{{word}}}}} outside {{{{range}}}}")
                return _Keyword(tok.pos, word)
            if word == "template":
                return self.template_call()
            if word == "block":
                return self.block()
        self.backup()
        start = self.peek()
        return _Action(start.pos, self.pipeline("command", _RIGHT))

    def control(self, keyword: str) -> _Branch:
        mark = len(self.vars)
        pipe = self.pipeline(keyword, _RIGHT)
        if keyword == "range":
            self.range_depth += 1
        body, nxt = self.item_list()
        if keyword == "range":
            self.range_depth -= 1
        else_list = None
        if nxt.word == "else":
            peek = self.peek()
            if keyword in ("if", "with") and peek.kind == _KEYWORD and peek.val == keyword:
                self.next()
                else_list = _List(nxt.pos, [self.control(keyword)])
            else:
                else_list, nxt = self.item_list()
                if nxt.word != "end":
                    raise self.error(f"expected end; found {nxt}")
        del self.vars[mark:]
        return _Branch(keyword, pipe, body, else_list)

    def else_control(self) -> _Keyword:
        peek = self.peek_non_space()
        if peek.kind == _KEYWORD and peek.val in ("if", "with"):
            return _Keyword(peek.pos, "else")
        return _Keyword(self.expect(_RIGHT, "else").pos, "else")

    def template_name(self, tok: _Tok, context: str) -> str:
        if tok.kind not in (_STRING, _RAWSTRING):
            raise self.unexpected(tok, context)
        try:
            return _unquote(tok.val)
        except ValueError:
            raise self.error("invalid syntax") from None

    def template_call(self) -> _Call:
        context = "template clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = None
        if self.next_non_space().kind != _RIGHT:
            self.backup()
            pipe = self.pipeline(context, _RIGHT)
        return _Call(tok.pos, name, pipe)

    def block(self) -> _Call:
        context = "block clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = self.pipeline(context, _RIGHT)
        body, end = self.sub_tree()
        if end.word != "end":
            raise self.error(f"unexpected {end} in {context}")
        self.defs[name] = body
        return _Call(tok.pos, name, pipe)

    # pipelines ----------------------------------------------------------
    def pipeline(self, context: str, end: str) -> _Pipe:
        pipe = _Pipe(self.peek_non_space().pos)
        while True:  # declarations
            var = self.peek_non_space()
            if var.kind != _VAR:
                break
            self.next()
            after_var = self.i
            nxt = self.peek_non_space()
            if nxt.kind in (_DECLARE, _ASSIGN):
                pipe.is_assign = nxt.kind == _ASSIGN
                self.next_non_space()
                pipe.decl.append(_Variable(var.pos, [var.val]))
                self.vars.append(var.val)
                break
            if nxt.kind == _CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(_Variable(var.pos, [var.val]))
                self.vars.append(var.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in (_VAR, _RIGHT, _RPAREN):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.i = after_var - 1
            break
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self.check_pipeline(pipe, context)
                return pipe
            if tok.kind not in _OPERAND_START:
                raise self.unexpected(tok, context)
            self.backup()
            pipe.cmds.append(self.command())

    def check_pipeline(self, pipe: _Pipe, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for stage, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], (_Bool, _Dot, _Nil, _Number, _String)):
                raise self.error(f"non executable command in pipeline stage {stage}")

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind == _SPACE_T:
                continue
            if tok.kind in (_RIGHT, _RPAREN):
                self.backup()
            elif tok.kind != _PIPE:
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None or self.peek().kind != _FIELD:
            return node
        pos = self.peek().pos
        fields: list[str] = []
        while self.peek().kind == _FIELD:
            fields.append(self.next().val[1:])
        if isinstance(node, _Field):
            return _Field(pos, node.idents + fields)
        if isinstance(node, _Variable):
            return _Variable(pos, node.idents + fields)
        if isinstance(node, (_Bool, _String, _Number, _Nil, _Dot)):
            raise self.error(f"unexpected . after term {go_quote(str(node))}")
        return _Chain(pos, node, fields)

    def term(self) -> _Node | None:
        tok = self.next_non_space()
        kind = tok.kind
        if kind == _IDENT:
            if tok.val not in self.functions:
                raise self.error(f"function {go_quote(tok.val)} not defined")
            return _Ident(tok.pos, tok.val)
        if kind == _DOT:
            return _Dot(tok.pos)
        if kind == _NIL:
            return _Nil(tok.pos)
        if kind == _VAR:
            if tok.val not in self.vars:
                raise self.error(f"undefined variable {go_quote(tok.val)}")
            return _Variable(tok.pos, [tok.val])
        if kind == _FIELD:
            return _Field(tok.pos, [tok.val[1:]])
        if kind == _BOOL:
            return _Bool(tok.pos, tok.val == "true")
        if kind in (_NUMBER, _CHARCONST):
            return self.number(tok)
        if kind == _LPAREN:
            return self.pipeline("parenthesized pipeline", _RPAREN)
        if kind in (_STRING, _RAWSTRING):
            try:
                return _String(tok.pos, tok.val, _unquote(tok.val))
            except ValueError:
                raise self.error("invalid syntax") from None
        self.backup()
        return None

    def number(self, tok: _Tok) -> _Number:
        text = tok.val
        if tok.kind == _CHARCONST:
            try:
                rune = _unquote(text)
            except ValueError:
                raise self.error("invalid syntax") from None
            if len(rune) != 1:
                raise self.error(f"malformed character constant: {text}")
            return _Number(tok.pos, text, ord(rune), ord(rune))
        if text.endswith("i"):
            raise self.error(f"complex constant {text} is not supported")
        body = text.lstrip("+-")
        negative = text.startswith("-")
        int_value: int | None = None
        try:
            if body[:2].lower() in ("0x", "0o", "0b") and not (
                body[:2].lower() == "0x" and "p" in body.lower()
            ):
                int_value = int(body, 0)
            elif len(body) > 1 and body[0] == "0" and body.replace("_", "").isdigit():
                int_value = int(body, 8)
            else:
                int_value = int(body, 10)
            if negative:
                int_value = -int_value
        except ValueError:
            int_value = None
        if int_value is not None:
            return _Number(tok.pos, text, int_value, int_value)
        try:
            if body[:2].lower() == "0x":
                value = float.fromhex(body.replace("_", ""))
            else:
                value = float(body)
        except ValueError:
            raise self.error(f"illegal number syntax: {go_quote(text)}") from None
        value = -value if negative else value
        integral = _is_finite(value) and value == int(value)
        return _Number(tok.pos, text, int(value) if integral else None, value)


# --------------------------------------------------------------------------
# Functions


class _CallError(Exception):
    """A function failed: becomes "error calling NAME: MESSAGE"."""


class _Func:
    __slots__ = ("call", "params", "short_circuit", "variadic")

    def __init__(
        self,
        call: Callable[..., object],
        params: tuple[str, ...],
        variadic: str | None = None,
        short_circuit: bool = False,
    ) -> None:
        self.call = call  # called as call(exec_state, *args)
        self.params = params  # "any", "str" or "int" per fixed parameter
        self.variadic = variadic
        self.short_circuit = short_circuit

    def kind_at(self, index: int) -> str:
        if index < len(self.params):
            return self.params[index]
        return self.variadic or "any"


def _truth(value: object) -> bool:
    """Go's isTrue: false, 0, "", nil and empty lists and maps are false."""
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def _basic_kind(value: object) -> str:
    if value is None or value is NO_VALUE:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(_: _Exec, first: object, *others: object) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    kind = _basic_kind(first)
    for other in others:
        other_kind = _basic_kind(other)
        if kind != other_kind:
            if kind != "nil" and other_kind != "nil":
                raise _CallError("incompatible types for comparison")
            continue
        if kind == "other":
            raise _CallError(f"non-comparable type {go_sprint(other)}: {go_type(other)}")
        if kind == "nil" or first == other:
            return True
    return False


def _ne(state: _Exec, first: object, second: object) -> bool:
    return not _eq(state, first, second)


def _lt(_: _Exec, first: object, second: object) -> bool:
    kinds = (_basic_kind(first), _basic_kind(second))
    for kind in kinds:
        if kind in ("nil", "other"):
            raise _CallError("invalid type for comparison")
    if kinds[0] != kinds[1]:
        raise _CallError("incompatible types for comparison")
    if kinds[0] == "bool":
        raise _CallError("invalid type for comparison")
    return bool(first < second)  # type: ignore[operator]


def _le(state: _Exec, first: object, second: object) -> bool:
    return _lt(state, first, second) or _eq(state, first, second)


def _gt(state: _Exec, first: object, second: object) -> bool:
    return not _le(state, first, second)


def _ge(state: _Exec, first: object, second: object) -> bool:
    return not _lt(state, first, second)


def _not(_: _Exec, value: object) -> bool:
    return not _truth(value)


def _len(_: _Exec, value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    if value is None or value is NO_VALUE:
        return 0  # a nil slice or map, as docker's typed data would have it
    raise _CallError(f"len of type {go_type(value)}")


def _position(index: object, size: int, what: str) -> int:
    if index is None or index is NO_VALUE:
        raise _CallError(f"cannot index {what} with nil")
    if not isinstance(index, int) or isinstance(index, bool):
        raise _CallError(f"cannot index {what} with type {go_type(index)}")
    if index < 0 or index > size:
        raise _CallError(f"index out of range: {index}")
    return index


def _map_zero(mapping: dict[object, object]) -> object:
    return "" if all(isinstance(v, str) for v in mapping.values()) else None


def _index(_: _Exec, item: object, *indexes: object) -> object:
    for index in indexes:
        if isinstance(item, (list, tuple)):
            position = _position(index, len(item), "slice/array")
            if position == len(item):
                raise _CallError("reflect: slice index out of range")
            item = item[position]
        elif isinstance(item, str):
            data = item.encode("utf-8", "surrogatepass")
            position = _position(index, len(data), "slice/array")
            if position == len(data):
                raise _CallError("reflect: string index out of range")
            item = data[position]
        elif isinstance(item, dict):
            if not isinstance(index, str):
                raise _CallError(f"value has type {go_type(index)}; should be string")
            item = item[index] if index in item else _map_zero(item)
        elif item is None or item is NO_VALUE:
            if not isinstance(index, str):
                raise _CallError("index of untyped nil")
            item = ""
        else:
            raise _CallError(f"can't index item of type {go_type(item)}")
    return item


def _slice(_: _Exec, item: object, *indexes: object) -> object:
    if not isinstance(item, (str, list, tuple)):
        if item is None or item is NO_VALUE:
            raise _CallError("slice of untyped nil")
        raise _CallError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 3:
        raise _CallError(f"too many slice indexes: {len(indexes)}")
    data: bytes | list[object] | tuple[object, ...]
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _CallError("cannot 3-index slice a string")
        data = item.encode("utf-8", "surrogatepass")
    else:
        data = item
    bounds = [_position(index, len(data), "slice/array") for index in indexes]
    for low, high in zip(bounds, bounds[1:]):  # noqa: B905, RUF007
        if low > high:
            raise _CallError(f"invalid slice index: {low} > {high}")
    low = bounds[0] if bounds else 0
    high = bounds[1] if len(bounds) > 1 else len(data)
    if isinstance(data, bytes):
        return data[low:high].decode("utf-8", "replace")
    return list(data[low:high])


def _eval_args(args: tuple[object, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(args)


def _html(_: _Exec, *args: object) -> str:
    text = _eval_args(args)
    return text.translate({
        0: "\ufffd", ord('"'): "&#34;", ord("'"): "&#39;", ord("&"): "&amp;",
        ord("<"): "&lt;", ord(">"): "&gt;",
    })


def _js(_: _Exec, *args: object) -> str:
    out: list[str] = []
    for char in _eval_args(args):
        if char in "\\'\"":
            out.append("\\" + char)
        elif char in "<>&=" or ord(char) < 0x20 or (ord(char) >= 0x80 and not char.isprintable()):
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return "".join(out)


_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _urlquery(_: _Exec, *args: object) -> str:
    out: list[str] = []
    for byte in _eval_args(args).encode("utf-8", "surrogatepass"):
        char = chr(byte)
        if char in _URL_SAFE:
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _json_func(state: _Exec, value: object) -> str:
    out: list[str] = []
    _json_into(value, out, state.escape_html)
    return "".join(out)


def _split(_: _Exec, text: str, sep: str) -> list[str]:
    return text.split(sep) if sep else list(text)


def _join(_: _Exec, elems: object, sep: str) -> str:
    if elems is None or elems is NO_VALUE:
        return ""
    if isinstance(elems, (list, tuple)):
        return sep.join(go_sprint(item) for item in elems)
    if isinstance(elems, dict):
        return sep.join(sorted(go_sprint(item) for item in elems.values()))
    raise _CallError(f"expected slice, got {go_type(elems)}")


def _is_separator(char: str) -> bool:
    if char.isascii():
        return not (char.isalnum() or char == "_")
    if char.isalpha() or char.isdigit():
        return False
    return char.isspace()


def _title(_: _Exec, text: str) -> str:
    out: list[str] = []
    previous = " "
    for char in text:
        if _is_separator(previous):
            titled = char.title()
            out.append(titled if len(titled) == 1 else char)
        else:
            out.append(char)
        previous = char
    return "".join(out)


def _pad_func(_: _Exec, text: str, prefix: int, suffix: int) -> str:
    if not text:
        return text
    if prefix < 0 or suffix < 0:
        raise _CallError("strings: negative Repeat count")
    return " " * prefix + text + " " * suffix


def _truncate(_: _Exec, text: str, length: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) < length:
        return text
    if length < 0:
        raise _CallError(f"runtime error: slice bounds out of range [:{length}]")
    return data[:length].decode("utf-8", "ignore")


def _first(_: _Exec, text: str, *rest: object) -> str:
    return text


_FUNCS: dict[str, _Func] = {
    # Go's builtins
    "and": _Func(lambda _s, *a: a[-1], ("any",), "any", short_circuit=True),
    "or": _Func(lambda _s, *a: a[-1], ("any",), "any", short_circuit=True),
    "not": _Func(_not, ("any",)),
    "len": _Func(_len, ("any",)),
    "index": _Func(_index, ("any",), "any"),
    "slice": _Func(_slice, ("any",), "any"),
    "eq": _Func(_eq, ("any",), "any"),
    "ne": _Func(_ne, ("any", "any")),
    "lt": _Func(_lt, ("any", "any")),
    "le": _Func(_le, ("any", "any")),
    "gt": _Func(_gt, ("any", "any")),
    "ge": _Func(_ge, ("any", "any")),
    "print": _Func(lambda _s, *a: _sprint(a), (), "any"),
    "printf": _Func(lambda _s, f, *a: _sprintf(f, a), ("str",), "any"),
    "println": _Func(lambda _s, *a: _sprintln(a), (), "any"),
    "html": _Func(_html, (), "any"),
    "js": _Func(_js, (), "any"),
    "urlquery": _Func(_urlquery, (), "any"),
    # docker's
    "json": _Func(_json_func, ("any",)),
    "split": _Func(_split, ("str", "str")),
    "join": _Func(_join, ("any", "str")),
    "title": _Func(_title, ("str",)),
    "lower": _Func(lambda _s, t: t.lower(), ("str",)),
    "upper": _Func(lambda _s, t: t.upper(), ("str",)),
    "pad": _Func(_pad_func, ("str", "int", "int")),
    "truncate": _Func(_truncate, ("str", "int")),
}

# docker's HeaderFunctions: a table header shows column names untouched
_HEADER_FUNCS: dict[str, _Func] = {
    **_FUNCS,
    "json": _Func(_first, ("str",)),
    "split": _Func(_first, ("str", "str")),
    "join": _Func(_first, ("str", "str")),
    "title": _Func(_first, ("str",)),
    "lower": _Func(_first, ("str",)),
    "upper": _Func(_first, ("str",)),
    "truncate": _Func(_first, ("str", "int")),
}

_FUNC_NAMES = frozenset(_FUNCS)
_TYPE_NAMES = {"str": "string", "int": "int", "any": "interface {}"}
_MAX_DEPTH = 100


# --------------------------------------------------------------------------
# Execution: a port of text/template's exec.go


class _ExecFailed(Exception):
    pass


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    def __init__(
        self,
        template: Template,
        name: str,
        out: list[str],
        funcs: dict[str, _Func],
        missingkey: str,
        escape_html: bool,
        depth: int = 0,
    ) -> None:
        self.template = template
        self.name = name
        self.out = out
        self.funcs = funcs
        self.missingkey = missingkey
        self.escape_html = escape_html
        self.depth = depth
        self.vars: list[list[object]] = []  # [name, value] pairs, a stack
        self.node: _Node | None = None

    def fail(self, message: str) -> _ExecFailed:
        if self.node is None:
            return _ExecFailed(f"template: {self.name}: {message}")
        text = self.template.text
        pos = self.node.pos
        line_start = text.rfind("\n", 0, pos) + 1
        column = len(text[line_start:pos].encode("utf-8", "surrogatepass"))
        context = str(self.node)
        return _ExecFailed(
            f"template: :{_line_of(text, pos)}:{column}: executing {go_quote(self.name)}"
            f" at <{context}>: {message}"
        )

    # walking ----------------------------------------------------------------
    def walk(self, dot: object, node: _Node) -> None:
        self.node = node
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.out.append(go_sprint(value))
        elif isinstance(node, _List):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, _Branch):
            if node.keyword == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, _Keyword):
            raise _Break() if node.word == "break" else _Continue()
        elif isinstance(node, _Call):
            self.walk_template(dot, node)
        else:
            raise self.fail(f"unknown node: {node}")

    def walk_if_or_with(self, dot: object, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if _truth(value):
                self.walk(value if node.keyword == "with" else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: object, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            inner = len(self.vars)
            declared = len(node.pipe.decl)
            items: Iterable[tuple[object, object]]
            if isinstance(value, (list, tuple)):
                items = enumerate(value)
            elif isinstance(value, dict):
                items = ((key, value[key]) for key in _sorted_keys(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                if declared > 1:
                    raise self.fail(f"can't use {value} to iterate over more than one variable")
                items = ((i, i) for i in range(value))
            elif value is None or value is NO_VALUE:
                items = ()
            else:
                raise self.fail(f"range can't iterate over {go_sprint(value)}")
            ran = False
            for key, element in items:
                ran = True
                if declared > 0:
                    self.vars[-1][1] = element
                if declared > 1:
                    self.vars[-2][1] = key
                try:
                    self.walk(element, node.list)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    del self.vars[inner:]
            if not ran and node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_template(self, dot: object, node: _Call) -> None:
        body = self.template.defs.get(node.name)
        if body is None:
            raise self.fail(f"template {go_quote(node.name)} not defined")
        if self.depth >= _MAX_DEPTH:
            raise self.fail(f"exceeded maximum template depth ({_MAX_DEPTH})")
        value = self.eval_pipeline(dot, node.pipe)
        sub = _Exec(
            self.template, node.name, self.out, self.funcs,
            self.missingkey, self.escape_html, self.depth + 1,
        )
        sub.vars = [["$", value]]
        sub.walk(value, body)

    # evaluating ---------------------------------------------------------------
    def eval_pipeline(self, dot: object, pipe: _Pipe | None) -> object:
        if pipe is None:
            return NO_VALUE
        self.node = pipe
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.vars.append([var.idents[0], value])
        return value

    def set_var(self, name: str, value: object) -> None:
        for pair in reversed(self.vars):
            if pair[0] == name:
                pair[1] = value
                return
        raise self.fail(f"undefined variable: {name}")

    def var_value(self, name: str) -> object:
        for pair in reversed(self.vars):
            if pair[0] == name:
                return pair[1]
        raise self.fail(f"undefined variable: {name}")

    def not_a_function(self, args: list[_Node] | None, final: object) -> None:
        if (args is not None and len(args) > 1) or final is not _MISSING:
            first = args[0] if args else self.node
            raise self.fail(f"can't give argument to non-function {first}")

    def eval_command(self, dot: object, cmd: _Command, final: object) -> object:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, _Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _Ident):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Bool):
            return first.value
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Number):
            return first.ideal
        if isinstance(first, _String):
            return first.text
        raise self.fail("nil is not a command")

    def eval_field_node(
        self, dot: object, field: _Field, args: list[_Node] | None, final: object
    ) -> object:
        self.node = field
        return self.eval_field_chain(dot, field, field.idents, args, final)

    def eval_chain(
        self, dot: object, chain: _Chain, args: list[_Node] | None, final: object
    ) -> object:
        self.node = chain
        if isinstance(chain.node, _Nil):
            raise self.fail(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(receiver, chain, chain.fields, args, final)

    def eval_variable(
        self, dot: object, var: _Variable, args: list[_Node] | None, final: object
    ) -> object:
        self.node = var
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(value, var, var.idents[1:], args, final)

    def eval_field_chain(
        self,
        receiver: object,
        node: _Node,
        idents: list[str],
        args: list[_Node] | None,
        final: object,
    ) -> object:
        for ident in idents[:-1]:
            receiver = self.eval_field(ident, None, _MISSING, receiver)
        return self.eval_field(idents[-1], args, final, receiver)

    def eval_field(
        self, name: str, args: list[_Node] | None, final: object, receiver: object
    ) -> object:
        if receiver is NO_VALUE:
            if self.missingkey == "error":
                raise self.fail(f"nil data; no entry for key {go_quote(name)}")
            return NO_VALUE
        if receiver is None:
            raise self.fail(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, dict):
            if (args is not None and len(args) > 1) or final is not _MISSING:
                raise self.fail(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.missingkey == "error":
                raise self.fail(f"map has no entry for key {go_quote(name)}")
            return None if self.missingkey == "zero" else NO_VALUE
        raise self.fail(f"can't evaluate field {name} in type {go_type(receiver)}")

    def eval_function(
        self, dot: object, ident: _Ident, cmd: _Node, args: list[_Node] | None, final: object
    ) -> object:
        self.node = ident
        func = self.funcs.get(ident.name)
        if func is None:
            raise self.fail(f"{go_quote(ident.name)} is not a defined function")
        return self.eval_call(dot, func, cmd, ident.name, args, final)

    def eval_call(
        self,
        dot: object,
        func: _Func,
        node: _Node,
        name: str,
        args: list[_Node] | None,
        final: object,
    ) -> object:
        nodes = args[1:] if args else []
        count = len(nodes) + (final is not _MISSING)
        fixed = len(func.params)
        if func.variadic is not None:
            if count < fixed:
                raise self.fail(
                    f"wrong number of args for {name}: want at least {fixed} got {len(nodes)}"
                )
        elif count != fixed:
            raise self.fail(f"wrong number of args for {name}: want {fixed} got {count}")
        if func.short_circuit:  # and, or: stop at the first false (true) argument
            value: object = NO_VALUE
            for arg in nodes:
                value = self.eval_arg(dot, "any", arg)
                if _truth(value) == (name == "or"):
                    return value
            return final if final is not _MISSING else value
        argv = [self.eval_arg(dot, func.kind_at(i), arg) for i, arg in enumerate(nodes)]
        if final is not _MISSING:
            argv.append(self.validate(final, func.kind_at(len(nodes))))
        try:
            return func.call(self, *argv)
        except _CallError as err:
            self.node = node
            raise self.fail(f"error calling {name}: {err}") from None

    def eval_arg(self, dot: object, kind: str, node: _Node) -> object:
        self.node = node
        if isinstance(node, _Dot):
            return self.validate(dot, kind)
        if isinstance(node, _Nil):
            if kind == "any":
                return None
            raise self.fail(f"cannot assign nil to {_TYPE_NAMES[kind]}")
        if isinstance(node, _Field):
            return self.validate(self.eval_field_node(dot, node, [node], _MISSING), kind)
        if isinstance(node, _Variable):
            return self.validate(self.eval_variable(dot, node, None, _MISSING), kind)
        if isinstance(node, _Pipe):
            return self.validate(self.eval_pipeline(dot, node), kind)
        if isinstance(node, _Ident):
            func = self.eval_function(dot, node, node, None, _MISSING)
            return self.validate(func, kind)
        if isinstance(node, _Chain):
            return self.validate(self.eval_chain(dot, node, None, _MISSING), kind)
        if kind == "str":
            if isinstance(node, _String):
                return node.text
            raise self.fail(f"expected string; found {node}")
        if kind == "int":
            if isinstance(node, _Number) and node.int_value is not None:
                return node.int_value
            raise self.fail(f"expected integer; found {node}")
        if isinstance(node, _Bool):
            return node.value
        if isinstance(node, _Number):
            return node.ideal
        if isinstance(node, _String):
            return node.text
        raise self.fail(f"can't handle {node} for arg of type {_TYPE_NAMES[kind]}")

    def validate(self, value: object, kind: str) -> object:
        if value is NO_VALUE:
            if kind == "any":
                return None
            raise self.fail(f"invalid value; expected {_TYPE_NAMES[kind]}")
        if kind == "str" and not isinstance(value, str):
            raise self.fail(f"wrong type for value; expected string; got {go_type(value)}")
        if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            raise self.fail(f"wrong type for value; expected int; got {go_type(value)}")
        return value


# --------------------------------------------------------------------------
# Public API


class Template:
    """A parsed template; parse once, execute for every row.

    Raises TemplateError if `text` does not parse.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        parser = _Parser(text, _FUNC_NAMES)
        self.root = parser.parse()
        self.defs = parser.defs

    def _run(
        self, data: object, funcs: dict[str, _Func], missingkey: str, escape_html: bool
    ) -> tuple[str, str | None]:
        out: list[str] = []
        state = _Exec(self, "", out, funcs, missingkey, escape_html)
        state.vars.append(["$", data])
        try:
            state.walk(data, self.root)
        except _ExecFailed as err:
            return "".join(out), str(err)
        except RecursionError:
            return "".join(out), "template: : exceeded maximum template depth"
        return "".join(out), None

    def execute(
        self, data: object, *, missingkey: str = "error", escape_html: bool = True
    ) -> str:
        """Render `data`. missingkey is Go's option: "error", "default" or "zero".

        Raises TemplateError if execution fails.
        """
        if missingkey not in ("error", "default", "zero"):
            raise ValueError(f"missingkey: {missingkey!r}")
        text, error = self._run(data, _FUNCS, missingkey, escape_html)
        if error is not None:
            raise TemplateError(error)
        return text

    def header(self, headers: Mapping[str, str]) -> str:
        """The table header docker prints: see header_for."""
        text, _ = self._run(dict(headers), _HEADER_FUNCS, "default", True)
        return text


_CACHE: dict[str, Template] = {}


def _template(text: str) -> Template:
    template = _CACHE.get(text)
    if template is None:
        if len(_CACHE) >= 64:
            _CACHE.clear()
        template = _CACHE[text] = Template(text)
    return template


def render(
    template: str, data: object, *, missingkey: str = "error", escape_html: bool = True
) -> str:
    """Execute Go template `template` on `data` (parsed templates are cached).

    Raises TemplateError (an InvalidArgument) for a template that does not
    parse or does not execute; its text starts "template parsing error: ".
    """
    return _template(template).execute(data, missingkey=missingkey, escape_html=escape_html)


def is_table(fmt: str) -> tuple[bool, str]:
    """docker's preFormat: (is it a table format, the template to execute).

    As docker: a format is a table if it starts with "table"; that word goes,
    then surrounding spaces, and the two-character escapes \\t and \\n become
    a tab and a newline (in every format, table or not). Named formats
    ("table" alone, "json", "") are the caller's to spot first.
    """
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table") :]
    return table, fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def header_for(template: str, headers: Mapping[str, str]) -> str:
    """The header row of a table format, as docker makes it.

    docker executes the template on the map field -> column name, with json,
    split, join, title, lower, upper and truncate passing the name through
    unchanged: "{{.ID}}\\t{{upper .Repository}}" gives "IMAGE ID\\tREPOSITORY".
    A field without a header prints "<no value>"; like docker, an error stops
    the header where it occurred instead of being raised.
    """
    return _template(template).header(headers)


def format_rows(
    fmt: str, rows: Iterable[object], headers: Mapping[str, str], *, escape_html: bool = True
) -> str:
    """docker's formatter Context.Write: every row through `fmt`, one per line.

    For a "table ..." format the header row comes first and the whole is laid
    out by the tab writer. Nothing is returned partially: the first row that
    fails raises TemplateError.
    """
    table, text = is_table(fmt)
    template = _template(text)
    body = "".join(template.execute(row, escape_html=escape_html) + "\n" for row in rows)
    if not table:
        return body
    writer = Table()
    writer.write(template.header(headers) + "\n")
    writer.write(body)
    return writer.render()
