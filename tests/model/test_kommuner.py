from fkj.model.kommuner import FKJ_MUNICIPALITIES, FYLKER, KOMMUNER, check_kommunenummer


def test_counts():
    assert len(KOMMUNER) == 357 and len(FYLKER) == 15
    assert KOMMUNER["0301"] == "Oslo"


def test_fkj_municipalities():
    assert FKJ_MUNICIPALITIES == {
        "4601": "Bergen", "1804": "Bodø", "3201": "Bærum", "5603": "Hammerfest",
        "4204": "Kristiansand", "3411": "Ringsaker", "1103": "Stavanger", "4036": "Vinje"}


def test_check():
    assert check_kommunenummer("4601") is None
    assert check_kommunenummer("1201") is not None      # Bergen's pre-2020 number
    assert check_kommunenummer("3024") is not None      # Bærum 2020-2023 (Viken)
    for bad in ("460", "46011", "46a1", "", None, 4601):
        assert "4 digits" in check_kommunenummer(bad)
