"""$process-message: message Bundles ("new vedtak", "discharge summary") are stored in the
tenant, found by others and answered with a response message; a message sent again is not
stored twice; malformed messages get an OperationOutcome (4xx, never 500) pointing at the
problem, and nothing is stored."""

from __future__ import annotations

import copy

import pytest

from tests.events.conftest import FHIR, event_numbers, focuses, post, subscription

EVENTS = "http://fkj.no/fhir/CodeSystem/message-event"


def message(**header_extra) -> dict:
    """A vendor's "discharge summary" message: MessageHeader, Patient, Encounter,
    Composition (the summary), referencing each other by fullUrl and Type/id."""
    header = {"resourceType": "MessageHeader", "id": "mh-1",
              "eventCoding": {"system": EVENTS, "code": "utskrivningsrapport"},
              "source": {"endpoint": "http://sykehus.example/fhir"},
              "focus": [{"reference": "Composition/c1"}], **header_extra}
    base = "http://sykehus.example/fhir"
    return {"resourceType": "Bundle", "type": "message", "timestamp": "2026-01-01T10:00:00Z",
            "entry": [
                {"fullUrl": f"{base}/MessageHeader/mh-1", "resource": header},
                {"fullUrl": f"{base}/Patient/p1",
                 "resource": {"resourceType": "Patient", "id": "p1",
                              "name": [{"family": "Meldingsen"}]}},
                {"fullUrl": f"{base}/Encounter/e1",
                 "resource": {"resourceType": "Encounter", "id": "e1", "status": "finished",
                              "class": {"code": "IMP"},
                              "subject": {"reference": f"{base}/Patient/p1"},
                              "period": {"start": "2026-01-01", "end": "2026-01-09"}}},
                {"fullUrl": f"{base}/Composition/c1",
                 "resource": {"resourceType": "Composition", "id": "c1", "status": "final",
                              "type": {"text": "Epikrise"}, "date": "2026-01-09",
                              "title": "Epikrise", "author": [{"display": "Dr. Lege"}],
                              "meta": {"security": [{
                                  "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                  "code": "PSY"}]},
                              "subject": {"reference": "Patient/p1"},
                              "encounter": {"reference": "Encounter/e1"}}}]}


def vedtak_message() -> dict:
    """A "new vedtak" message: a ServiceRequest for an existing patient."""
    return {"resourceType": "Bundle", "type": "message", "entry": [
        {"resource": {"resourceType": "MessageHeader", "id": "vedtak-42",
                      "eventCoding": {"system": EVENTS, "code": "nytt-vedtak"},
                      "source": {"endpoint": "urn:fagsystem:kommune"},
                      "focus": [{"reference": "ServiceRequest/v"}]}},
        {"resource": {"resourceType": "ServiceRequest", "id": "v", "status": "active",
                      "intent": "order", "code": {"text": "Hjemmesykepleie"},
                      "subject": {"reference": "Patient/PLACEHOLDER"}}}]}


def test_message_is_stored_and_answered(ev_client):
    c = ev_client
    r = c.post(f"{c.base}/$process-message", json=message(), headers=FHIR)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["type"] == "message"
    mh = b["entry"][0]["resource"]
    assert mh["resourceType"] == "MessageHeader"
    assert mh["response"] == {"identifier": "mh-1", "code": "ok"}
    assert mh["destination"] == [{"endpoint": "http://sykehus.example/fhir"}]
    assert mh["eventCoding"]["code"] == "utskrivningsrapport"
    refs = [f["reference"] for f in mh["focus"]]
    assert [x.split("/")[0] for x in refs] == ["Patient", "Encounter", "Composition"]
    patient_ref, enc_ref, comp_ref = refs
    # others can find it: references between the entries point at the stored resources
    found = c.get(f"{c.base}/Composition?subject={patient_ref}").json()
    assert found["total"] == 1
    comp = found["entry"][0]["resource"]
    assert comp["encounter"]["reference"] == enc_ref
    assert comp["meta"]["security"][0]["code"] == "PSY"  # labels survive
    assert c.get(f"{c.base}/{enc_ref}").json()["subject"]["reference"] == patient_ref
    headers = c.get(f"{c.base}/MessageHeader").json()
    assert headers["total"] == 1
    assert headers["entry"][0]["resource"]["focus"] == [{"reference": comp_ref}]

    # the same message again (a sender retrying): answered, not stored twice
    again = c.post(f"{c.base}/$process-message", json=message(), headers=FHIR)
    assert again.status_code == 200, again.text
    mh2 = again.json()["entry"][0]["resource"]
    assert mh2["response"] == {"identifier": "mh-1", "code": "ok"}
    assert sorted(f["reference"] for f in mh2["focus"]) == sorted(refs)
    assert c.get(f"{c.base}/Composition").json()["total"] == 1
    assert c.get(f"{c.base}/MessageHeader").json()["total"] == 1


def test_new_vedtak_message_notifies_subscribers(ev_client, receiver, events):
    c = ev_client
    p = post(c, {"resourceType": "Patient", "name": [{"family": "Vedtaksen"}]})
    post(c, subscription("vedtak", receiver.url, filters=[f"ServiceRequest?subject=Patient/{p['id']}"]))
    assert receiver.wait(lambda r: r.bundles("handshake"))
    msg = vedtak_message()
    msg["entry"][1]["resource"]["subject"]["reference"] = f"Patient/{p['id']}"
    r = c.post(f"{c.base}/$process-message", json=msg, headers=FHIR)
    assert r.status_code == 200, r.text
    sr = r.json()["entry"][0]["resource"]["focus"][0]["reference"]
    assert receiver.wait(lambda r: r.bundles("event-notification"))
    notes = receiver.bundles("event-notification")
    assert event_numbers(notes) == [1]
    assert focuses(notes) == [sr]


def _bad_cases() -> list[tuple[str, object, str]]:
    """(what, body, expected expression prefix)."""
    good = message()
    cases = []

    def case(what, mutate, expr):
        m = copy.deepcopy(good)
        mutate(m)
        cases.append((what, m, expr))

    cases.append(("not a Bundle", {"resourceType": "Patient"}, "Bundle"))
    cases.append(("a JSON array", [1, 2], "Bundle"))
    case("transaction, not message", lambda m: m.update(type="transaction"), "Bundle.type")
    case("no entries", lambda m: m.update(entry=[]), "Bundle.entry")
    case("entry is not an object", lambda m: m["entry"].append("x"), "Bundle.entry[4]")
    case("entry without resource", lambda m: m["entry"].append({"fullUrl": "urn:x"}),
         "Bundle.entry[4].resource")
    case("no MessageHeader first", lambda m: m.update(entry=m["entry"][1:]),
         "Bundle.entry[0].resource")
    case("no event", lambda m: m["entry"][0]["resource"].pop("eventCoding"),
         "Bundle.entry[0].resource.event[x]")
    case("source is a string", lambda m: m["entry"][0]["resource"].update(source="x"),
         "Bundle.entry[0].resource.source.endpoint")
    case("no source endpoint", lambda m: m["entry"][0]["resource"].update(source={}),
         "Bundle.entry[0].resource.source.endpoint")
    case("a response message", lambda m: m["entry"][0]["resource"].update(
        response={"identifier": "x", "code": "ok"}), "Bundle.entry[0].resource.response")
    case("fullUrl is an object", lambda m: m["entry"][1].update(fullUrl={"a": 1}),
         "Bundle.entry[1].fullUrl")
    case("fullUrl twice", lambda m: m["entry"][2].update(fullUrl=m["entry"][1]["fullUrl"]),
         "Bundle.entry[2].fullUrl")
    case("entry with a request", lambda m: m["entry"][1].update(
        request={"method": "POST", "url": "Patient"}), "Bundle.entry[1].request")
    case("id is a number", lambda m: m["entry"][1]["resource"].update(id=7),
         "Bundle.entry[1].resource.id")
    case("two MessageHeaders", lambda m: m["entry"].append(copy.deepcopy(m["entry"][0]) | {
        "fullUrl": "urn:uuid:0"}), "Bundle.entry[4].resource")
    case("focus is a string", lambda m: m["entry"][0]["resource"].update(focus="x"),
         "Bundle.entry[0].resource.focus")
    return cases


@pytest.mark.parametrize("what,body,expr", _bad_cases(), ids=lambda v: v if isinstance(
    v, str) and " " in v else "")
def test_malformed_messages_are_rejected(ev_client, what, body, expr):
    c = ev_client
    r = c.post(f"{c.base}/$process-message", json=body, headers=FHIR)
    assert r.status_code == 400, (what, r.text)
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["expression"][0].startswith(expr), (what, oo)
    assert c.get(f"{c.base}/MessageHeader").json()["total"] == 0


def test_invalid_content_is_rejected_and_nothing_is_stored(ev_client):
    c = ev_client
    invalid = message()
    invalid["entry"][2]["resource"]["status"] = "not-a-status"
    r = c.post(f"{c.base}/$process-message", json=invalid, headers=FHIR)
    assert r.status_code in (400, 422), r.text
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert any("Bundle.entry[2]" in x for i in oo["issue"] for x in i.get("expression", [])), oo
    dangling = message()
    dangling["entry"][3]["resource"]["subject"] = {"reference": "Patient/finnes-ikke"}
    r = c.post(f"{c.base}/$process-message", json=dangling, headers=FHIR)
    assert 400 <= r.status_code < 500, r.text
    unknown = message()
    unknown["entry"][1]["resource"]["resourceType"] = "Pasient"
    r = c.post(f"{c.base}/$process-message", json=unknown, headers=FHIR)
    assert 400 <= r.status_code < 500, r.text
    for raw in (b"{not json", b"", b"null", b'"text"'):
        r = c.post(f"{c.base}/$process-message", content=raw, headers=FHIR)
        assert r.status_code == 400, (raw, r.text)
    assert c.get(f"{c.base}/$process-message").status_code == 405
    for rtype in ("MessageHeader", "Patient", "Encounter", "Composition"):
        assert c.get(f"{c.base}/{rtype}").json()["total"] == 0, rtype
