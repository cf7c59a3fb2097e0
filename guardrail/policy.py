"""The operator's policy: one validated schema for the YAML files in policies/.

A policy turns a verdict into an action. Rules are read top to bottom and the
first that matches wins:

    rules:
      - when: {role: user, level: unsafe, categories: [suicide_self_harm]}
        action: replace            # allow | replace | block
        message: escalation        # a key of `messages`
        notify: true               # call the operator hook

``allow`` with a ``message`` adds it ``before`` or ``after`` the reply (a gentle
check-in); ``replace`` swaps the reply for the message (escalation); ``block``
refuses. Messages are fixed, reviewable templates whose placeholders
(``{crisis_line}``, ``{text_line}``, ``{emergency}``...) are filled from a versioned
resources table keyed by the configured country, never guessed from the text.

Errors name the file, the key and what is wrong (:class:`PolicyError`).
"""
from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from .taxonomy import CATEGORIES, LEVELS

def data_dir(name: str) -> Path:
    """A folder the package ships (``policies``, ``rails``): inside the installed package
    (the wheel puts them there), else at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    return here / name if (here / name).is_dir() else here.parent / name


POLICY_DIR = data_dir("policies")
DEFAULT_POLICY = POLICY_DIR / "default.yaml"
POLICY_ENV = "GUARDRAIL_POLICY"
COUNTRY_ENV = "GUARDRAIL_COUNTRY"

Action = Literal["allow", "replace", "block"]


class PolicyError(ValueError):
    """A policy or resources file that cannot be used; the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- resources ------------------------------------------------------------------------

class Resource(_Strict):
    """Crisis contacts of one country, as they appear in the templates."""

    name: str                      # country name, e.g. "United States"
    crisis_line: str               # call
    text_line: str                 # text or chat
    emergency: str                 # emergency number
    website: str = "https://findahelpline.com"
    therapist_finder: Optional[str] = None   # how to find a licensed therapist; empty: the fallback's


class Resources(_Strict):
    """The versioned resources table (policies/resources.yaml)."""

    version: str
    fallback: Resource             # used when the country is not in the table
    countries: dict[str, Resource]

    @field_validator("countries")
    @classmethod
    def _upper(cls, v: dict[str, Resource]) -> dict[str, Resource]:
        return {k.upper(): r for k, r in v.items()}

    def lookup(self, country: str | None) -> tuple[Resource, bool]:
        """The resource for ``country`` and whether it was found (else the fallback)."""
        if country and country.upper() in self.countries:
            return self.countries[country.upper()], True
        return self.fallback, False


# --- policy ---------------------------------------------------------------------------

def known_categories(adapter: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The category names a policy may use: the six built-in risks, then the categories
    taught into ``adapter`` (default: the adapter ``Classifier.load()`` would use), read from
    their JSON records alone so that checking a policy loads no model."""
    from .classifier import Classifier
    from .taught import taught_names

    return CATEGORIES + tuple(taught_names(adapter or Classifier.default_path()))


def _check_categories(names: Any, info: ValidationInfo) -> None:
    """Names must be built-in or taught categories; which are taught comes from the
    validation context (``{"categories": [...]}``), else from the default adapter."""
    known = (info.context or {}).get("categories") or known_categories()
    for c in names or []:
        if c not in known:
            raise ValueError(f"unknown category {c!r}; expected one of {', '.join(known)} "
                             f"(taught categories come from the adapter: guardrail teach)")


class Match(_Strict):
    """When a rule applies. Empty fields match anything."""

    role: Literal["user", "assistant", "any"] = "any"
    level: list[Literal["safe", "borderline", "unsafe"]] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)   # any of these flagged

    @field_validator("level", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("categories", mode="before")
    @classmethod
    def _known(cls, v: Any, info: ValidationInfo) -> Any:
        v = [v] if isinstance(v, str) else v
        _check_categories(v, info)
        return v


class Rule(_Strict):
    when: Match = Field(default_factory=Match)
    action: Action
    message: Optional[str] = None            # a key of Policy.messages
    position: Literal["before", "after"] = "after"   # for allow + message
    notify: bool = False

    @model_validator(mode="after")
    def _needs_message(self) -> "Rule":
        if self.action in ("replace", "block") and not self.message:
            raise ValueError(f"action {self.action!r} needs a message (a key of `messages`)")
        return self


class Notify(_Strict):
    """Operator hook for crisis events: a Python callable ``module:function`` or a command.

    The hook gets an event dict (conversation id, role, level, categories, scores,
    action, policy); the message text only when ``include_text`` is true.
    """

    callable: Optional[str] = None
    command: Optional[list[str]] = None
    include_text: bool = False
    timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _one(self) -> "Notify":
        if bool(self.callable) == bool(self.command):
            raise ValueError("give exactly one of `callable` (module:function) or `command` (a list)")
        if self.callable and ":" not in self.callable:
            raise ValueError(f"callable {self.callable!r} must look like 'package.module:function'")
        return self


class Audit(_Strict):
    """Where non-safe verdicts and actions are recorded (see guardrail/audit.py).

    ``path`` is relative to the policy file; $GUARDRAIL_AUDIT_DB overrides it; empty
    means the user's state folder. ``url`` (``postgresql://...``) puts the log in PostgreSQL
    instead, for several workers or replicas; $GUARDRAIL_AUDIT_URL overrides both.
    The text is kept only with ``include_text``. ``retention_days`` deletes older events
    (at open and every 500 events); empty keeps all."""

    enabled: bool = True
    path: Optional[str] = None
    url: Optional[str] = None
    include_text: bool = False
    synchronous: Literal["FULL", "NORMAL"] = "FULL"   # FULL: durable across power loss too
    retention_days: Optional[PositiveFloat] = None


    @field_validator("url")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        if v and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"url {v!r} must be a postgresql:// URL (an SQLite file goes in `path`)")
        return v


class Streaming(_Strict):
    """How a streamed reply is judged (``Guard.stream_output``): ``hold_back`` releases text to
    the user only after the window it is in was judged, the reply so far with the
    conversation as context; an unsafe window stops the stream with the policy's message.
    ``window_growth`` above 1 makes later windows longer (up to ``max_window_words``): the
    first words still wait for one short window, and a long reply costs fewer judge calls."""

    mode: Literal["hold_back"] = "hold_back"
    window_words: int = Field(24, ge=4, le=1000)   # words held back and judged at a time (the first window)
    window_growth: float = Field(2.0, ge=1.0, le=4.0)   # each later window this many times the one before ...
    max_window_words: int = Field(96, ge=4, le=4000)    # ... up to this: fewer judge calls on a long reply


class Policy(_Strict):
    """One operator policy. See policies/default.yaml for a commented example."""

    name: str
    version: str
    description: str = ""
    country: Optional[str] = None                 # resources key; $GUARDRAIL_COUNTRY overrides
    resources: str = "resources.yaml"             # relative to the policy file
    thresholds: dict[str, float] = Field(default_factory=dict)   # override the adapter's
    sticky_turns: int = Field(3, ge=0, le=100)    # user turns kept at least borderline after unsafe
    context_turns: int = Field(6, ge=0, le=50)    # previous turns kept per conversation
    state: Optional[str] = None                   # where conversations are kept: memory (default) or
                                                  # redis://HOST:PORT/DB for workers and replicas; $GUARDRAIL_STATE overrides
    state_ttl_hours: PositiveFloat = 24           # an idle conversation is forgotten after this long
    reply_alone: bool = True                      # also judge replies without the conversation; keep the riskier
    streaming: Streaming = Field(default_factory=Streaming)
    failure_mode: dict[Literal["user", "assistant"], Literal["closed", "open"]] = Field(
        default_factory=lambda: {"user": "closed", "assistant": "open"})
    notify: Optional[Notify] = None
    audit: Audit = Field(default_factory=Audit)
    messages: dict[str, str]
    rules: list[Rule]
    default: Rule = Field(default_factory=lambda: Rule(action="allow"))

    @field_validator("state")
    @classmethod
    def _state(cls, v: Optional[str]) -> Optional[str]:
        if v and v.strip() != "memory" and v.split("://", 1)[0] not in ("redis", "rediss", "unix"):
            raise ValueError(f"state {v!r} must be 'memory' or a redis://HOST:PORT/DB URL")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        _check_categories(list(v), info)
        for c, t in v.items():
            if not 0.0 < float(t) < 1.0:
                raise ValueError(f"threshold for {c} is {t}; it must be between 0 and 1 (exclusive)")
        return v

    @model_validator(mode="after")
    def _references(self) -> "Policy":
        problems = reference_problems(self.model_dump())
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def rule_for(self, role: str, level: str, categories: list[str]) -> Rule:
        """The first rule matching this (role, level, flagged categories), else the default."""
        for rule in self.rules:
            w = rule.when
            if w.role not in ("any", role):
                continue
            if w.level and level not in w.level:
                continue
            if w.categories and not set(w.categories) & set(categories):
                continue
            return rule
        return self.default


def reference_problems(data: dict) -> list[str]:
    """Every broken reference in a policy mapping (raw YAML or a model dump): rules naming a
    message that is not defined, notify without a hook, template placeholders that are not
    resource fields. Works on the raw mapping too, so ``check_policy`` reports these
    together with schema errors instead of one round after them."""
    problems = []
    messages = data.get("messages") if isinstance(data.get("messages"), dict) else {}
    rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    default = data.get("default") if isinstance(data.get("default"), dict) else None
    for i, rule in enumerate([*rules, default]):
        if not isinstance(rule, dict):
            continue
        where = f"rules.{i}" if i < len(rules) else "default"
        message = rule.get("message")
        if isinstance(message, str) and message not in messages:
            problems.append(f"{where}.message: {message!r} is not defined under `messages` "
                            f"(defined: {', '.join(sorted(messages)) or 'none'}); add it or fix the name")
        if rule.get("notify") is True and not data.get("notify"):
            problems.append(f"{where}.notify: true, but the policy has no `notify` hook; add one or set false")
    allowed = set(Resource.model_fields)
    for key, text in messages.items():
        if not isinstance(text, str):
            continue
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as e:
            problems.append(f"messages.{key}: bad template ({e}); write literal braces as {{{{ }}}}")
            continue
        unknown = fields - allowed
        if unknown:
            problems.append(f"messages.{key}: unknown placeholder(s) {sorted(unknown)}; "
                            f"use {', '.join('{' + f + '}' for f in sorted(allowed))}")
    return problems


def shipped_policies() -> list[str]:
    """Names of the policies in the shipped policies folder (``default``, ``teen``, ...)."""
    return sorted(p.stem for p in POLICY_DIR.glob("*.yaml") if p.stem != "resources")


class LoadedPolicy:
    """A policy with its resources resolved for one country: templates ready to render."""

    def __init__(self, policy: Policy, resources: Resources, country: str | None, path: Path | None):
        self.policy = policy
        self.resources = resources
        self.path = path
        self.country = country
        self.resource, self.country_found = resources.lookup(country)
        fallback = resources.fallback.model_dump()
        values = {k: v if v is not None else fallback[k] for k, v in self.resource.model_dump().items()}
        self.messages = {}
        for key, text in policy.messages.items():
            missing = [f for _, f, _, _ in string.Formatter().parse(text) if f and values.get(f) is None]
            if missing:
                raise PolicyError(f"{path or 'policy'}: messages.{key} uses {{{missing[0]}}}, but the resources "
                                  f"table (v{resources.version}) has no {missing[0]} for {self.resource.name} "
                                  f"nor in its fallback; add one")
            self.messages[key] = text.format_map(values).strip()

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def version(self) -> str:
        return self.policy.version

    def __repr__(self) -> str:
        return (f"LoadedPolicy({self.name!r} v{self.version}, country={self.country!r}, "
                f"resources v{self.resources.version})")


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see policies/default.yaml)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PolicyError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PolicyError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_resources(path: str | os.PathLike) -> Resources:
    path = Path(path)
    try:
        return Resources.model_validate(_read_yaml(path, "resources"))
    except ValidationError as e:
        raise PolicyError(f"{path}: invalid resources table:\n{_describe(e)}") from None


def resolve_policy_path(source: Union[str, os.PathLike, None]) -> Path:
    """A policy path from a path, a shipped name (``"teen"``), $GUARDRAIL_POLICY or the default.
    A name that is neither a file nor a shipped policy is an error listing the shipped ones."""
    source = source or os.environ.get(POLICY_ENV) or DEFAULT_POLICY
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not path.suffix and (POLICY_DIR / f"{source}.yaml").exists():
        return POLICY_DIR / f"{source}.yaml"
    raise PolicyError(f"policy file not found: {path}; give a path to a YAML file or one of the "
                      f"shipped policies: {', '.join(shipped_policies())}")


def check_policy(source: Union[str, os.PathLike], categories: Sequence[str] | None = None) -> list[str]:
    """Every problem of one policy file at once (schema, references, resources table,
    country), each as ``file: key: what is wrong and the fix``; empty when it is fine.
    Loads no model, so CI and editors can run it (``guardrail policy check FILE...``).
    ``categories``: the names rules may use (default: :func:`known_categories`)."""
    try:
        path = resolve_policy_path(source)
        data = _read_yaml(path, "policy")
    except PolicyError as e:
        return [str(e)]
    problems: list[str] = []
    context = {"categories": tuple(categories or known_categories())}
    try:
        policy = Policy.model_validate(data, context=context)
    except ValidationError as e:
        policy = None
        for line in _describe(e).splitlines():
            line = line.strip()
            if line and line not in problems:
                problems.append(line)
        problems += [p for p in reference_problems(data) if p not in problems and not any(p in q for q in problems)]
    resources_name = policy.resources if policy else data.get("resources", "resources.yaml")
    if isinstance(resources_name, str):
        try:
            resources = load_resources(path.parent / resources_name)
            country = policy.country if policy else data.get("country")
            if isinstance(country, str) and not resources.lookup(country)[1]:
                problems.append(f"country: {country!r} is not in {resources_name} (has: "
                                f"{', '.join(sorted(resources.countries))}); its fallback would be used")
        except PolicyError as e:
            problems.append(f"resources: {e}")
    return [f"{path}: {p}" for p in problems]


def load_policy(source: Union[str, os.PathLike, dict, None] = None, country: str | None = None,
                categories: Sequence[str] | None = None) -> LoadedPolicy:
    """Load and validate a policy file (default: $GUARDRAIL_POLICY or policies/default.yaml).

    ``source`` may also be a policy name from policies/ (``"teen"``) or an already
    parsed dict. ``country`` overrides the policy's ``country`` (so does $GUARDRAIL_COUNTRY).
    ``categories`` are the names rules may use: the classifier's (``Guard.load`` passes
    them), else the built-in ones and those taught into the default adapter.
    """
    if isinstance(source, dict):
        path, data, base = None, source, POLICY_DIR
    else:
        path = resolve_policy_path(source)
        data, base = _read_yaml(path, "policy"), path.parent
    where = str(path) if path else "policy"
    try:
        policy = Policy.model_validate(data, context={"categories": tuple(categories or known_categories())})
    except ValidationError as e:
        raise PolicyError(f"{where}: invalid policy:\n{_describe(e)}") from None
    resources = load_resources(base / policy.resources)
    country = country or os.environ.get(COUNTRY_ENV) or policy.country
    return LoadedPolicy(policy, resources, country, path)
