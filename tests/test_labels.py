from artnet import labels


def test_head_order_and_vocabulary_sizes_are_fixed():
    assert labels.HEADS == ("school", "timeframe", "type")
    assert [len(labels.VOCABULARIES[head]) for head in labels.HEADS] == [6, 10, 7]
    assert labels.TIMEFRAMES[0] == "1401-1450" and labels.TIMEFRAMES[-1] == "1851-1900"


def test_label_index_tolerates_case_space_and_spellings():
    assert labels.label_index("school", " ITALIAN ") == labels.SCHOOLS.index("Italian")
    assert labels.label_index("type", "Still life") == labels.TYPES.index("still-life")
    assert labels.label_index("timeframe", "1601 - 1650") == labels.TIMEFRAMES.index("1601-1650")


def test_unknown_labels_are_minus_one():
    assert labels.label_index("school", "English") == labels.UNKNOWN == -1
    assert labels.label_index("type", "interior") == -1
    assert labels.label_index("timeframe", "1351-1400") == -1
    assert labels.label_index("type", None) == -1
    assert labels.label_name("type", -1) is None


def test_timeframe_of_year_blocks():
    assert labels.timeframe_of_year(1401) == 0
    assert labels.timeframe_of_year(1450) == 0
    assert labels.timeframe_of_year(1451) == 1
    assert labels.timeframe_of_year(1900) == 9
    assert labels.timeframe_of_year(1400) == labels.UNKNOWN
    assert labels.timeframe_of_year(1901) == labels.UNKNOWN
