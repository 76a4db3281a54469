"""The settings form: one row per configuration key, grouped by section.

The form contains text and choices only. It turns them into the changes for the daemon's
`config.validate` and `config.set` and shows the daemon's problems beside their fields, but
it never calls the daemon itself. A key the user did not touch is never sent, so the file
keeps its own spelling of that value ("86400" stays "86400", not "24h").
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from edm_tui.i18n import _, translate_message
from edm_tui.widgets.config_fields import (
    CUSTOM_FIELD,
    INTEGER,
    LANGUAGE,
    LIST,
    NUMBER,
    SECRET,
    SWITCH,
    SWITCH_DEFAULTS,
    WEBSITE_LISTS,
    FieldSpec,
    LocalProblem,
    SectionSpec,
    config_sections,
    problem_path,
    problem_reason,
    representable,
    to_text,
    to_value,
    website_lists_value,
)

SCHEDULE_INTERVAL, SCHEDULE_AT = "interval", "at"
WEBSITE_LISTS_PATH = "interspire.website_lists"
LANGUAGE_OPTIONS = (("English", "en"), ("Magyar", "hu"))  # each language in its own name
_NOT_SHOWN = object()  # the baseline of a key whose value in the file the form cannot show

Choice = tuple[str, int]  # (label, id) for a Select


def _select_value(select: Select) -> Any:
    return None if select.is_blank() else select.value


def _set_select(select: Select, options: list[tuple[str, Any]], value: Any) -> None:
    """Replace the options of `select` and choose `value` again (blank when it is None)."""
    select.set_options(options)
    if value is not None:
        select.value = value


def _with_value(options: list[Choice], value: Any, known: bool) -> list[Choice]:
    """Return `options`, plus an entry for `value` when IEM's response did not include it."""
    if value is None or any(option_value == value for _label, option_value in options):
        return options
    label = _("{id}: not found in IEM").format(id=value) if known else str(value)
    return [*options, (label, value)]


class FieldRow(Horizontal):
    """A label, the control, and below the control its help, a note and the problem."""

    DEFAULT_CSS = """
    FieldRow {
        height: auto;
        margin: 0 0 1 0;
        & > .field-label { width: 24; padding: 0 1; }
        & > .field-body { width: 1fr; height: auto; }
        & .field-help { color: $text-muted; padding: 0 1; }
        & .field-note { color: $text-warning; padding: 0 1; display: none; }
        & .field-problem { color: $text-error; padding: 0 1; display: none; }
        &.-with-note .field-note { display: block; }
        &.-problem .field-problem { display: block; }
        &.-problem > .field-label { color: $text-error; text-style: bold; }
        &.-problem Input, &.-problem SelectCurrent { background-tint: $error 25%; }
        & Input.-textual-compact { padding: 0 1; }
        & Select.-textual-compact > SelectCurrent { padding: 0 1; }
        & Input.-textual-compact:focus, & Select.-textual-compact:focus > SelectCurrent {
            background-tint: $foreground 15%;
        }
    }
    """

    def __init__(self, spec: FieldSpec, control: Widget, *, help_text: str | None = None) -> None:
        super().__init__(id=f"row-{spec.section}-{spec.key}")
        self.spec = spec
        self.control = control
        self.label_text = spec.label
        self.help_text = spec.help if help_text is None else help_text
        self._problem: str | None = None
        self._note: str | None = None

    def compose(self) -> ComposeResult:
        required = " *" if self.spec.required else ""
        yield Label(self.label_text + required, classes="field-label")
        with Vertical(classes="field-body"):
            yield self.control
            if self.help_text:
                yield Static(self.help_text, classes="field-help", markup=False)
            yield Static("", classes="field-note", markup=False)
            yield Static("", classes="field-problem", markup=False)

    def show_problem(self, text: str | None) -> None:
        if text != self._problem:
            self._problem = text
            self.query_one(".field-problem", Static).update("✗ " + text if text else "")
            self.set_class(bool(text), "-problem")

    def show_note(self, text: str | None) -> None:
        if text != self._note:
            self._note = text
            self.query_one(".field-note", Static).update(text or "")
            self.set_class(bool(text), "-with-note")


class SecretField(Horizontal):
    """A masked input for a secret the daemon never returns, with a reveal toggle.

    The daemon shows a stored secret as "********", so the input starts empty and only ever
    contains (and reveals) what the user typed. Empty means "keep the stored secret".
    `removable` adds a button that removes the stored secret (the key's default is "").
    """

    DEFAULT_CSS = """
    SecretField {
        height: auto;
        & > Input { width: 1fr; }
        & > Button { min-width: 8; margin: 0 0 0 1; }
    }
    """

    def __init__(self, spec: FieldSpec, *, removable: bool) -> None:
        super().__init__(id=spec.widget_id)
        self.spec = spec
        self.removable = removable
        self.stored = False
        self.removed = False

    def compose(self) -> ComposeResult:
        yield Input(password=True, validate_on=(), compact=True, classes="secret-input")
        yield Button(_("Show"), classes="reveal", compact=True)
        if self.removable:
            yield Button(_("Remove"), classes="remove-secret", compact=True)

    @property
    def input(self) -> Input:
        return self.query_one(".secret-input", Input)

    def load(self, value: Any) -> None:
        """Show whether a secret is stored; `value` is what config.get returned for it."""
        self.stored = bool(value)
        self.removed = False
        self.input.value = ""
        self.input.password = True
        self.query_one(".reveal", Button).label = _("Show")
        self._show_stored_state()

    def state(self) -> tuple[str, bool]:
        return (self.input.value, self.removed)

    def value(self) -> Any:
        """Return the new secret, or None when the stored one is to be removed."""
        if self.removed:
            return None
        return self.input.value

    def _show_stored_state(self) -> None:
        if self.removed:
            placeholder = _("removed when you save")
        elif self.stored:
            placeholder = _("stored; type to replace it")
        else:
            placeholder = _("not set")
        self.input.placeholder = placeholder
        self.input.disabled = self.removed
        if self.removable:
            remove = self.query_one(".remove-secret", Button)
            remove.label = _("Keep") if self.removed else _("Remove")
            remove.display = self.stored

    @on(Button.Pressed, ".reveal")
    def _toggle_reveal(self, event: Button.Pressed) -> None:
        event.stop()
        self.input.password = not self.input.password
        event.button.label = _("Show") if self.input.password else _("Hide")

    @on(Button.Pressed, ".remove-secret")
    def _toggle_remove(self, event: Button.Pressed) -> None:
        event.stop()
        self.removed = not self.removed
        if self.removed:
            self.input.value = ""
        self._show_stored_state()
        self.post_message(ConfigForm.Edited(immediate=True))


class SwitchField(Horizontal):
    """A switch with its state in words, which stays readable without colour."""

    DEFAULT_CSS = """
    SwitchField {
        height: auto;
        & > Switch { border: none; padding: 0 1; height: 1; }
        & > Switch:focus { background-tint: $foreground 15%; }
        & > .switch-state { padding: 0 1; width: auto; }
    }
    """

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__(id=spec.widget_id)
        self.spec = spec

    def compose(self) -> ComposeResult:
        yield Switch(SWITCH_DEFAULTS.get((self.spec.section, self.spec.key), False))
        yield Label("", classes="switch-state")

    @property
    def switch(self) -> Switch:
        return self.query_one(Switch)

    def on_mount(self) -> None:
        self._show_state(self.switch.value)

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        self._show_state(event.value)

    def _show_state(self, value: bool) -> None:
        self.query_one(".switch-state", Label).update(_("on") if value else _("off"))


class WebsiteRow(Vertical):
    """One website → list pair of `website_lists`, with its own problem line."""

    DEFAULT_CSS = """
    WebsiteRow {
        height: auto;
        & > Horizontal { height: auto; }
        & .website-id { width: 14; margin: 0 1 0 0; padding: 0 1; }
        & Select.-textual-compact > SelectCurrent { padding: 0 1; }
        & Select { width: 1fr; }
        & Button { min-width: 8; margin: 0 0 0 1; }
        & .website-problem { color: $text-error; padding: 0 1; display: none; }
        &.-problem .website-problem { display: block; }
        &.-problem Input, &.-problem SelectCurrent { background-tint: $error 25%; }
    }
    """

    def __init__(self, website: str, list_id: int | None, options: list[Choice]) -> None:
        super().__init__(classes="website-row")
        self._website = website
        self._list_id = list_id
        self._options = options
        self._problem: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(self._website, type="integer", placeholder=_("website id"), validate_on=(),
                        compact=True, classes="website-id")
            yield Select(self._options, prompt=_("Choose a list"), compact=True, classes="website-list",
                         value=self._list_id if self._list_id is not None else Select.NULL)
            yield Button(_("Remove"), classes="remove-website", compact=True)
        yield Static("", classes="website-problem", markup=False)

    def state(self) -> tuple[str, int | None]:
        return (self.query_one(".website-id", Input).value.strip(),
                _select_value(self.query_one(".website-list", Select)))

    def set_options(self, options: list[Choice], known: bool) -> None:
        select = self.query_one(".website-list", Select)
        value = _select_value(select)
        _set_select(select, _with_value(options, value, known), value)

    def show_problem(self, text: str | None) -> None:
        if text != self._problem:
            self._problem = text
            self.query_one(".website-problem", Static).update("✗ " + text if text else "")
            self.set_class(bool(text), "-problem")


class WebsiteListsEditor(Vertical):
    """The `website_lists` table as rows of Magento website id and IEM list, with add and remove."""

    DEFAULT_CSS = """
    WebsiteListsEditor {
        height: auto;
        & > .website-rows { height: auto; }
        & > .website-empty { color: $text-muted; padding: 0 1; }
    }
    """

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__(id=spec.widget_id)
        self.spec = spec
        self.options: list[Choice] = []
        self.options_known = False  # whether `options` came from IEM

    def compose(self) -> ComposeResult:
        yield Static(_("No website has a list of its own."), classes="website-empty", markup=False)
        yield Vertical(classes="website-rows")
        yield Button(_("Add website"), classes="add-website", compact=True)

    @property
    def rows(self) -> list[WebsiteRow]:
        return list(self.query(WebsiteRow))

    async def load(self, value: Any) -> None:
        await self.query_one(".website-rows").remove_children()
        table = value if isinstance(value, dict) else {}
        for website, list_id in table.items():
            chosen = list_id if isinstance(list_id, int) and not isinstance(list_id, bool) else None
            await self._add_row(str(website), chosen)
        self._show_empty()

    def state(self) -> tuple[tuple[str, int | None], ...]:
        return tuple(row.state() for row in self.rows)

    def set_options(self, options: list[Choice], known: bool) -> None:
        self.options = options
        self.options_known = known
        for row in self.rows:
            row.set_options(options, known)

    async def _add_row(self, website: str, list_id: int | None) -> WebsiteRow:
        row = WebsiteRow(website, list_id, _with_value(self.options, list_id, self.options_known))
        await self.query_one(".website-rows").mount(row)
        return row

    def _show_empty(self) -> None:
        self.query_one(".website-empty").display = not self.rows

    @on(Button.Pressed, ".add-website")
    async def _add_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        row = await self._add_row("", None)
        self._show_empty()
        row.query_one(".website-id", Input).focus()
        self.post_message(ConfigForm.Edited(immediate=False))

    @on(Button.Pressed, ".remove-website")
    async def _remove_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        row = next(ancestor for ancestor in event.button.ancestors if isinstance(ancestor, WebsiteRow))
        await row.remove()
        self._show_empty()
        self.post_message(ConfigForm.Edited(immediate=True))


def _check_text(result: dict[str, Any], name: str) -> str:
    """Return a text of a check result in the dashboard's language; the daemon sends English."""
    messages = result.get("messages")
    message = messages.get(name) if isinstance(messages, dict) else None
    return translate_message(message, str(result.get(name) or ""))


class CheckResults(Vertical):
    """The lines of the daemon's `check`: ✓ or ✗, title, detail, and the fix for a failure."""

    DEFAULT_CSS = """
    CheckResults {
        height: auto;
        border: round $border;
        padding: 0 1;
        display: none;
        &.-shown { display: block; }
        & > .check-lines { height: auto; }
        & > .check-note { color: $text-muted; display: none; }
        &.-with-note > .check-note { display: block; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = _("Connection test")

    def compose(self) -> ComposeResult:
        yield Static("", classes="check-note", markup=False)
        yield Static("", classes="check-lines")

    def show_running(self, note: str | None) -> None:
        self._show_note(note)
        self.query_one(".check-lines", Static).update(Content(_("Testing the saved settings…")))
        self.add_class("-shown")

    def show_results(self, results: list[dict[str, Any]], note: str | None) -> None:
        lines: list[Content] = []
        for result in results:
            ok = bool(result.get("ok"))
            mark = Content.styled("✓", "$text-success") if ok else Content.styled("✗", "$text-error")
            line = Content.assemble(mark, " ", Content.styled(_check_text(result, "title"), "bold"))
            if result.get("detail"):
                line = Content.assemble(line, ": ", _check_text(result, "detail"))
            lines.append(line)
            if not ok and result.get("fix"):
                lines.append(Content.assemble("  ", Content.styled(_("Fix:"), "bold"), " ", _check_text(result, "fix")))
        self._show_note(note)
        self.query_one(".check-lines", Static).update(Content("\n").join(lines))
        self.add_class("-shown")

    def show_failure(self, text: str) -> None:
        self._show_note(None)
        self.query_one(".check-lines", Static).update(
            Content.assemble(Content.styled("✗", "$text-error"), " ", text))
        self.add_class("-shown")

    def _show_note(self, note: str | None) -> None:
        self.query_one(".check-note", Static).update(note or "")
        self.set_class(bool(note), "-with-note")


class ConfigForm(VerticalScroll):
    """Every key of the configuration file, with the daemon's problems beside each field."""

    DEFAULT_CSS = """
    ConfigForm {
        height: 1fr;
        padding: 0 1;
        & > .section-title {
            text-style: bold;
            color: $text-accent;
            border-bottom: solid $border;
            margin: 1 0 0 0;
            width: 1fr;
        }
        & > .section-title.-first { margin: 0; }
    }
    """

    class Edited(Message):
        """A field of the form changed; `immediate` requests validation now, not after a pause in typing."""

        def __init__(self, *, immediate: bool) -> None:
            super().__init__()
            self.immediate = immediate

    class ListChosen(Message):
        """The user chose another IEM list, so its custom fields are needed."""

        def __init__(self, list_id: int | None) -> None:
            super().__init__()
            self.list_id = list_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sections: tuple[SectionSpec, ...] = config_sections()
        self.specs: dict[str, FieldSpec] = {spec.path: spec for section in self.sections for spec in section.fields}
        self.loaded: dict[str, Any] = {}  # key path -> value from config.get; absent keys have no entry
        self._baseline: dict[str, Any] = {}
        self._lists: list[Choice] | None = None
        self._fields: list[Choice] | None = None
        self._loading = False

    # --- building ---

    def compose(self) -> ComposeResult:
        yield CheckResults(id="check-results")
        for index, section in enumerate(self.sections):
            yield Static(section.title, classes="section-title" + (" -first" if index == 0 else ""),
                         markup=False)
            for spec in section.fields:
                if spec.path == "schedule.interval":
                    yield self._schedule_mode_row()
                yield FieldRow(spec, self._control(spec))

    def _schedule_mode_row(self) -> FieldRow:
        spec = FieldSpec("schedule", "mode", "mode", _("Runs"))
        options = [(_("every interval"), SCHEDULE_INTERVAL), (_("daily at a time of day"), SCHEDULE_AT)]
        select = Select(options, allow_blank=False, value=SCHEDULE_INTERVAL, compact=True, id="field-schedule-mode")
        return FieldRow(spec, select, help_text=_("The daemon starts a sync by itself this way."))

    def _control(self, spec: FieldSpec) -> Widget:
        if spec.kind == SECRET:
            return SecretField(spec, removable=not spec.required)
        if spec.kind == SWITCH:
            return SwitchField(spec)
        if spec.kind == WEBSITE_LISTS:
            return WebsiteListsEditor(spec)
        if spec.kind == LIST:
            return Select([], prompt=_("Choose a list"), compact=True, id=spec.widget_id)
        if spec.kind == CUSTOM_FIELD:
            return Select([], prompt=_("None: no names are sent"), compact=True, id=spec.widget_id)
        if spec.kind == LANGUAGE:
            return Select(LANGUAGE_OPTIONS, prompt=_("From the environment (LANG)"), compact=True,
                          id=spec.widget_id)
        input_type = {INTEGER: "integer", NUMBER: "number"}.get(spec.kind, "text")
        return Input(placeholder=spec.placeholder, type=input_type, validate_on=(), compact=True,
                     id=spec.widget_id)

    def row(self, path: str) -> FieldRow:
        section, key = path.split(".", 1)
        return self.query_one(f"#row-{section}-{key}", FieldRow)

    def _widget(self, spec: FieldSpec) -> Widget:
        return self.query_one(f"#{spec.widget_id}")

    @property
    def website_lists(self) -> WebsiteListsEditor:
        return self.query_one(f"#{self.specs[WEBSITE_LISTS_PATH].widget_id}", WebsiteListsEditor)

    @property
    def schedule_mode(self) -> Select:
        return self.query_one("#field-schedule-mode", Select)

    # --- loading ---

    async def load(self, config: dict[str, Any]) -> None:
        """Show the configuration as config.get returned it; the form is unchanged afterwards."""
        self._loading = True
        try:
            self.loaded = {}
            for section, values in config.items():
                if isinstance(values, dict):
                    for key, value in values.items():
                        self.loaded[f"{section}.{key}"] = value
            for spec in self.specs.values():
                await self._load_field(spec, self.loaded.get(spec.path))
            self.schedule_mode.value = SCHEDULE_AT if self.loaded.get("schedule.at") else SCHEDULE_INTERVAL
            self._show_schedule_mode()
            self.show_problems([])
            self._baseline = self._states()
            for path, spec in self.specs.items():
                if path in self.loaded and not representable(spec, self.loaded[path]):
                    self._baseline[path] = _NOT_SHOWN
        finally:
            self._loading = False

    async def _load_field(self, spec: FieldSpec, value: Any) -> None:
        widget = self._widget(spec)
        if isinstance(widget, SecretField):
            widget.load(value)
        elif isinstance(widget, SwitchField):
            default = SWITCH_DEFAULTS.get((spec.section, spec.key), False)
            widget.switch.value = value if isinstance(value, bool) else default
        elif isinstance(widget, WebsiteListsEditor):
            await widget.load(value)
        elif isinstance(widget, Select):
            self._load_select(spec, widget, value)
        elif isinstance(widget, Input):
            widget.value = to_text(value)

    def _load_select(self, spec: FieldSpec, select: Select, value: Any) -> None:
        if spec.kind == LANGUAGE:
            known = {code for _label, code in LANGUAGE_OPTIONS}
            language = value.strip().lower() if isinstance(value, str) else None
            _set_select(select, list(LANGUAGE_OPTIONS), language if language in known else None)
            return
        chosen = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
        choices = self._lists if spec.kind == LIST else self._fields
        _set_select(select, _with_value(choices or [], chosen, known=choices is not None), chosen)

    def set_lists(self, lists: list[dict[str, Any]] | None, error: str | None) -> None:
        """Offer IEM's lists in the list selects; None (with `error`) when IEM could not be asked."""
        if lists is not None:
            self._lists = [(_("{name} ({id})").format(name=item.get("name", ""), id=item["listid"]), item["listid"])
                           for item in lists if isinstance(item.get("listid"), int)]
        choices = self._lists or []
        select = self._widget(self.specs["interspire.list_id"])
        assert isinstance(select, Select)
        value = _select_value(select)
        _set_select(select, _with_value(choices, value, known=self._lists is not None), value)
        self.website_lists.set_options(choices, known=self._lists is not None)
        self.row("interspire.list_id").show_note(
            _("Could not read IEM's lists: {reason}").format(reason=error) if error else None)

    def set_custom_fields(self, fields: list[dict[str, Any]] | None, error: str | None) -> None:
        """Offer the chosen list's custom fields in the first and last name selects."""
        if fields is not None:
            self._fields = [(_("{name} ({id})").format(name=item.get("name", ""), id=item["fieldid"]),
                             item["fieldid"]) for item in fields if isinstance(item.get("fieldid"), int)]
        for path in ("interspire.firstname_field_id", "interspire.lastname_field_id"):
            select = self._widget(self.specs[path])
            assert isinstance(select, Select)
            value = _select_value(select)
            _set_select(select, _with_value(self._fields or [], value, known=self._fields is not None), value)
        self.row("interspire.firstname_field_id").show_note(
            _("Could not read the list's custom fields: {reason}").format(reason=error) if error else None)

    def selected_list(self) -> int | None:
        select = self._widget(self.specs["interspire.list_id"])
        assert isinstance(select, Select)
        return _select_value(select)

    # --- what changed ---

    def _state(self, spec: FieldSpec) -> Any:
        widget = self._widget(spec)
        if spec.path == "schedule.at":
            return (self.schedule_mode.value, self._text(widget))
        if isinstance(widget, (SecretField, WebsiteListsEditor)):
            return widget.state()
        if isinstance(widget, SwitchField):
            return widget.switch.value
        if isinstance(widget, Select):
            return _select_value(widget)
        return self._text(widget)

    @staticmethod
    def _text(widget: Widget) -> str:
        assert isinstance(widget, Input)
        return widget.value.strip()

    def _states(self) -> dict[str, Any]:
        return {path: self._state(spec) for path, spec in self.specs.items()}

    @property
    def is_dirty(self) -> bool:
        return bool(self._baseline) and self._states() != self._baseline

    def changes(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Return the changed keys as {section: {key: value}} and the local problems by key path.

        A key with a local problem is left out of the changes. Problems of website rows are
        keyed "interspire.website_lists[<row index>]".
        """
        changes: dict[str, dict[str, Any]] = {}
        local: dict[str, str] = {}
        for path, spec in self.specs.items():
            if self._state(spec) == self._baseline.get(path):
                continue
            try:
                value = self._value(spec, local)
            except LocalProblem as problem:
                local[path] = str(problem)
                continue
            changes.setdefault(spec.section, {})[spec.key] = value
        return changes, local

    def _value(self, spec: FieldSpec, local: dict[str, str]) -> Any:
        widget = self._widget(spec)
        if spec.path == "schedule.at":
            if self.schedule_mode.value != SCHEDULE_AT:
                return None
            if not self._text(widget):
                raise LocalProblem(_('enter a local time of day as "HH:MM"'))
            return self._text(widget)
        if isinstance(widget, SecretField):
            return widget.value()
        if isinstance(widget, WebsiteListsEditor):
            table, row_problems = website_lists_value(list(widget.state()))
            if row_problems:
                for index, text in row_problems.items():
                    local[f"{WEBSITE_LISTS_PATH}[{index}]"] = text
                raise LocalProblem(_("correct the marked websites"))
            return table
        if isinstance(widget, SwitchField):
            return widget.switch.value
        if isinstance(widget, Select):
            return _select_value(widget)
        return to_value(spec, self._text(widget))

    # --- problems ---

    def show_problems(self, problems: list[str], local: dict[str, str] | None = None,
                      sent: dict[str, dict[str, Any]] | None = None) -> list[str]:
        """Show each problem beside its field and clear the others; return those matching no field.

        `problems` are the daemon's ("section.key = value: reason"), `local` the form's own by
        key path, and `sent` the changes the daemon checked, used to find the quoted value.
        """
        local = local or {}
        sent = sent or {}
        by_path: dict[str, list[str]] = {}
        by_website: dict[str, list[str]] = {}
        unmatched: list[str] = []
        for problem in problems:
            path = problem_path(problem)
            if path is not None and path.startswith(WEBSITE_LISTS_PATH + "."):
                website = path[len(WEBSITE_LISTS_PATH) + 1:]
                by_website.setdefault(website, []).append(self._reason(problem, path, sent, website))
            elif path is not None and path in self.specs:
                by_path.setdefault(path, []).append(self._reason(problem, path, sent))
            else:
                unmatched.append(problem)
        for path, text in local.items():
            if not path.startswith(WEBSITE_LISTS_PATH + "["):
                by_path[path] = [text]
        # A problem about a website that no row shows any more goes beside the whole table.
        by_path.setdefault(WEBSITE_LISTS_PATH, []).extend(self._show_website_problems(by_website, local))

        for path in self.specs:
            texts = by_path.get(path)
            self.row(path).show_problem("; ".join(texts) if texts else None)
        return unmatched

    def _reason(self, problem: str, path: str, sent: dict[str, dict[str, Any]], website: str | None = None) -> str:
        """Return the problem's reason; `website` is set for a problem about one row of website_lists."""
        key_path = WEBSITE_LISTS_PATH if website is not None else path
        section, key = key_path.split(".", 1)
        candidates = []
        if key in sent.get(section, {}):
            candidates.append(sent[section][key])
        if key_path in self.loaded:
            candidates.append(self.loaded[key_path])
        if website is not None:
            candidates = [value.get(website) for value in candidates if isinstance(value, dict)]
        return problem_reason(problem, path, tuple(candidates))

    def _show_website_problems(self, by_website: dict[str, list[str]], local: dict[str, str]) -> list[str]:
        """Show problems beside their website rows; return those of websites that have no row."""
        shown: set[str] = set()
        for index, row in enumerate(self.website_lists.rows):
            text = local.get(f"{WEBSITE_LISTS_PATH}[{index}]")
            website = row.state()[0]
            if text is None and website in by_website:
                text = "; ".join(by_website[website])
                shown.add(website)
            row.show_problem(text)
        return [f"{website}: {text}" for website, texts in by_website.items() if website not in shown
                for text in texts]

    # --- events from the controls ---

    def _show_schedule_mode(self) -> None:
        at = self.schedule_mode.value == SCHEDULE_AT
        self.row("schedule.at").display = at
        self.row("schedule.interval").display = not at

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if not self._loading:
            self.post_message(self.Edited(immediate=False))

    @on(Input.Blurred)
    def _input_blurred(self, event: Input.Blurred) -> None:
        if not self._loading:
            self.post_message(self.Edited(immediate=True))

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        if not self._loading:
            self.post_message(self.Edited(immediate=True))

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "field-schedule-mode":
            self._show_schedule_mode()
        if self._loading:
            return
        if event.select.id == self.specs["interspire.list_id"].widget_id:
            self.post_message(self.ListChosen(_select_value(event.select)))
        self.post_message(self.Edited(immediate=True))

