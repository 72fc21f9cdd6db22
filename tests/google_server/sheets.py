"""Sheets v4: spreadsheets and values with A1 ranges, enough for a gradebook.

Values are stored per cell as str, int, float or bool. ``RAW`` input keeps
strings; ``USER_ENTERED`` turns numbers and TRUE/FALSE into typed values
(formulas are stored, not evaluated). ``FORMATTED_VALUE`` output renders
everything as strings, ``UNFORMATTED_VALUE`` keeps the types.

:class:`UserQuota` counts read and write requests per user per minute, as the
real per-user quota does, and answers 429 once a configured limit is passed.
"""

from __future__ import annotations

import copy
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .common import Call, Ids
from .errors import invalid_argument, not_found, quota_exhausted
from .faults import Clock

API = "sheets"
READ_METHODS = {"sheets.spreadsheets.get", "sheets.spreadsheets.values.get", "sheets.spreadsheets.values.batchGet"}
RANGE_WITH_SHEET = re.compile(r"^('(?:[^']|'')+'|[^!]+)!(.*)$")
ENDPOINT = re.compile(r"^([A-Za-z]*)(\d*)$")


def column_name(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def column_index(name: str) -> int:
    """A → 0, AA → 26."""
    value = 0
    for char in name.upper():
        value = value * 26 + ord(char) - 64
    return value - 1


def quote_title(title: str) -> str:
    """A sheet title as it appears in A1 notation."""
    return title if re.fullmatch(r"[A-Za-z0-9_]+", title) else "'" + title.replace("'", "''") + "'"


@dataclass
class Sheet:
    """One tab: properties plus a sparse cell map."""

    sheet_id: int
    title: str
    index: int
    rows: int = 1000
    columns: int = 26
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)

    def properties(self) -> dict[str, Any]:
        """The SheetProperties resource."""
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": self.index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.rows, "columnCount": self.columns},
        }

    def used_rows(self) -> int:
        """One past the last row holding a value."""
        return max((r for r, _ in self.cells), default=-1) + 1


@dataclass
class GridRange:
    """A resolved A1 range; ``open_rows``/``open_columns`` mean writes may extend past it."""

    sheet: Sheet
    row0: int
    col0: int
    row1: int
    col1: int
    open_rows: bool = False
    open_columns: bool = False

    def a1(self, row1: int | None = None, col1: int | None = None) -> str:
        """A1 text for this range (optionally with other end bounds)."""
        end_row, end_col = self.row1 if row1 is None else row1, self.col1 if col1 is None else col1
        start = f"{column_name(self.col0)}{self.row0 + 1}"
        end = f"{column_name(end_col)}{end_row + 1}"
        return f"{quote_title(self.sheet.title)}!{start}" + ("" if start == end else f":{end}")


@dataclass
class Spreadsheet:
    """A spreadsheet and its tabs."""

    spreadsheet_id: str
    title: str
    sheets: list[Sheet]

    def resource(self, base_url: str = "https://docs.google.com") -> dict[str, Any]:
        """The Spreadsheet resource."""
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {"title": self.title, "locale": "en_US", "autoRecalc": "ON_CHANGE", "timeZone": "Etc/GMT"},
            "sheets": [{"properties": sheet.properties()} for sheet in self.sheets],
            "spreadsheetUrl": f"{base_url}/spreadsheets/d/{self.spreadsheet_id}/edit",
        }

    def sheet(self, title: str) -> Sheet | None:
        """The tab called ``title``."""
        return next((s for s in self.sheets if s.title == title), None)

    def parse_range(self, text: str) -> GridRange:
        """Resolve ``Sheet1!A1:G``, ``'My tab'!A:C``, ``Sheet1``, ``A1:B2`` (first tab)."""
        match = RANGE_WITH_SHEET.match(text)
        if match:
            title = match[1][1:-1].replace("''", "'") if match[1].startswith("'") else match[1]
            sheet, cells = self.sheet(title), match[2]
        else:
            bare = text[1:-1].replace("''", "'") if text.startswith("'") else text
            sheet, cells = (self.sheet(bare), "") if self.sheet(bare) else (self.sheets[0], text)
        if sheet is None:
            raise invalid_argument(API, f"Unable to parse range: {text}")
        return _grid_range(sheet, cells, text)


def _grid_range(sheet: Sheet, cells: str, text: str) -> GridRange:
    if not cells:
        return GridRange(sheet, 0, 0, sheet.rows - 1, sheet.columns - 1)
    first, colon, last = cells.partition(":")
    start, end = ENDPOINT.match(first), ENDPOINT.match(last if colon else first)
    if start is None or end is None or not first or (colon and not last):
        raise invalid_argument(API, f"Unable to parse range: {text}")
    row0 = int(start[2]) - 1 if start[2] else 0
    col0 = column_index(start[1]) if start[1] else 0
    row1 = int(end[2]) - 1 if end[2] else sheet.rows - 1
    col1 = column_index(end[1]) if end[1] else sheet.columns - 1
    if row0 < 0 or row1 < row0 or col1 < col0:
        raise invalid_argument(API, f"Unable to parse range: {text}")
    single = not colon and bool(start[1]) and bool(start[2])
    return GridRange(sheet, row0, col0, row1, col1, open_rows=single or not end[2], open_columns=single)


def parse_user_entered(value: Any) -> Any:
    """What Sheets stores for a USER_ENTERED value."""
    if not isinstance(value, str):
        return value
    if value.startswith("'"):
        return value[1:]
    if value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    try:
        number = float(value.replace(",", "")) if value.strip() else None
    except ValueError:
        return value
    if number is None:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def render(value: Any, option: str) -> Any:
    """A stored value as ``valueRenderOption`` asks."""
    if option != "FORMATTED_VALUE" or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class UserQuota:
    """Per-user, per-minute read/write counters (Sheets' per-user quota)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.read_per_minute: int | None = None
        self.write_per_minute: int | None = None
        self.counts: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.Lock()

    def configure(self, read_per_minute: int | None = 60, write_per_minute: int | None = 60) -> None:
        """Set the limits (None = unlimited). The real defaults are 60 per minute per user."""
        self.read_per_minute, self.write_per_minute = read_per_minute, write_per_minute

    def usage(self, email: str, kind: str = "write") -> int:
        """Requests of ``kind`` ("read"/"write") by ``email`` in the current minute."""
        with self._lock:
            return self.counts[(email.lower(), kind, int(self.clock.now() // 60))]

    def charge(self, email: str, method_id: str) -> None:
        """Count one request; raise 429 RESOURCE_EXHAUSTED past the limit."""
        kind = "read" if method_id in READ_METHODS else "write"
        limit = self.read_per_minute if kind == "read" else self.write_per_minute
        now = self.clock.now()
        with self._lock:
            key = (email.lower(), kind, int(now // 60))
            self.counts[key] += 1
            over = limit is not None and self.counts[key] > limit
        if over:
            label = "Read" if kind == "read" else "Write"
            raise quota_exhausted(
                API, f"sheets.googleapis.com/{kind}_requests", f"{label}RequestsPerMinutePerUser", retry_after=60 - now % 60
            )


class Sheets:
    """In-memory Sheets. Callers hold the server lock."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.spreadsheets: dict[str, Spreadsheet] = {}

    def handlers(self) -> dict[str, Callable[[Call], Any]]:
        """Method id → implementation."""
        prefix = "sheets.spreadsheets."
        return {
            prefix + "create": self.create,
            prefix + "get": self.get,
            prefix + "batchUpdate": self.batch_update,
            prefix + "values.get": self.values_get,
            prefix + "values.batchGet": self.values_batch_get,
            prefix + "values.update": self.values_update,
            prefix + "values.append": self.values_append,
            prefix + "values.batchUpdate": self.values_batch_update,
            prefix + "values.clear": self.values_clear,
        }

    # --- control API -------------------------------------------------------------------

    def add_spreadsheet(self, title: str, sheet_titles: list[str] | None = None) -> str:
        """Create a spreadsheet with the given tabs; returns its id."""
        spreadsheet_id = self.ids.opaque("sheet")
        titles = sheet_titles or ["Sheet1"]
        sheets = [Sheet(0 if i == 0 else int(self.ids.numeric(1_000_000)), t, i) for i, t in enumerate(titles)]
        self.spreadsheets[spreadsheet_id] = Spreadsheet(spreadsheet_id, title, sheets)
        return spreadsheet_id

    def values(self, spreadsheet_id: str, range_text: str, option: str = "UNFORMATTED_VALUE") -> list[list[Any]]:
        """The rows in a range, trailing blanks trimmed."""
        grid = self.spreadsheet(spreadsheet_id).parse_range(range_text)
        return _read(grid, option)

    def spreadsheet(self, spreadsheet_id: str) -> Spreadsheet:
        """The spreadsheet (404 ApiError when missing)."""
        found = self.spreadsheets.get(spreadsheet_id)
        if found is None:
            raise not_found(API)
        return found

    # --- spreadsheets ------------------------------------------------------------------

    def create(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.create"""
        body = call.body or {}
        titles = [s.get("properties", {}).get("title") or f"Sheet{i + 1}" for i, s in enumerate(body.get("sheets", []))]
        spreadsheet_id = self.add_spreadsheet(body.get("properties", {}).get("title", "Untitled spreadsheet"), titles)
        return self.spreadsheets[spreadsheet_id].resource()

    def get(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.get (no grid data)."""
        return self.spreadsheet(call.path["spreadsheetId"]).resource()

    def batch_update(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.batchUpdate: addSheet, deleteSheet, updateSheetProperties(title)."""
        spreadsheet = self.spreadsheet(call.path["spreadsheetId"])
        replies = [self._apply_request(spreadsheet, request) for request in (call.body or {}).get("requests", [])]
        return {"spreadsheetId": spreadsheet.spreadsheet_id, "replies": replies}

    def _apply_request(self, spreadsheet: Spreadsheet, request: dict[str, Any]) -> dict[str, Any]:
        if "addSheet" in request:
            props = request["addSheet"].get("properties", {})
            title = props.get("title") or f"Sheet{len(spreadsheet.sheets) + 1}"
            if spreadsheet.sheet(title):
                raise invalid_argument(
                    API,
                    f'Invalid requests[0].addSheet: A sheet with the name "{title}" already exists. Please enter another name.',
                )
            sheet = Sheet(props.get("sheetId", int(self.ids.numeric(1_000_000))), title, len(spreadsheet.sheets))
            spreadsheet.sheets.append(sheet)
            return {"addSheet": {"properties": sheet.properties()}}
        if "deleteSheet" in request:
            sheet_id = request["deleteSheet"].get("sheetId")
            spreadsheet.sheets = [s for s in spreadsheet.sheets if s.sheet_id != sheet_id]
            return {}
        if "updateSheetProperties" in request:
            props = request["updateSheetProperties"].get("properties", {})
            target = next((s for s in spreadsheet.sheets if s.sheet_id == props.get("sheetId")), None)
            if target is None:
                raise invalid_argument(API, f"No grid with id: {props.get('sheetId')}")
            target.title = props.get("title", target.title)
            return {}
        raise invalid_argument(API, f"Request kind not supported by the test server: {sorted(request)}")

    # --- values ------------------------------------------------------------------------

    def values_get(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.values.get"""
        grid = self.spreadsheet(call.path["spreadsheetId"]).parse_range(call.path["range"])
        return _value_range(grid, call.query)

    def values_batch_get(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.values.batchGet"""
        spreadsheet = self.spreadsheet(call.path["spreadsheetId"])
        ranges = [_value_range(spreadsheet.parse_range(text), call.query) for text in call.query.get("ranges", [])]
        return {"spreadsheetId": spreadsheet.spreadsheet_id, "valueRanges": ranges}

    def values_update(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.values.update"""
        spreadsheet = self.spreadsheet(call.path["spreadsheetId"])
        body = call.body or {}
        grid = spreadsheet.parse_range(call.path["range"])
        if body.get("range") and spreadsheet.parse_range(body["range"]).a1() != grid.a1():
            raise invalid_argument(
                API, f"Requested writing within range [{call.path['range']}], but the request body has range [{body['range']}]."
            )
        return _write(spreadsheet.spreadsheet_id, grid, body, _input_option(call.query), call.query)

    def values_append(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.values.append: writes after the last row of the table."""
        spreadsheet = self.spreadsheet(call.path["spreadsheetId"])
        grid = spreadsheet.parse_range(call.path["range"])
        option = _input_option(call.query)
        last = _last_table_row(grid)
        start = last + 1 if last is not None else grid.row0
        rows = _oriented(call.body or {})
        grid.sheet.rows = max(grid.sheet.rows, start + len(rows))
        target = GridRange(grid.sheet, start, grid.col0, grid.sheet.rows - 1, grid.col1, True, False)
        body: dict[str, Any] = {
            "spreadsheetId": spreadsheet.spreadsheet_id,
            "updates": _write(spreadsheet.spreadsheet_id, target, call.body or {}, option, call.query),
        }
        if last is not None:
            body["tableRange"] = GridRange(grid.sheet, grid.row0, grid.col0, last, grid.col1).a1()
        return body

    def values_batch_update(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.values.batchUpdate"""
        spreadsheet = self.spreadsheet(call.path["spreadsheetId"])
        body = call.body or {}
        option = _input_option(body)
        responses = [
            _write(spreadsheet.spreadsheet_id, spreadsheet.parse_range(data.get("range", "")), data, option, body)
            for data in body.get("data", [])
        ]
        totals = {key: sum(r.get(f"updated{key}", 0) for r in responses) for key in ("Rows", "Columns", "Cells")}
        result: dict[str, Any] = {"spreadsheetId": spreadsheet.spreadsheet_id, "responses": responses}
        if responses:
            result.update({f"totalUpdated{k}": v for k, v in totals.items()})
            result["totalUpdatedSheets"] = len({r["updatedRange"].split("!")[0] for r in responses})
        return result

    def values_clear(self, call: Call) -> dict[str, Any]:
        """sheets.spreadsheets.values.clear"""
        grid = self.spreadsheet(call.path["spreadsheetId"]).parse_range(call.path["range"])
        for key in [k for k in grid.sheet.cells if grid.row0 <= k[0] <= grid.row1 and grid.col0 <= k[1] <= grid.col1]:
            del grid.sheet.cells[key]
        return {"spreadsheetId": call.path["spreadsheetId"], "clearedRange": grid.a1()}


def _input_option(options: dict[str, Any]) -> str:
    option = options.get("valueInputOption")
    if option in (None, "INPUT_VALUE_OPTION_UNSPECIFIED"):
        raise invalid_argument(API, "'valueInputOption' is required but not specified")
    return str(option)


def _oriented(body: dict[str, Any]) -> list[list[Any]]:
    rows = body.get("values") or []
    if body.get("majorDimension") == "COLUMNS":
        width = max((len(c) for c in rows), default=0)
        rows = [[c[i] if i < len(c) else None for c in rows] for i in range(width)]
    return rows


def _read(grid: GridRange, option: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for row in range(grid.row0, min(grid.row1, grid.sheet.rows - 1) + 1):
        values = [grid.sheet.cells.get((row, col), "") for col in range(grid.col0, grid.col1 + 1)]
        while values and values[-1] == "":
            values.pop()
        rows.append([render(v, option) for v in values])
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _value_range(grid: GridRange, query: dict[str, Any]) -> dict[str, Any]:
    rows = _read(grid, query.get("valueRenderOption", "FORMATTED_VALUE"))
    body: dict[str, Any] = {"range": grid.a1(), "majorDimension": query.get("majorDimension", "ROWS")}
    if body["majorDimension"] == "COLUMNS":
        rows = _oriented({"values": rows, "majorDimension": "COLUMNS"})
    if rows:
        body["values"] = rows
    return body


def _check_bounds(grid: GridRange, rows: list[list[Any]], requested: str) -> None:
    last_row = grid.row0 + len(rows) - 1
    last_col = grid.col0 + max((len(r) for r in rows), default=0) - 1
    if not grid.open_rows and last_row > grid.row1:
        raise invalid_argument(API, f"Requested writing within range [{requested}], but tried writing to row [{last_row + 1}]")
    if not grid.open_columns and last_col > grid.col1:
        raise invalid_argument(
            API, f"Requested writing within range [{requested}], but tried writing to column [{column_name(last_col)}]"
        )
    if last_row >= grid.sheet.rows or last_col >= grid.sheet.columns:
        raise invalid_argument(
            API,
            f"Range ('{grid.sheet.title}'!{column_name(last_col)}{last_row + 1}) exceeds grid "
            f"limits. Max rows: {grid.sheet.rows}, max columns: {grid.sheet.columns}",
        )


def _write(spreadsheet_id: str, grid: GridRange, body: dict[str, Any], option: str, query: dict[str, Any]) -> dict[str, Any]:
    rows = _oriented(body)
    _check_bounds(grid, rows, grid.a1())
    cells = 0
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is None:
                continue
            stored = parse_user_entered(value) if option == "USER_ENTERED" else value
            key = (grid.row0 + i, grid.col0 + j)
            if stored == "":
                grid.sheet.cells.pop(key, None)
            else:
                grid.sheet.cells[key] = copy.deepcopy(stored)
            cells += 1
    width = max((len(r) for r in rows), default=0)
    result: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
    if cells:
        written = GridRange(grid.sheet, grid.row0, grid.col0, grid.row0 + len(rows) - 1, grid.col0 + width - 1)
        result.update(updatedRange=written.a1(), updatedRows=len(rows), updatedColumns=width, updatedCells=cells)
        if query.get("includeValuesInResponse"):
            result["updatedData"] = _value_range(
                written, {"valueRenderOption": query.get("responseValueRenderOption", "FORMATTED_VALUE")}
            )
    return result


def _last_table_row(grid: GridRange) -> int | None:
    rows = [r for (r, c) in grid.sheet.cells if r >= grid.row0 and grid.col0 <= c <= grid.col1]
    return max(rows) if rows else None
