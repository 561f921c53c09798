"""Training views as a phone photo's cut-out: what `photo_residue` puts on an image, and the feature cache's use."""

import dataclasses

import numpy as np

from artnet.config import Augment
from artnet.data.photo_residue import photo_residue, photo_residues
from artnet.data.synthetic import synthetic_source
from artnet.testing.gallery_photo import made_up_painting


def test_the_same_seed_gives_the_same_residue_and_another_seed_another():
    batch = np.stack([made_up_painting(seed, 64, 64) for seed in range(4)])
    first, again, other = photo_residues(batch, 3), photo_residues(batch, 3), photo_residues(batch, 4)
    assert first.shape == batch.shape and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_a_residue_keeps_the_painting_and_changes_its_pixels():
    painting = made_up_painting(1, 224, 224)
    rng = np.random.default_rng(0)
    residues = [photo_residue(painting, rng) for _ in range(20)]
    differences = [np.abs(r.astype(float) - painting).mean() for r in residues]
    correlations = [np.corrcoef(r.astype(float).ravel(), painting.astype(float).ravel())[0, 1] for r in residues]
    assert min(differences) > 1  # every draw changes the image (JPEG and noise at least)
    assert np.median(correlations) > 0.7  # and still shows the same painting
    # The light differs from draw to draw (cast, falloff, glare): the channel means spread.
    assert np.ptp([r.reshape(-1, 3).mean(axis=0) for r in residues], axis=0).min() > 5


def test_the_camera_s_processing_widens_the_light_and_colour_of_the_cut_outs():
    """camera=True adds exposure, tone and saturation: over the same draws, the cut-outs' brightness and
    colourfulness spread wider than with the gallery's light alone, and the painting is still there."""
    painting = made_up_painting(2, 224, 224)

    def spread(camera):
        rng = np.random.default_rng(5)
        residues = [photo_residue(painting, rng, camera=camera).astype(float) for _ in range(30)]
        brightness = [r.mean() for r in residues]
        colourfulness = [r.std(axis=2).mean() for r in residues]
        correlation = np.median([np.corrcoef(r.ravel(), painting.astype(float).ravel())[0, 1] for r in residues])
        return np.std(brightness), np.std(colourfulness), correlation

    plain, camera = spread(False), spread(True)
    assert camera[0] > 1.3 * plain[0] and camera[1] > 1.3 * plain[1]
    assert camera[2] > 0.6


def test_a_frame_taken_with_the_picture_rings_it_on_all_four_sides_and_only_when_asked():
    """frame=True: some cut-outs have a band of moulding all round the (shrunk) picture, as when the photo step
    took the frame's outline for the picture's. A plain red picture shows it: a ring of other colours on all four
    sides at once, which the sliver of the plain views (at most two sides) never draws; the picture stays inside."""
    red = np.zeros((224, 224, 3), np.uint8)
    red[..., 0] = 200

    def ringed(frame: bool) -> list[bool]:
        rng = np.random.default_rng(7)
        residues = [photo_residue(red, rng, frame=frame).astype(float) for _ in range(40)]
        # Redness (red over the other two channels) along each side's outermost 2 %, and at the centre.
        sides = [(r[:4], r[-4:], r[:, :4], r[:, -4:], r[96:128, 96:128]) for r in residues]
        redness = [[(part[..., 0] - part[..., 1:].mean(axis=2)).mean() for part in parts] for parts in sides]
        return [max(ring[:4]) < 60 and ring[4] > 100 for ring in redness]

    with_frame, without = ringed(True), ringed(False)
    assert 0.25 < np.mean(with_frame) < 0.75  # about FRAME_SHARE of the cut-outs
    assert not any(without)
    rng = np.random.default_rng(3)  # without it, the draws are those of the first photo views
    assert np.array_equal(photo_residue(red, np.random.default_rng(3)), photo_residue(red, rng, frame=False))


def test_cached_photo_views_differ_from_affine_views_and_old_keys_stay(tiny_weights):
    from artnet.training.feature_cache import FeatureSpec, cache_key, compute_features

    plain = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32, views=3, layer="pooled")
    photo = dataclasses.replace(plain, augment=Augment(photo=True))
    assert "photo" not in plain.to_dict()["augment"]  # caches filled before the photo views keep their keys
    assert "camera" not in photo.to_dict()["augment"]  # and those filled before the camera's processing
    assert cache_key(plain, "d") != cache_key(photo, "d")
    camera = dataclasses.replace(plain, augment=Augment(photo=True, camera=True))
    assert cache_key(camera, "d") != cache_key(photo, "d")  # other cut-outs: never the old cache's features
    assert "frame" not in photo.to_dict()["augment"]  # and those filled before the frame taken with the picture
    framed = dataclasses.replace(plain, augment=Augment(photo=True, frame=True))
    assert cache_key(framed, "d") not in {cache_key(photo, "d"), cache_key(camera, "d")}
    source = synthetic_source(6, size=32, seed=2)
    affine, cut_outs = compute_features(source, plain), compute_features(source, photo)
    assert np.array_equal(affine[:2], cut_outs[:2])  # the image and its mirror are the same views
    assert not np.allclose(affine[2], cut_outs[2])
    assert np.array_equal(cut_outs, compute_features(source, photo))  # and the photo view is the same each time


def test_the_probe_fits_on_every_view_only_when_they_hold_photo_cut_outs(tiny_weights):
    from artnet.config import DataConfig, TrainConfig
    from artnet.training.probe import frozen_features, photo_views

    def config(photo: bool, views: int) -> TrainConfig:
        data = DataConfig(feature_views=views, augment=Augment(photo=photo))
        return TrainConfig(backbone="tiny", backbone_weights=tiny_weights, image_size=32, data=data)

    assert [photo_views(config(True, 4)), photo_views(config(False, 4)), photo_views(config(True, 0))] == [4, 1, 1]
    source = synthetic_source(5, size=32, seed=3)
    plain = frozen_features(source, config(True, 4), 32)
    every = frozen_features(source, config(True, 4), 32, views=4)
    assert plain.shape == (5, every.shape[1]) and every.shape[0] == 4 * 5
    assert np.allclose(every[:5], plain, atol=1e-2)  # the first view is the plain one (float16 in the cache)
