"""The task types on sale: the models offered for each, their prices and allowed options,
kept in Firestore.

Document ``config/catalog``: ``{"task_types": {name: {"options": {option: spec},
"models": {model_id: {"cost": int, "provider": str, "model": str, "description": str,
"options": {option: spec}}}, "default_model": model_id}}}``. A model's own ``options``, when
present, are all it takes (image models differ: GPT image models take no ``style`` and none
of the legacy sizes); without them, the task type's. An option spec is ``{"type": "integer"|"number"|"string",
"min", "max", "enum", "required"}``. A model's ``provider`` names a configured AI endpoint
(``default``: the ``AI_*`` settings; others: ``AI_PROVIDERS``) and ``model`` the name that
endpoint knows it by; without one, the provider's configured model for the task (``AI_MODEL``,
``AI_IMAGE_MODEL``). A model on a provider this deployment does not configure is listed but
unavailable, so one catalog can serve environments with different providers.

The shape before models, ``{"cost": int, "options": {...}}``, still reads: as one model,
``standard``, on the default provider at that cost. Operators change prices, models and
options there without a deploy; a job keeps the price and model it was submitted with.
``DEFAULT_CATALOG`` is what ``scripts/seed`` writes and what applies while the document is
missing. A document that does not parse is refused (``503 catalog_invalid``, and ``health``
says so) rather than guessed at.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from shared import prompts
from shared.db import client
from shared.errors import InvalidRequest, Unavailable
from shared.settings import DEFAULT_PROVIDER, Endpoint, get_settings

logger = logging.getLogger("aijobs.catalog")
STANDARD_MODEL = "standard"
"""The one model of a task type stored in the shape before models (and of ``DEFAULT_CATALOG``)."""
MODEL_OPTION = "model"
"""The option that picks a model; reserved: no task type may define an option of this name."""
ModelId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")]

TEXT_TASKS = ("summarize", "translate", "generate_text")
LANGUAGES = [
    "Arabic",
    "Chinese",
    "Dutch",
    "English",
    "French",
    "German",
    "Hindi",
    "Italian",
    "Japanese",
    "Korean",
    "Polish",
    "Portuguese",
    "Russian",
    "Spanish",
    "Swedish",
    "Turkish",
]
_GENERATION = {
    "max_tokens": {"type": "integer", "min": 1, "max": 2048},
    "temperature": {"type": "number", "min": 0, "max": 2},
}
# The default provider's configured model at 1 credit: AI_MODEL (or AI_IMAGE_MODEL) decides
# what runs, so the same catalog serves the local model, the tests' fake and production.
_STANDARD = {
    "models": {STANDARD_MODEL: {"cost": 1, "provider": DEFAULT_PROVIDER}},
    "default_model": STANDARD_MODEL,
}
# What GPT image models take (gpt-image-1 is production's AI_IMAGE_MODEL), per the openai SDK's
# images.generate: no `style`, no 256x256/512x512 (retired DALL-E models), always base64.
_GPT_IMAGE = {
    "size": {"type": "string", "enum": ["auto", "1024x1024", "1536x1024", "1024x1536"]},
    "quality": {"type": "string", "enum": ["auto", "low", "medium", "high"]},
}
DEFAULT_CATALOG: dict[str, Any] = {
    "task_types": {
        "summarize": {"options": {"max_words": {"type": "integer", "min": 10, "max": 1000}}, **_STANDARD},
        "translate": {
            "options": {
                "target_language": {"type": "string", "enum": LANGUAGES, "required": True},
                "source_language": {"type": "string", "enum": LANGUAGES},
            },
            **_STANDARD,
        },
        "generate_text": {"options": _GENERATION, **_STANDARD},
        "chat": {"options": _GENERATION, **_STANDARD},
        "generate_image": {
            "options": _GPT_IMAGE,
            "models": {STANDARD_MODEL: {"cost": 1, "provider": DEFAULT_PROVIDER, "options": _GPT_IMAGE}},
            "default_model": STANDARD_MODEL,
        },
    }
}


class ModelOffer(BaseModel):
    """One model on sale for a task type, as stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost: int = Field(ge=1, le=1_000_000)
    """Credits a job on this model is charged (at submit; a later change applies to new jobs)."""
    provider: str = DEFAULT_PROVIDER
    """A configured AI endpoint's name; one this deployment lacks makes the model unavailable."""
    model: str = ""
    """The name the provider knows it by; empty: the provider's configured model for the task."""
    description: str = ""
    """For pricing pages; shown as is."""
    options: dict[str, dict[str, Any]] | None = None
    """Every option this model takes; ``None``: the task type's."""


def _check_specs(options: Mapping[str, Mapping[str, Any]], where: str) -> None:
    if MODEL_OPTION in options:
        raise ValueError(f"{where}: {MODEL_OPTION!r} is reserved: it picks one of the models")
    for name, option in options.items():
        if option.get("type", "string") not in ("integer", "number", "string"):
            raise ValueError(f"{where}: option {name!r} has no type integer, number or string")


class TaskTypeSpec(BaseModel):
    """One task type as stored: its options and the models that serve it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: dict[ModelId, ModelOffer] = Field(min_length=1)
    default_model: str

    @model_validator(mode="before")
    @classmethod
    def _before_models(cls, data: Any) -> Any:
        # The shape before models: its cost becomes the price of one model on the default provider.
        if isinstance(data, Mapping) and "models" not in data and "default_model" not in data:
            rest = {k: v for k, v in data.items() if k != "cost"}
            standard = {"cost": data.get("cost", 1), "provider": DEFAULT_PROVIDER}
            return {**rest, "models": {STANDARD_MODEL: standard}, "default_model": STANDARD_MODEL}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TaskTypeSpec:
        if self.default_model not in self.models:
            raise ValueError("default_model is not one of its models")
        _check_specs(self.options, "options")
        for model_id, offer in self.models.items():
            if offer.options is not None:
                _check_specs(offer.options, f"model {model_id}")
        return self

    def options_of(self, model_id: str) -> dict[str, dict[str, Any]]:
        """The options ``model_id`` takes: its own, else the task type's."""
        offer = self.models[model_id]
        return self.options if offer.options is None else offer.options


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    task_types: dict[str, TaskTypeSpec]


@dataclass(frozen=True)
class Route:
    """Where a job's AI call goes, recorded on the job at submit: a provider and its model name."""

    provider: str
    model: str


@dataclass(frozen=True)
class Choice:
    """What a job is sold: the catalog's model, its route and its price."""

    model: str
    route: Route
    cost: int

    def recorded(self) -> dict[str, Any]:
        """The job document's fields: the worker calls this route, whatever the catalog says later."""
        return {"model": self.model, "provider": self.route.provider, "provider_model": self.route.model}


_lock = threading.Lock()
_cached: tuple[float, Catalog] | None = None


def catalog_ref() -> Any:
    return client().collection("config").document("catalog")


def load() -> Catalog:
    """The catalog, cached per instance for ``CATALOG_CACHE_SECONDS``; a document that does not
    parse is ``503 catalog_invalid`` (logged with what is wrong) and is not cached."""
    global _cached
    ttl = get_settings().catalog_cache_seconds
    with _lock:
        if _cached is not None and time.monotonic() - _cached[0] < ttl:
            return _cached[1]
    snapshot = catalog_ref().get()
    data = snapshot.to_dict() if snapshot.exists else None
    try:
        parsed = Catalog.model_validate(data or DEFAULT_CATALOG)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        logger.error("config/catalog is invalid: %s", where)
        raise Unavailable("the task catalog is misconfigured; retry later", code="catalog_invalid") from None
    with _lock:
        _cached = (time.monotonic(), parsed)
    return parsed


def task_types() -> dict[str, TaskTypeSpec]:
    """The configured task types (see ``load``)."""
    return load().task_types


def _check_option(name: str, value: Any, spec: dict[str, Any]) -> None:
    kind = spec.get("type", "string")
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
    }.get(kind, False)
    if not ok:
        raise InvalidRequest(f"option {name!r} must be a {kind}", code="invalid_option")
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(map(str, spec["enum"]))
        raise InvalidRequest(f"option {name!r} must be one of: {allowed}", code="invalid_option")
    if ("min" in spec and value < spec["min"]) or ("max" in spec and value > spec["max"]):
        raise InvalidRequest(
            f"option {name!r} must be between {spec.get('min')} and {spec.get('max')}",
            code="invalid_option",
        )


def _served_as(task_type: str, offer: ModelOffer, endpoints: Mapping[str, Endpoint]) -> str:
    """The provider's name of the model; empty when this deployment cannot run it."""
    endpoint = endpoints.get(offer.provider)
    if endpoint is None or not prompts.supported(task_type):
        return ""
    return offer.model or endpoint.model_for(task_type)


def choose(task_type: str, options: Mapping[str, Any]) -> Choice:
    """The model a job runs on (``options.model``, else the default) and its price, after
    checking the options against the catalog. Every refusal is a 422 before any charge."""
    types = task_types()
    if task_type not in types:
        known = ", ".join(sorted(types))
        # The client's value is not echoed (it may be 60 KB long); the known ones are named.
        raise InvalidRequest(f"unknown task_type; known: {known}", code="unknown_task_type")
    spec = types[task_type]
    asked = options.get(MODEL_OPTION, spec.default_model)
    if not isinstance(asked, str):
        raise InvalidRequest(f"option {MODEL_OPTION!r} must be a string", code="invalid_option")
    offered = ", ".join(sorted(spec.models))
    if asked not in spec.models:
        raise InvalidRequest(f"unknown model for {task_type}; offered: {offered}", code="unknown_model")
    endpoints = get_settings().endpoints()
    offer = spec.models[asked]
    name = _served_as(task_type, offer, endpoints)
    if not name:
        available = sorted(m for m, o in spec.models.items() if _served_as(task_type, o, endpoints))
        if not available:
            raise InvalidRequest(
                f"the configured AI endpoints cannot serve {task_type}", code="task_type_unsupported"
            )
        raise InvalidRequest(
            f"model {asked!r} of {task_type} is not available here; available: {', '.join(available)}",
            code="model_unavailable",
        )
    # Checked against the chosen model's options: what one image model takes another may refuse.
    takes = spec.options_of(asked)
    for key, value in options.items():
        if key == MODEL_OPTION:
            continue
        if key not in takes:
            names = ", ".join(sorted([*takes, MODEL_OPTION]))
            raise InvalidRequest(
                f"unknown option for {task_type} on model {asked}; allowed: {names}", code="invalid_option"
            )
        _check_option(key, value, takes[key])
    for key, option in takes.items():
        if option.get("required") and key not in options:
            raise InvalidRequest(f"option {key!r} is required for {task_type}", code="invalid_option")
    return Choice(model=asked, route=Route(offer.provider, name), cost=offer.cost)


def price(task_type: str, options: Mapping[str, Any]) -> int:
    """The cost of a job after checking its options and model against the catalog."""
    return choose(task_type, options).cost


def run_options(job: Mapping[str, Any]) -> dict[str, Any]:
    """The options a job's AI call gets: its own, with ``model`` the ``Route`` recorded at submit.

    A job from before models has no route: the provider runs it on the default endpoint's
    configured model, as it would have then."""
    options = {k: v for k, v in (job.get("options") or {}).items() if k != MODEL_OPTION}
    if job.get("provider_model"):
        options[MODEL_OPTION] = Route(
            str(job.get("provider") or DEFAULT_PROVIDER), str(job["provider_model"])
        )
    return options


class OptionPublic(BaseModel):
    """What an option takes."""

    type: Literal["integer", "number", "string"] = "string"
    required: bool = False
    min: int | float | None = None
    max: int | float | None = None
    enum: list[str | int | float] | None = None


class ModelPublic(BaseModel):
    """A model on sale for a task type."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """What ``options.model`` names."""
    cost: int
    """Credits a job on it costs."""
    available: bool
    """Whether this deployment can run it now; a job on an unavailable one is 422, uncharged."""
    description: str | None = None
    options: dict[str, OptionPublic] = {}
    """Besides ``model``, what ``options`` may hold on this model."""


class TaskTypePublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    task_type: str
    default_model: str
    """The model a job without ``options.model`` runs on."""
    models: list[ModelPublic]
    """Cheapest first."""
    options: dict[str, OptionPublic]
    """Besides ``model``, what ``options`` may hold on a model without options of its own."""


class CatalogPublic(BaseModel):
    """Answer of ``GET /catalog``: what is on sale, at what price (the same for every user)."""

    task_types: list[TaskTypePublic]


def public() -> CatalogPublic:
    """The catalog as clients and pricing pages see it, availability included."""
    endpoints = get_settings().endpoints()
    listed = []
    for name, spec in sorted(task_types().items()):
        models = [
            ModelPublic(
                id=model_id,
                cost=offer.cost,
                available=bool(_served_as(name, offer, endpoints)),
                description=offer.description or None,
                options={
                    o: OptionPublic.model_validate(s) for o, s in sorted(spec.options_of(model_id).items())
                },
            )
            for model_id, offer in sorted(spec.models.items(), key=lambda item: (item[1].cost, item[0]))
        ]
        options = {o: OptionPublic.model_validate(s) for o, s in sorted(spec.options.items())}
        listed.append(
            TaskTypePublic(task_type=name, default_model=spec.default_model, models=models, options=options)
        )
    return CatalogPublic(task_types=listed)
