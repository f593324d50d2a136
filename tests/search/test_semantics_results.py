"""Result control through HTTP: cursor paging stable under concurrent writes, _sort on several
keys, _count, _total, _summary, _elements, search modes, and the ``search_filters`` hook
applied to matches, totals, includes, revincludes, chains and _has."""

from __future__ import annotations

from sqlalchemy import not_

from tests.search.semantics_helpers import FHIR, ids, ordered_ids, put_all, search


def _next(bundle):
    nxt = [x["url"] for x in bundle.get("link", []) if x["relation"] == "next"]
    return nxt[0].replace("http://testserver", "") if nxt else None


def _pages(client, first_url, between=None):
    seen, url, n = [], first_url, 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        b = r.json()
        seen += ordered_ids(b)
        url = _next(b)
        if between and url:
            between(n)
        n += 1
    return seen, n


def test_paging_is_stable_while_others_write(client):
    originals = [{"resourceType": "Patient", "id": f"pg{i:03d}", "gender": "female",
                  "name": [{"family": f"Page{i % 7}"}], "birthDate": f"19{50 + i % 40}-01-01"}
                 for i in range(120)]
    extras = [{"resourceType": "Patient", "id": f"ex{i:03d}", "gender": "female",
               "name": [{"family": f"Page{i % 7}"}], "birthDate": "1970-06-01"}
              for i in range(20)]
    put_all(client, originals + extras)
    counter = iter(range(1000))

    def write_between(_page):
        # create new matching resources and delete others between page requests
        k = next(counter)
        r = client.post(f"{client.base}/Patient", headers=FHIR, json={
            "resourceType": "Patient", "gender": "female", "name": [{"family": "Page0"}],
            "birthDate": "1949-01-01"})
        assert r.status_code == 201
        assert client.delete(f"{client.base}/Patient/ex{k:03d}").status_code in (200, 204)

    for query in ("gender=female&_count=25",
                  "gender=female&_count=25&_sort=family,-birthdate",
                  "gender=female&_count=25&_sort=-_lastUpdated"):
        seen, pages = _pages(client, f"{client.base}/Patient?{query}", write_between)
        orig = [x for x in seen if x.startswith("pg")]
        assert sorted(orig) == [x["id"] for x in originals], query  # each exactly once
        assert len(seen) == len(set(seen)), query
        assert pages >= 5


def test_pages_of_several_driving_lists_hold_every_match_once(client):
    """A code and a date list (both drive; on PostgreSQL they are merged in rid order and
    the merge stops with the page): page by page, every match comes exactly once and in the
    order of the whole result, the total is the number of matches, and each page includes
    the subjects of its own matches. Duplicate index rows (the same code twice, two dates
    in the month) do not repeat a resource."""
    loinc = "http://loinc.org"
    patients = [{"resourceType": "Patient", "id": f"dl-p{i}"} for i in range(5)]
    obs, expected = [], set()
    for i in range(70):
        code = "1111-1" if i % 3 else "2222-2"
        coding = [{"system": loinc, "code": code}]
        if i % 7 == 0:
            coding.append({"system": loinc, "code": code})
        month = "2021-03" if i % 2 else "2021-04"
        when = ({"effectiveTiming": {"event": [f"{month}-05", f"{month}-20"]}} if i % 5 == 0
                else {"effectiveDateTime": f"{month}-{1 + i % 27:02d}"})
        obs.append({"resourceType": "Observation", "id": f"dl-o{i:02d}", "status": "final",
                    "code": {"coding": coding}, "subject": {"reference": f"Patient/dl-p{i % 5}"},
                    **when})
        if code == "1111-1" and month == "2021-03":
            expected.add(f"dl-o{i:02d}")
    # the code's list is the longer one (the date list drives, with its duplicate rows)
    older = [{"resourceType": "Observation", "id": f"dl-x{i:03d}", "status": "final",
              "code": {"coding": [{"system": loinc, "code": "1111-1"}]},
              "subject": {"reference": "Patient/dl-p0"}, "effectiveDateTime": "2019-01-01"}
             for i in range(110)]
    put_all(client, patients + obs + older)
    query = f"code={loinc}|1111-1&date=2021-03"
    whole = search(client, "Observation", query + "&_count=1000")
    assert whole.status_code == 200, whole.text
    assert set(ordered_ids(whole.json())) == expected and len(expected) == 23
    by_id = {o["id"]: o for o in obs}
    seen, url = [], f"{client.base}/Observation?{query}&_count=4&_include=Observation:subject"
    first = True
    while url:
        r = client.get(url + ("&_total=accurate" if first else ""))
        assert r.status_code == 200, r.text
        b = r.json()
        page = ordered_ids(b)
        assert 0 < len(page) <= 4
        if first:
            assert b["total"] == 23
            first = False
        subjects = {by_id[i]["subject"]["reference"].split("/")[1] for i in page}
        assert ids(b, "include") == subjects
        seen += page
        url = _next(b)
    assert seen == ordered_ids(whole.json())
    counted = search(client, "Observation", query + "&_summary=count")
    assert counted.json()["total"] == 23
    # with _sort the intersection is computed in full; the same matches
    srt = search(client, "Observation", query + "&_sort=-date&_count=1000")
    assert set(ordered_ids(srt.json())) == expected


def test_sort_on_several_keys(client):
    rows = [("a1", "Aas", "1990-01-01"), ("a2", "Aas", "1985-05-05"), ("a3", "aas", None),
            ("b1", "Berg", "2000-01-01"), ("b2", "Berg", "1970-01-01"), ("c1", "Ålesund",
                                                                           "1980-01-01"),
            ("n1", None, "1960-01-01")]
    put_all(client, [{"resourceType": "Patient", "id": i,
                      **({"name": [{"family": f}]} if f else {}),
                      **({"birthDate": d} if d else {})} for i, f, d in rows])

    def order(q):
        r = search(client, "Patient", q)
        assert r.status_code == 200, r.text
        return ordered_ids(r.json())

    # missing values sort first ascending and last descending; ties broken by the next key;
    # strings sort by their case- and accent-insensitive form (Ålesund as "alesund")
    assert order("_sort=family,-birthdate") == ["n1", "a1", "a2", "a3", "c1", "b1", "b2"]
    assert order("_sort=family,birthdate") == ["n1", "a3", "a2", "a1", "c1", "b2", "b1"]
    assert order("_sort=-family,birthdate") == ["b2", "b1", "c1", "a3", "a2", "a1", "n1"]
    assert order("_sort=birthdate") == ["a3", "n1", "b2", "c1", "a2", "a1", "b1"]
    assert order("_sort=-birthdate") == ["b1", "a1", "a2", "c1", "b2", "n1", "a3"]
    assert order("_sort=-_id") == sorted([r[0] for r in rows], reverse=True)
    assert order("_sort=family&_sort=-birthdate") == order("_sort=family,-birthdate")
    # paging through a multi-key sort gives the same order as one page
    for q in ("_sort=family,-birthdate", "_sort=-family,birthdate", "_sort=-birthdate"):
        seen, _ = _pages(client, f"{client.base}/Patient?{q}&_count=2")
        assert seen == order(q), q


def test_count_total_summary_elements(client):
    put_all(client, [{"resourceType": "Patient", "id": f"p{i:02d}", "gender": "male",
                      "active": True, "name": [{"family": "Sum"}],
                      "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
                      "maritalStatus": {"text": "gift"}} for i in range(60)])
    r = search(client, "Patient", "")
    b = r.json()
    assert len(ordered_ids(b)) == 50 and _next(b)          # default _count 50
    assert "total" not in b            # not free (a next page) and not asked for (_total)
    assert search(client, "Patient", "_count=100").json()["total"] == 60  # one page: free
    assert len(ordered_ids(search(client, "Patient", "_count=5000").json())) == 60
    b = search(client, "Patient", "_count=0").json()
    assert b["total"] == 60 and not b.get("entry")
    assert "total" not in search(client, "Patient", "_total=none").json()
    assert search(client, "Patient", "_total=estimate").json()["total"] == 60
    assert search(client, "Patient", "_total=accurate&_count=1").json()["total"] == 60
    b = search(client, "Patient", "_summary=count").json()
    assert b["total"] == 60 and not b.get("entry")
    res = search(client, "Patient", "_id=p01&_summary=true").json()["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "gender", "active", "name"}
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    res = search(client, "Patient", "_id=p01&_summary=text").json()["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "text"}
    res = search(client, "Patient", "_id=p01&_summary=data").json()["entry"][0]["resource"]
    assert "text" not in res and "maritalStatus" in res
    res = search(client, "Patient", "_id=p01&_elements=gender,name").json()["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "gender", "name"}
    res = search(client, "Patient", "_id=p01&_summary=false").json()["entry"][0]["resource"]
    assert "maritalStatus" in res and "text" in res
    # every entry carries its search mode
    b = search(client, "Patient", "_id=p01&frob=1").json()
    assert [e["search"]["mode"] for e in b["entry"]] == ["match", "outcome"]


def test_search_filters_hook_applies_everywhere(client, fkj_app):
    put_all(client, [
        {"resourceType": "Patient", "id": "visible", "name": [{"family": "Vis"}]},
        {"resourceType": "Patient", "id": "hidden1", "name": [{"family": "Vis"}]},
        {"resourceType": "Practitioner", "id": "hiddendr", "name": [{"family": "Doc"}]},
        {"resourceType": "Observation", "id": "o-vis", "status": "final",
         "code": {"text": "x"}, "subject": {"reference": "Patient/visible"},
         "performer": [{"reference": "Practitioner/hiddendr"}]},
        {"resourceType": "Observation", "id": "o-hid", "status": "final",
         "code": {"text": "x"}, "subject": {"reference": "Patient/hidden1"}},
        {"resourceType": "Observation", "id": "hiddenobs", "status": "final",
         "code": {"text": "x"}, "subject": {"reference": "Patient/visible"}},
    ])
    calls = []

    def hide(repo, r, rtype):
        calls.append(rtype)
        return not_(r.c.id.like("hidden%"))

    hooks = fkj_app.services.hooks.search_filters
    hooks.append(hide)
    try:
        def q(path, query):
            r = search(client, path, query)
            assert r.status_code == 200, r.text
            return r.json()

        b = q("Patient", "name=vis")
        assert ids(b) == {"visible"} and b["total"] == 1                       # matches, total
        assert ids(q("Observation", "_id=o-vis&_include=Observation:performer"), "include") \
            == set()                                                            # include
        assert ids(q("Patient", "_id=visible&_revinclude=Observation:subject"), "include") \
            == {"o-vis"}                                                        # revinclude
        assert ids(q("Observation", "subject.name=vis")) == {"o-vis", "hiddenobs"} - {
            "hiddenobs"}                                                        # chain
        assert ids(q("Observation", "performer.name=doc")) == set()             # chain target
        assert ids(q("Patient", "_has:Observation:subject:code:text=x")) == {"visible"}
        assert ids(q("Practitioner", "_has:Observation:performer:status=final")) == set()
        b = client.get(f"{client.base}/Patient/visible/$everything").json()
        assert ids(b) == {"visible", "o-vis"} and ids(b, "include") == set()
        assert "Observation" in calls and "Patient" in calls
    finally:
        hooks.remove(hide)
