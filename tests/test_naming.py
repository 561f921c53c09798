"""Naming a photographed painting the index holds, and naming nothing for one it does not."""

import numpy as np

from artnet.data.photo import painting_of_photo
from artnet.serving.naming import PaintingNamer
from artnet.testing.gallery_photo import made_up_painting, render_gallery_photo


def test_a_photo_of_an_indexed_painting_is_named_and_an_outside_one_is_not():
    indexed = [made_up_painting(seed, 320, 260) for seed in range(8)]
    outside = [made_up_painting(seed, 320, 260) for seed in range(100, 106)]
    namer = PaintingNamer(indexed)
    named = [
        namer.name(painting_of_photo(render_gallery_photo(p, seed=i, difficulty="easy").image)[0])
        for i, p in enumerate(indexed)
    ]
    assert np.mean([naming.item == i for i, naming in enumerate(named)]) >= 0.75
    strangers = [namer.name(painting_of_photo(render_gallery_photo(p, seed=i).image)[0]) for i, p in enumerate(outside)]
    assert all(naming.item is None for naming in strangers), [naming.inliers for naming in strangers]


def test_candidates_from_the_embedding_are_verified_too_and_an_empty_index_names_nothing():
    paintings = [made_up_painting(seed, 320, 260) for seed in range(3)]
    namer = PaintingNamer(paintings, shortlist=0)  # no votes: only the candidates given are checked
    assert namer.name(paintings[1], candidates=[1]).item == 1
    assert namer.name(paintings[1], candidates=[0, 2]).item is None
    assert PaintingNamer([]).name(paintings[0]).item is None


def test_a_detail_crop_of_an_indexed_painting_is_named_as_that_painting():
    paintings = [made_up_painting(seed, 480, 400) for seed in range(5)]
    namer = PaintingNamer(paintings)
    detail = paintings[2][100:340, 80:300]  # about a quarter of the painting, as a detail photo shows it
    assert namer.name(detail).item == 2
    assert namer.name(made_up_painting(77, 480, 400)[100:340, 80:300]).item is None  # a stranger's detail: nobody
