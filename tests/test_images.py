import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

import fmlearn as fm
from fmlearn.digits import (DIGITS_SHAPE, DigitClassifier, Digits, class_energy_distances, image_grid, load_digits,
                            plot_digits, random_shift, train_classifier)
from fmlearn.models import ConditionalMLP, TinyUNet


@pytest.fixture(scope="module")
def split():
    return load_digits()


def _rows(x):
    """Images as a sorted list of pixel tuples (a multiset we can compare)."""
    return sorted(map(tuple, x.flatten(1).tolist()))


def test_digits_scaled_shaped_and_split_into_a_partition(split):
    """Both halves hold (n, 1, 8, 8) images in [-1, 1] = sklearn's pixels / 8 - 1; together they are
    exactly sklearn's 1797 images (as a multiset, each image once), with matching labels."""
    train, held = split
    sk = sk_load_digits()
    assert len(train) + len(held) == len(sk.target) == 1797
    for d in split:
        assert d.images.shape[1:] == DIGITS_SHAPE and d.images.min() == -1 and d.images.max() == 1
    both = torch.cat([train.images, held.images])
    want = torch.as_tensor(sk.images, dtype=torch.float32)[:, None] / 8 - 1
    assert _rows(both) == _rows(want)
    pairs = lambda x, y: sorted(zip(map(tuple, x.flatten(1).tolist()), y.tolist()))  # noqa: E731
    assert pairs(both, torch.cat([train.labels, held.labels])) == pairs(want, torch.as_tensor(sk.target))


def test_split_is_stratified_deterministic_and_seeded(split):
    """Each digit is split in half (counts differ by at most one); same seed, same split; new seed, new split."""
    train, held = split
    diff = torch.bincount(train.labels, minlength=10) - torch.bincount(held.labels, minlength=10)
    assert diff.abs().max() <= 1
    again = load_digits()
    assert torch.equal(again[1].images, held.images) and torch.equal(again[1].labels, held.labels)
    other = load_digits(seed=1)
    assert not torch.equal(other[1].images, held.images)
    small = load_digits(held_out=0.2)[1]
    assert abs(len(small) - 0.2 * 1797) <= 10


def test_sample_returns_members_with_their_labels(split):
    """sample(n, return_labels=True): each image is in the set with that label; the data are not copied per call."""
    train, _ = split
    x, y = train.sample(50, generator=torch.Generator().manual_seed(0), return_labels=True)
    assert x.shape == (50, 1, 8, 8) and y.shape == (50,)
    members = dict(zip(map(tuple, train.images.flatten(1).tolist()), train.labels.tolist()))
    assert all(members[tuple(r)] == int(c) for r, c in zip(x.flatten(1).tolist(), y))
    assert train.sample(4).shape == (4, 1, 8, 8)
    cpu = torch.device("cpu")
    assert train._tensors(cpu)[0].data_ptr() == train.images.data_ptr()


def test_digits_bad_inputs(split):
    with pytest.raises(ValueError, match="held_out must be a fraction"):
        load_digits(held_out=1.0)
    with pytest.raises(ValueError, match=r"images must be a tensor of shape \(n, 1, 8, 8\)"):
        Digits(torch.zeros(3, 64), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        Digits(torch.zeros(2, 1, 8, 8), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"lie in \[-1, 1\]"):
        Digits(torch.full((2, 1, 8, 8), 2.0), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="digit must be an int"):
        split[0].of_class(10)


MODELS = {
    "unet": (lambda: TinyUNet(10, channels=8, hidden=32), (1, 8, 8)),
    "mlp": (lambda: ConditionalMLP(3, 10, hidden=16, depth=2), (3,)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conditional_models_shape_labels_and_rows(name):
    """Output has x's shape; labels change it; y=None is the "no label" index 10; rows are independent
    (a batch gives what each row gives alone, which batched guidance relies on)."""
    make, shape = MODELS[name]
    torch.manual_seed(0)
    model = make()
    assert model.num_classes == 10
    x, t = torch.randn(4, *shape), torch.rand(4)
    y = torch.tensor([0, 3, 9, 10])
    out = model(x, t, y=y)
    assert out.shape == x.shape
    assert not torch.allclose(model(x, t, y=torch.full((4,), 3)), model(x, t, y=torch.full((4,), 5)))
    torch.testing.assert_close(model(x, t), model(x, t, y=torch.full((4,), 10)))
    rows = torch.cat([model(x[i:i + 1], float(t[i]), y=int(y[i])) for i in range(4)])
    torch.testing.assert_close(out, rows, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conditional_models_bad_inputs(name):
    make, shape = MODELS[name]
    model, x = make(), torch.randn(2, *shape)
    for bad in (torch.tensor([0, 11]), torch.tensor([-1, 0]), 12):
        with pytest.raises(ValueError, match=r"y must hold labels in 0\.\.10"):
            model(x, 0.5, y=bad)
    with pytest.raises(TypeError, match="y must be None, an int or an integer tensor"):
        model(x, 0.5, y=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must be an int or a tensor of shape \(batch,\)"):
        model(x, 0.5, y=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        model(torch.randn(2, 5), 0.5)
    with pytest.raises(TypeError, match="takes only the conditioning argument y"):
        model(x, 0.5, label=torch.tensor([0, 1]))


def test_unet_constructor_checks():
    with pytest.raises(ValueError, match="image_size must be even"):
        TinyUNet(10, image_size=7)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        TinyUNet(0)
    with pytest.raises(TypeError, match="num_classes must be a positive int"):
        ConditionalMLP(2, 2.5)


def test_train_on_digits_with_the_unet(split):
    """fm.train(conditional=True) runs on Digits with the conv net and lowers the CFM loss."""
    torch.manual_seed(0)
    model = TinyUNet(10, channels=4, hidden=16, cond_dim=16)
    res = fm.train(model, fm.CFMObjective(fm.AffineGaussianPath("condot"), split[0], conditional=True, label_dropout=0.1),
                   steps=40, batch_size=32, lr=5e-3, progress=False, device="cpu")
    assert np.mean(res.losses[-10:]) < 0.8 * np.mean(res.losses[:10])


def test_random_shift_is_one_of_the_nine_shifts():
    """Each output image is its input moved by (di, dj) in {-1, 0, 1}^2 with background -1 filled in,
    checked against shifts built one by one."""
    x = torch.rand(20, 1, 8, 8) * 2 - 1
    out = random_shift(x, torch.Generator().manual_seed(0))
    for img, res in zip(x, out):
        cands = []
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                s = torch.full_like(img, -1.0)
                src = img[:, max(0, -di):8 - max(0, di), max(0, -dj):8 - max(0, dj)]
                s[:, max(0, di):8 - max(0, -di), max(0, dj):8 - max(0, -dj)] = src
                cands.append(s)
        assert any(torch.equal(res, c) for c in cands)


def test_classifier_learns_and_predicts(split):
    """A briefly trained classifier beats chance by far on digits it never saw; shapes of predict."""
    train, held = split
    clf = train_classifier(held, steps=80, batch_size=64, lr=5e-3)
    assert clf.predict(train.images[:7]).shape == (7,)
    assert clf.accuracy(train.images, train.labels) > 0.7
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(batch, 1, 8, 8\)"):
        DigitClassifier()(torch.zeros(2, 64))


def test_class_distances_real_vs_collapsed(split):
    """Other real digits score near the floor (ratio < 1.5 for every digit); a generator that outputs
    each class's mean image (collapse) scores far above it (ratio > 3)."""
    train, held = split
    g = torch.Generator().manual_seed(0)
    per = 2 * max(int((held.labels == c).sum()) // 2 for c in range(10))
    idx = torch.cat([torch.nonzero(train.labels == c).flatten().repeat(2)[:per] for c in range(10)])
    dist, floor = class_energy_distances(train.images[idx], train.labels[idx], held, repeats=4, generator=g)
    assert (floor > 0).all() and (dist / floor < 1.5).all()
    means = torch.stack([train.of_class(c).mean(0) for c in range(10)])
    labels = torch.arange(10).repeat_interleave(per)
    dist_c, floor_c = class_energy_distances(means[labels], labels, held, repeats=2, generator=g)
    assert (dist_c / floor_c > 3).all()
    with pytest.raises(ValueError, match="need at least"):
        class_energy_distances(train.images[:20], train.labels[:20], held)


def test_image_grid_places_each_image_and_plots():
    """Image i sits at row i // ncols, column i % ncols, between 1-pixel borders of background -1;
    missing cells stay background; plot_digits draws that grid with the fixed range [-1, 1]."""
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    grid = image_grid(x, 3)
    assert grid.shape == (3 * 9 + 1, 3 * 9 + 1)
    for i in range(7):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(grid[1 + 9 * r:9 + 9 * r, 1 + 9 * c:9 + 9 * c], x[i, 0].numpy())
    assert (grid[0] == -1).all() and (grid[19:, 10:] == -1).all()
    ax = plot_digits(x, 3, title="t")
    assert ax.get_images()[0].get_clim() == (-1, 1) and ax.get_title() == "t"
