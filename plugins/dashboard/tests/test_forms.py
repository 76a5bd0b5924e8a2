"""Forms from JSON schemas: what each kind of schema becomes, and a submitted form read back.

Schemas are the ones ``ctx.interrupt(schema=...)`` records: pydantic's (through the kernel's
``json_schema_of``), or a JSON schema given as a dict. Every answer read back is checked with
the kernel's own validator, as recording it would.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pyagent_dashboard.forms import answer_of, fields_of, place_problems
from pydantic import BaseModel, Field

from pyagent import Approval
from pyagent.model.interrupts import json_schema_of, validate_answer


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    city: str
    zip: str | None = None


class Order(BaseModel):
    """An order to ship."""

    quantity: int = Field(ge=1, le=10)
    price: float
    express: bool = False
    colour: Colour
    size: Literal["S", "M", "L"] = "M"
    gift_note: str | None = None
    ship_to: Address
    labels: list[str] = []
    lucky_numbers: list[int] = []
    extras: list[Literal["wrap", "card", "ribbon"]] = []
    attributes: dict[str, str] = {}


def kinds(form: Any) -> dict[str, str]:
    return {f.name: f.kind for f in form.walk()}


def test_a_pydantic_model_becomes_one_field_per_property() -> None:
    form = fields_of(json_schema_of(Order))
    assert form.kind == "object" and form.description == "An order to ship."
    assert kinds(form) == {
        "answer": "object", "answer.quantity": "integer", "answer.price": "number", "answer.express": "boolean",
        "answer.colour": "select", "answer.size": "select", "answer.gift_note": "text",
        "answer.ship_to": "object", "answer.ship_to.street": "text", "answer.ship_to.city": "text",
        "answer.ship_to.zip": "text", "answer.labels": "lines", "answer.lucky_numbers": "lines",
        "answer.extras": "checks", "answer.attributes": "json"}
    by = {f.name: f for f in form.walk()}
    assert [f.name for f in form.walk() if f.required] == [
        "answer", "answer.quantity", "answer.price", "answer.colour", "answer.ship_to",
        "answer.ship_to.street", "answer.ship_to.city"]
    assert by["answer.quantity"].attrs == {"step": "1", "min": 1, "max": 10}
    assert [o.value for o in by["answer.colour"].options] == ["red", "green"]  # through $defs
    assert by["answer.size"].initial() == "1"  # the default, M, is chosen
    assert by["answer.express"].initial() == "false"
    assert by["answer.gift_note"].nullable and by["answer.ship_to.zip"].nullable
    assert by["answer.lucky_numbers"].item == "integer"


def test_a_submitted_form_reads_back_into_an_answer_the_kernel_accepts() -> None:
    schema = json_schema_of(Order)
    form = fields_of(schema)
    submitted = {
        "answer.quantity": "3", "answer.price": "9.5", "answer.express": "true", "answer.colour": "1",
        "answer.size": "2", "answer.gift_note": "", "answer.ship_to.street": "1 Main St",
        "answer.ship_to.city": "Springfield", "answer.ship_to.zip": "", "answer.labels": "fragile\r\n\r\nthis side up",
        "answer.lucky_numbers": "7\n 13 ", "answer.extras[0]": "1", "answer.extras[2]": "1",
        "answer.attributes": '{"gate": "B"}'}
    value, problems = answer_of(form, submitted)
    assert problems == {}
    assert value == {"quantity": 3, "price": 9.5, "express": True, "colour": "green", "size": "L",
                     "ship_to": {"street": "1 Main St", "city": "Springfield"},
                     "labels": ["fragile", "this side up"], "lucky_numbers": [7, 13], "extras": ["wrap", "ribbon"],
                     "attributes": {"gate": "B"}}
    assert validate_answer(value, schema) == []
    assert Order.model_validate(value).colour is Colour.GREEN


def test_what_cannot_be_read_is_said_by_field_and_the_kernel_says_the_rest() -> None:
    schema = json_schema_of(Order)
    form = fields_of(schema)
    value, problems = answer_of(form, {"answer.quantity": "three", "answer.price": "inf", "answer.colour": "9",
                                       "answer.lucky_numbers": "1\nx", "answer.attributes": "{gate: B}"})
    assert problems["answer.quantity"] == ["'three' is not a whole number"]
    assert problems["answer.price"] == ["'inf' is not a finite number"]
    assert problems["answer.colour"] == ["'9' is not one of the choices"]
    assert problems["answer.lucky_numbers"] == ["line 2: 'x' is not a whole number"]
    assert problems["answer.attributes"][0].startswith("is not JSON (Expecting property name")
    # Well-formed but out of the schema: the kernel's messages land on their fields.
    value, problems = answer_of(form, {"answer.quantity": "11", "answer.price": "1", "answer.colour": "0",
                                       "answer.ship_to.street": "x", "answer.lucky_numbers": "1"})
    assert problems == {}
    placed, general = place_problems(form, validate_answer(value, schema))
    assert placed == {"answer.quantity": ["must be <= 10"], "answer.ship_to.city": ["is required"]}
    assert general == []
    placed, general = place_problems(form, ["answer.lucky_numbers[0]: must be >= 5", "answer.nope: is not allowed",
                                            "something else entirely"])
    assert placed == {"answer.lucky_numbers": ["answer.lucky_numbers[0]: must be >= 5"],
                      "answer": ["answer.nope: is not allowed"]}
    assert general == ["something else entirely"]


def test_the_default_approval_and_plain_types() -> None:
    approval = fields_of(json_schema_of(Approval))
    assert kinds(approval) == {"answer": "object", "answer.approved": "boolean", "answer.comment": "text"}
    value, problems = answer_of(approval, {"answer.approved": "false", "answer.comment": ""})
    assert (value, problems) == ({"approved": False}, {})
    assert validate_answer(value, json_schema_of(Approval)) == []
    # A question whose answer is a yes/no, a number, one of a few words.
    yes_no = fields_of(json_schema_of(bool))
    assert yes_no.kind == "boolean" and answer_of(yes_no, {"answer": "true"}) == (True, {})
    assert answer_of(yes_no, {}) == (None, {"answer": ["an answer is needed"]})
    number = fields_of(json_schema_of(float))
    assert answer_of(number, {"answer": "2"}) == (2, {}) and answer_of(number, {"answer": "2.5"}) == (2.5, {})
    choice = fields_of(json_schema_of(Literal["ship", "hold", 3]))
    assert choice.kind == "select" and [o.label for o in choice.options] == ["ship", "hold", "3"]
    assert answer_of(choice, {"answer": "2"}) == (3, {})
    optional = fields_of(json_schema_of(int | None))
    assert optional.kind == "integer" and optional.nullable
    assert answer_of(optional, {"answer": ""}) == (None, {})


def test_a_question_without_a_schema_takes_text_or_json() -> None:
    free = fields_of({})
    assert free.kind == "free" and fields_of(None).kind == "free"
    assert answer_of(free, {"answer": "ship it\r\ntoday"}) == ("ship it\ntoday", {})
    assert answer_of(free, {"answer": ' {"ok": true, "n": 2} '}) == ({"ok": True, "n": 2}, {})
    assert answer_of(free, {"answer": "42"}) == (42, {})
    assert answer_of(free, {"answer": '"42"'}) == ("42", {})  # quoted: the text 42
    assert answer_of(free, {"answer": "  "}) == (None, {"answer": ["an answer is needed"]})


def test_schemas_given_as_dicts_and_what_becomes_json() -> None:
    schema = {
        "type": "object", "required": ["mode", "when"],
        "properties": {
            "mode": {"const": "manual"},
            "when": {"type": "string", "format": "date", "title": "Ship on"},
            "story": {"type": "string", "maxLength": 2000},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "pairs": {"type": "array", "items": {"type": "array"}},
            "level": {"type": ["integer", "null"]},
            "deep": {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {
                "type": "object", "properties": {"c": {"type": "object", "properties": {"d": {"type": "string"}}}}}}}}},
        }}
    form = fields_of(schema)
    by = {f.name: f for f in form.walk()}
    assert by["answer.mode"].kind == "const" and by["answer.mode"].const == "manual"
    assert by["answer.when"].label == "Ship on" and by["answer.when"].attrs == {"type": "date"}
    assert by["answer.story"].kind == "textarea"
    assert by["answer.either"].kind == "json" and by["answer.pairs"].kind == "json"
    assert by["answer.level"].kind == "integer" and by["answer.level"].nullable
    assert by["answer.deep.a.b.c"].kind == "json"  # nested deeper than the form goes: JSON
    value, problems = answer_of(form, {"answer.when": "2026-05-01", "answer.either": '"x"',
                                       "answer.pairs": "[[1, 2]]", "answer.deep.a.b.c": '{"d": "e"}'})
    assert problems == {}
    assert value == {"mode": "manual", "when": "2026-05-01", "either": "x", "pairs": [[1, 2]],
                     "deep": {"a": {"b": {"c": {"d": "e"}}}}}
    assert validate_answer(value, schema) == []
