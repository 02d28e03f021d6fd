"""Brownian motion sampled lazily and consistently: BrownianInterval, BrownianPath, BrownianTree.

A ``BrownianInterval`` keeps a binary tree of time intervals. An interval's increment W (and its
space-time Lévy area H) is drawn from the Brownian bridge conditioned on its parent's values,
with a seed fixed by the parent, so a value evicted from the LRU cache is recomputed bit for bit.
Every query W(s, t) is answered from the same tree, so overlapping and repeated queries agree and
increments over adjacent intervals add up to the increment over their union.

Example:
    >>> bm = BrownianInterval(t0=0.0, t1=1.0, size=(4, 2), entropy=0)
    >>> dw = bm(0.25, 0.5)  # a (4, 2) tensor ~ N(0, 0.25)
    >>> torch.allclose(bm(0.0, 0.25) + dw, bm(0.0, 0.5))
    True
"""

from __future__ import annotations

import abc
import math
from collections import OrderedDict
from typing import Any

import torch

from kutta.errors import InvalidArgumentError
from kutta.sde.settings import LEVY_AREA_APPROXIMATIONS

_MASK64 = (1 << 64) - 1
_A_NOISE_SALT = 0xA5A5_5A5A_C3C3_3C3C
_ROOT_SALT = 0x5DEE_CE66_D1CE_4E5B


def _mix(x: int) -> int:
    """SplitMix64 finalizer: turns structured integers (parent seed, side) into well-spread seeds."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InvalidArgumentError(
                f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    raise InvalidArgumentError(
        f"{name} must be a float or a 0-d tensor, got {type(value).__name__}"
    )


def _fresh_entropy() -> int:
    # Drawn from torch's global generator, so torch.manual_seed makes default-constructed paths reproducible.
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def _aggregate(w_a, h_a, len_a, w_b, h_b, len_b):
    """(W, H) over [s, t] from (W, H) over [s, u] and [u, t]: H is the space-time Lévy area."""
    total = len_a + len_b
    h = torch.mul(h_a, len_a / total).add_(h_b, alpha=len_b / total)
    h.add_(w_a, alpha=0.5 * len_b / total).add_(w_b, alpha=-0.5 * len_a / total)
    return w_a + w_b, h


def _chen(a_a, w_a, a_b, w_b):
    """Lévy area over [s, t] from those over [s, u] and [u, t] (Chen's relation, antisymmetric part)."""
    outer = w_a.unsqueeze(-1) * w_b.unsqueeze(-2)
    return a_a + a_b + 0.5 * (outer - outer.transpose(-1, -2))


class BaseBrownian(abc.ABC):
    """Interface of a Brownian motion: ``bm(ta, tb)`` is the increment W(tb) - W(ta)."""

    @abc.abstractmethod
    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False):
        raise NotImplementedError

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, ...]: ...

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype: ...

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abc.abstractmethod
    def levy_area_approximation(self) -> str: ...

    @property
    @abc.abstractmethod
    def t0(self) -> float: ...

    @property
    @abc.abstractmethod
    def t1(self) -> float: ...

    def size(self) -> tuple[int, ...]:
        return self.shape


class _Node:
    """One interval [start, end] of the tree; ``w``/``h`` hold its values while they are cached."""

    __slots__ = ("start", "end", "left", "right", "seed", "w", "h")

    def __init__(self, start: float, end: float, seed: int):
        self.start, self.end, self.seed = start, end, seed
        self.left: _Node | None = None
        self.right: _Node | None = None
        self.w: torch.Tensor | None = None
        self.h: torch.Tensor | None = None

    def split(self, at: float) -> None:
        self.left = _Node(self.start, at, _mix(2 * self.seed + 1))
        self.right = _Node(at, self.end, _mix(2 * self.seed + 2))


class BrownianInterval(BaseBrownian):
    """Brownian motion on [t0, t1] queried by intervals, W(ta, tb) = W(tb) - W(ta).

    Args mirror torchsde's: ``size`` is the shape of one sample (``(batch, channels)`` for
    sdeint), ``entropy`` the seed (drawn from torch's global generator when None), ``tol`` snaps
    query points to existing points closer than it, ``cache_size`` bounds the LRU cache of
    interval values (None: unbounded), ``halfway_tree`` only ever splits intervals in half (the
    path then depends on ``entropy`` alone, with time resolution ``tol``),
    ``levy_area_approximation`` is one of LEVY_AREA_APPROXIMATIONS, and ``W``/``H`` fix the
    increment and space-time Lévy area over [t0, t1]. ``dt`` is the expected step: the tree then
    splits on the grid t0 + k dt, so that fixed steps of dt sample one bridge each (the path
    depends on the hint, as torchsde's does). ``pool_size`` is accepted for compatibility.

    Like torchsde's, the sampled path depends on ``entropy`` and on where the queries fall; any
    set of queries to one object is consistent.

    Example:
        >>> bm = BrownianInterval(0.0, 1.0, size=(8, 3), levy_area_approximation="space-time")
        >>> w, u = bm(0.1, 0.2, return_U=True)  # increment and space-time integral of W
    """

    def __init__(
        self,
        t0: Any = 0.0,
        t1: Any = 1.0,
        size: tuple[int, ...] | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        entropy: int | None = None,
        dt: Any = None,
        tol: float = 0.0,
        pool_size: int = 8,
        cache_size: int | None = 45,
        halfway_tree: bool = False,
        levy_area_approximation: str = LEVY_AREA_APPROXIMATIONS.none,
        W: torch.Tensor | None = None,
        H: torch.Tensor | None = None,
    ):
        start, end = _as_float("t0", t0), _as_float("t1", t1)
        if not start < end:
            raise InvalidArgumentError(f"need t0 < t1, got t0={start} and t1={end}")
        if levy_area_approximation not in LEVY_AREA_APPROXIMATIONS:
            raise InvalidArgumentError(
                f"unknown levy_area_approximation {levy_area_approximation!r}; "
                f"valid ones are {LEVY_AREA_APPROXIMATIONS.all()}"
            )
        if tol < 0:
            raise InvalidArgumentError(f"tol must be >= 0, got {tol}")
        if cache_size is not None and cache_size < 1:
            raise InvalidArgumentError(
                f"cache_size must be a positive int or None, got {cache_size}"
            )
        if size is None:
            size = tuple(W.shape) if W is not None else ()
        self._size = tuple(int(s) for s in size)
        self._dtype = (
            dtype
            if dtype is not None
            else (W.dtype if W is not None else torch.get_default_dtype())
        )
        if not self._dtype.is_floating_point:
            raise InvalidArgumentError(f"dtype must be a floating point type, got {self._dtype}")
        self._device = (
            torch.device(device)
            if device is not None
            else (W.device if W is not None else torch.device("cpu"))
        )
        self._entropy = _fresh_entropy() if entropy is None else int(entropy)
        self._dt = None if dt is None else _as_float("dt", dt)
        if self._dt is not None and self._dt <= 0:
            raise InvalidArgumentError(f"dt must be > 0, got {self._dt}")
        self._tol = float(tol)
        # Points closer than this are one point: without it, floating-point near-duplicates
        # (0.1 + 0.2 vs 0.3) would be separated by ~50 levels of halving.
        self._resolution = max(self._tol, 1e-12 * (end - start))
        self._halfway = bool(halfway_tree)
        self._levy = levy_area_approximation
        self._have_h = levy_area_approximation != LEVY_AREA_APPROXIMATIONS.none
        self._have_a = levy_area_approximation in (
            LEVY_AREA_APPROXIMATIONS.davie,
            LEVY_AREA_APPROXIMATIONS.foster,
        )
        self._cache_size = cache_size
        # Two LRU caches: recently computed intervals, and intervals on root-to-query paths. The
        # latter serve every later query in their subtree, so random access does not thrash
        # them; they get at most ~16 MB beyond cache_size (fewer for big samples).
        self._cache: OrderedDict[_Node, None] = OrderedDict()
        self._ancestors: OrderedDict[_Node, None] = OrderedDict()
        numel = max(1, math.prod(self._size))
        self._ancestor_size = (
            None if cache_size is None else max(cache_size // 3, min(127, 2**22 // numel))
        )
        self._generator = torch.Generator(device=self._device)

        self._root = _Node(start, end, _mix(self._entropy))
        # Every endpoint of a tree interval: a query at one of them (as every sequential step's
        # start is) needs no descent.
        self._points = {start, end}
        root_gen = self._seeded(_mix(self._entropy ^ _ROOT_SALT))
        length = end - start
        for name, given in (("W", W), ("H", H)):
            if given is not None and tuple(given.shape) != self._size:
                raise InvalidArgumentError(
                    f"{name} must have shape {self._size}, got {tuple(given.shape)}"
                )
        w_noise = torch.randn(
            self._size, dtype=self._dtype, device=self._device, generator=root_gen
        )
        self._root.w = (
            W.to(device=self._device, dtype=self._dtype)
            if W is not None
            else w_noise * math.sqrt(length)
        )
        if self._have_h:
            h_noise = torch.randn(
                self._size, dtype=self._dtype, device=self._device, generator=root_gen
            )
            self._root.h = (
                H.to(device=self._device, dtype=self._dtype)
                if H is not None
                else h_noise * math.sqrt(length / 12)
            )

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self._size

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def levy_area_approximation(self) -> str:
        return self._levy

    @property
    def entropy(self) -> int:
        return self._entropy

    @property
    def t0(self) -> float:
        return self._root.start

    @property
    def t1(self) -> float:
        return self._root.end

    @property
    def dt(self) -> float | None:
        return self._dt

    @property
    def tol(self) -> float:
        return self._tol

    @property
    def cache_size(self) -> int | None:
        return self._cache_size

    @property
    def halfway_tree(self) -> bool:
        return self._halfway

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(t0={self.t0:.3g}, t1={self.t1:.3g}, size={self._size}, "
            f"dtype={self._dtype}, device={self._device}, entropy={self._entropy}, "
            f"levy_area_approximation={self._levy!r})"
        )

    # ------------------------------------------------------------------ queries
    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False):
        """Increment over [ta, tb] (over [t0, ta] when tb is None); optionally U and Lévy area A.

        U is the space-time integral of (W_u - W_ta) over [ta, tb] (needs a Lévy area approximation
        other than 'none'); A is the Lévy area (needs 'davie' or 'foster').
        """
        if tb is None:
            ta, tb = self._root.start, ta
        ta, tb = self._check_time("ta", ta), self._check_time("tb", tb)
        if ta > tb:
            raise InvalidArgumentError(f"need ta <= tb, got ta={ta} and tb={tb}")
        if return_U and not self._have_h:
            raise InvalidArgumentError(
                "return_U needs levy_area_approximation in ('space-time', 'davie', 'foster'), "
                f"this Brownian motion has {self._levy!r}"
            )
        if return_A and not self._have_a:
            raise InvalidArgumentError(
                "return_A needs levy_area_approximation in ('davie', 'foster'), "
                f"this Brownian motion has {self._levy!r}"
            )
        if ta == tb:
            w = torch.zeros(self._size, dtype=self._dtype, device=self._device)
            h = torch.zeros_like(w) if self._have_h else None
            a = self._zero_area() if self._have_a else None
        else:
            ta = self._ensure_point(ta)
            tb = self._ensure_point(tb)
            w, h, a = self._interval_values(ta, tb) if ta < tb else self._zeros()
        if return_U:
            u = (tb - ta) * (0.5 * w + h)
            return (w, u, a) if return_A else (w, u)
        return (w, a) if return_A else w

    def _zeros(self):
        w = torch.zeros(self._size, dtype=self._dtype, device=self._device)
        return (
            w,
            (torch.zeros_like(w) if self._have_h else None),
            (self._zero_area() if self._have_a else None),
        )

    def _zero_area(self) -> torch.Tensor:
        # A scalar or 1-d motion is treated as a batch of 1-d motions: its Lévy area is zero.
        shape = (*self._size, self._size[-1]) if len(self._size) >= 2 else self._size
        return torch.zeros(shape, dtype=self._dtype, device=self._device)

    def _check_time(self, name: str, t: Any) -> float:
        start, end = self._root.start, self._root.end
        if type(t) is float and start <= t <= end:
            return t
        t = _as_float(name, t)
        slack = 1e-12 * max(1.0, abs(start), abs(end))
        if t < start - slack or t > end + slack:
            raise InvalidArgumentError(
                f"{name}={t} is outside the Brownian motion's span [{start}, {end}]"
            )
        return min(max(t, start), end)

    def _ensure_point(self, t: float) -> float:
        """Split the tree so that t is an interval endpoint; return t (snapped to tol if close).

        A leaf is only split at t when t lies in its middle half; otherwise it is halved first.
        So the depth stays O(log(span / smallest gap)) whatever the order of the queries (no
        chains from sequential access), and cache misses cost O(log) bridge samples.
        """
        if t in self._points:
            return t
        node = self._root
        while True:
            if node.left is not None:
                mid = node.left.end
                if t == mid:
                    return t
                node = node.left if t < mid else node.right
                continue
            if t - node.start <= self._resolution:
                return node.start
            if node.end - t <= self._resolution:
                return node.end
            length = node.end - node.start
            mid = self._split_point(node.start, node.end)
            if self._halfway or min(t - node.start, node.end - t) < 0.25 * length:
                if not node.start < mid < node.end:  # float resolution reached
                    return node.start if t - node.start <= node.end - t else node.end
                node.split(mid)
                self._points.add(mid)
                if t == mid:
                    return t
                continue
            node.split(t)
            self._points.add(t)
            return t

    def _split_point(self, start: float, end: float) -> float:
        """Where to halve a leaf: its midpoint, moved to the nearest point of the ``dt`` grid
        when that stays in the middle half. Sequential steps of ``dt`` then only ever create
        grid points, one bridge sample per step (plain halving creates about two)."""
        mid = 0.5 * (start + end)
        if self._dt is None or self._halfway:
            return mid
        origin = self._root.start
        on_grid = origin + round((mid - origin) / self._dt) * self._dt
        quarter = 0.25 * (end - start)
        return on_grid if start + quarter <= on_grid <= end - quarter else mid

    def _interval_values(self, ta: float, tb: float):
        """(W, H, A) over [ta, tb]; both are already endpoints of tree intervals."""
        node, w, h = self._lowest_common_node(ta, tb)
        if node.start == ta and node.end == tb:
            pieces = [(node, w, h)]
        else:
            w_l, h_l, w_r, h_r = self._children_values(node, w, h)
            pieces = self._pieces_from(node.left, w_l, h_l, ta)
            pieces += self._pieces_until(node.right, w_r, h_r, tb)
        first, w, h = pieces[0]
        with_area = self._have_a and len(self._size) >= 2
        a = self._levy_area(first, w, h) if with_area else None
        length = first.end - first.start
        for node_i, w_i, h_i in pieces[1:]:
            length_i = node_i.end - node_i.start
            if with_area:
                a = _chen(a, w, self._levy_area(node_i, w_i, h_i), w_i)
            if self._have_h:
                w, h = _aggregate(w, h, length, w_i, h_i, length_i)
            else:
                w = w + w_i
            length += length_i
        if self._have_a and not with_area:
            a = torch.zeros_like(w)
        return w, h, a

    def _lowest_common_node(self, ta: float, tb: float):
        """The smallest tree interval containing [ta, tb], with its values.

        Every cached node passed on the way down is marked as recently used: ancestors are needed
        again whenever the path moves to a new subtree, so keeping them makes sequential access O(1).
        """
        node = self._root
        w, h = node.w, node.h
        uncached = []
        ancestors = self._ancestors
        while node.left is not None:
            parent, mid = node, node.left.end
            if tb <= mid:
                node = node.left
            elif ta >= mid:
                node = node.right
            else:
                break
            if node.w is not None:
                if node in ancestors:
                    ancestors.move_to_end(node)
                else:
                    self._promote(node)
                w, h = node.w, node.h
                uncached.clear()
            else:
                uncached.append((parent, node))
        for parent, child in uncached:
            w_l, h_l, w_r, h_r = self._children_values(parent, w, h)
            w, h = (w_l, h_l) if child is parent.left else (w_r, h_r)
            self._promote(child)
        return node, w, h

    def _promote(self, node: _Node) -> None:
        """Keep a node on a root-to-query path in the ancestor cache (it is used by many queries)."""
        ancestors = self._ancestors
        if node in ancestors:
            ancestors.move_to_end(node)
            return
        self._cache.pop(node, None)
        ancestors[node] = None
        if self._ancestor_size is not None and len(ancestors) > self._ancestor_size:
            evicted, _ = ancestors.popitem(last=False)
            evicted.w = evicted.h = None

    def _touch(self, node: _Node) -> None:
        if node in self._ancestors:
            self._ancestors.move_to_end(node)
        else:
            self._cache.move_to_end(node)

    def _children_values(self, node: _Node, w, h):
        left, right = node.left, node.right
        if left.w is not None and right.w is not None:
            self._touch(left)
            self._touch(right)
            return left.w, left.h, right.w, right.h
        values = self._bridge(node, w, h)
        self._store(left, values[0], values[1])
        self._store(right, values[2], values[3])
        return values

    def _pieces_from(self, node: _Node, w, h, ta: float) -> list:
        """Tree intervals covering [ta, node.end], in time order."""
        pieces = []
        while node.start != ta:
            w_l, h_l, w_r, h_r = self._children_values(node, w, h)
            if ta >= node.left.end:
                node, w, h = node.right, w_r, h_r
            else:
                pieces.append((node.right, w_r, h_r))
                node, w, h = node.left, w_l, h_l
        pieces.append((node, w, h))
        pieces.reverse()
        return pieces

    def _pieces_until(self, node: _Node, w, h, tb: float) -> list:
        """Tree intervals covering [node.start, tb], in time order."""
        pieces = []
        while node.end != tb:
            w_l, h_l, w_r, h_r = self._children_values(node, w, h)
            if tb <= node.left.end:
                node, w, h = node.left, w_l, h_l
            else:
                pieces.append((node.left, w_l, h_l))
                node, w, h = node.right, w_r, h_r
        pieces.append((node, w, h))
        return pieces

    def _seeded(self, seed: int) -> torch.Generator:
        self._generator.manual_seed(seed)
        return self._generator

    def _store(self, node: _Node, w, h) -> None:
        node.w, node.h = w, h
        if node in self._ancestors:
            self._ancestors.move_to_end(node)
            return
        cache = self._cache
        cache[node] = None
        cache.move_to_end(node)
        if self._cache_size is not None and len(cache) > self._cache_size:
            evicted, _ = cache.popitem(last=False)
            evicted.w = evicted.h = None

    def _bridge(self, parent: _Node, w, h):
        """Sample the children's (W, H) given the parent's: the Brownian bridge, with Lévy area."""
        at = parent.left.end
        n = parent.end - parent.start
        l, r = at - parent.start, parent.end - at
        gen = self._seeded(parent.seed)
        if h is None:
            z = torch.randn(self._size, dtype=self._dtype, device=self._device, generator=gen)
            w_left = z.mul_(math.sqrt(l * r / n)).add_(w, alpha=l / n)
            return w_left, None, w - w_left, None
        # Gaussian conditioning of (W_left, H_left) on (W, H); the covariances follow from
        # W = W_l + W_r and H = (l H_l + r H_r + (r W_l - l W_r) / 2) / (l + r).
        z = torch.randn((2, *self._size), dtype=self._dtype, device=self._device, generator=gen)
        c_ww = l * r / n - 3 * l * l * r * r / n**3
        c_wh = -(l**3) * r / (2 * n**3)
        c_hh = l / 12 - l**4 / (12 * n**3)
        chol_11 = math.sqrt(max(c_ww, 0.0))
        chol_21 = c_wh / chol_11 if chol_11 > 0 else 0.0
        chol_22 = math.sqrt(max(c_hh - chol_21 * chol_21, 0.0))
        # The four children's values are linear in (W, H, z0, z1): one matrix product.
        w_left = (l / n, 6 * l * r / n**2, chol_11, 0.0)
        h_left = (0.0, l * l / n**2, chol_21, chol_22)
        w_right = tuple(-c for c in w_left)
        w_right = (1.0 + w_right[0], *w_right[1:])
        # H_right from H = (l H_l + r H_r + (r W_l - l W_r) / 2) / n.
        h_right = tuple(
            (n / r) * (k == 1) - (l / r) * hl - 0.5 * wl + (0.5 * l / r) * wr
            for k, (hl, wl, wr) in enumerate(zip(h_left, w_left, w_right))
        )
        coefficients = torch.tensor(
            (w_left, h_left, w_right, h_right), dtype=self._dtype, device=self._device
        )
        basis = torch.cat((w.reshape(1, -1), h.reshape(1, -1), z.view(2, -1)))
        children = torch.mm(coefficients, basis).view(4, *self._size)
        return children[0], children[1], children[2], children[3]

    def _levy_area(self, node: _Node, w, h) -> torch.Tensor:
        """Approximate Lévy area A_ij = ½∫(W_i dW_j - W_j dW_i) of one tree interval of length h.

        Both approximations are H_i W_j - W_i H_j plus independent antisymmetric Gaussian noise:
        Davie's of variance h²/12, Foster's of variance h²/20 + h (H_i² + H_j²)/5 (Foster, "Efficient
        approximation of Brownian Lévy area"); both give A the exact variance h²/4.
        """
        length = node.end - node.start
        area = h.unsqueeze(-1) * w.unsqueeze(-2) - w.unsqueeze(-1) * h.unsqueeze(-2)
        gen = self._seeded(_mix(node.seed ^ _A_NOISE_SALT))
        noise = torch.randn(
            (*self._size, self._size[-1]), dtype=self._dtype, device=self._device, generator=gen
        ).triu(diagonal=1)
        noise = noise - noise.transpose(-1, -2)  # antisymmetric, off-diagonal entries of variance 1
        if self._levy == LEVY_AREA_APPROXIMATIONS.foster:
            h_sq = h * h
            std = (
                length * length / 20 + (length / 5) * (h_sq.unsqueeze(-1) + h_sq.unsqueeze(-2))
            ).sqrt()
        else:
            std = math.sqrt(length * length / 12)
        return area + std * noise


class BrownianPath(BaseBrownian):
    """Brownian motion W(t) on [t0, t0 + 1] with W(t0) = w0, remembering every sampled value.

    Example:
        >>> bm = BrownianPath(t0=0.0, w0=torch.zeros(4, 1))
        >>> bm(0.5).shape  # W(0.5), and bm(0.2, 0.5) is an increment
        torch.Size([4, 1])
    """

    def __init__(self, t0: Any, w0: torch.Tensor, window_size: int = 8):
        self._w0 = w0
        start = _as_float("t0", t0)
        self._interval = BrownianInterval(
            start,
            start + 1.0,
            size=tuple(w0.shape),
            dtype=w0.dtype,
            device=w0.device,
            cache_size=None,
        )

    def __call__(self, t, tb=None, return_U: bool = False, return_A: bool = False):
        out = self._interval(t, tb, return_U=return_U, return_A=return_A)
        return out + self._w0 if tb is None and not (return_U or return_A) else out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self._interval!r})"

    shape = property(lambda self: self._interval.shape)
    dtype = property(lambda self: self._interval.dtype)
    device = property(lambda self: self._interval.device)
    levy_area_approximation = property(lambda self: self._interval.levy_area_approximation)
    t0 = property(lambda self: self._interval.t0)
    t1 = property(lambda self: self._interval.t1)


class BrownianTree(BaseBrownian):
    """Virtual Brownian tree: W(t) fixed by ``entropy`` alone, in memory bounded by the cache.

    Times are resolved to the dyadic grid of spacing at most ``tol``; each dyadic interval's
    midpoint value is drawn from the bridge with a seed computed from (entropy, level, index), so
    nothing but an LRU cache of recent node values is stored.

    Example:
        >>> bm = BrownianTree(t0=0.0, w0=torch.zeros(4, 1), t1=1.0, entropy=7)
        >>> torch.equal(bm(0.3), BrownianTree(0.0, torch.zeros(4, 1), 1.0, entropy=7)(0.3))
        True
    """

    def __init__(
        self,
        t0: Any,
        w0: torch.Tensor,
        t1: Any = None,
        w1: torch.Tensor | None = None,
        entropy: int | None = None,
        tol: float = 1e-6,
        pool_size: int = 24,
        cache_depth: int = 9,
        safety: float | None = None,
        cache_size: int = 256,
    ):
        self._start = _as_float("t0", t0)
        self._end = self._start + 1.0 if t1 is None else _as_float("t1", t1)
        if not self._start < self._end:
            raise InvalidArgumentError(f"need t0 < t1, got t0={self._start} and t1={self._end}")
        if tol <= 0:
            raise InvalidArgumentError(f"tol must be > 0, got {tol}")
        self._w0 = w0
        self._size = tuple(w0.shape)
        self._dtype, self._device = w0.dtype, w0.device
        self._entropy = _fresh_entropy() if entropy is None else int(entropy)
        length = self._end - self._start
        self._depth = min(60, max(1, math.ceil(math.log2(length / tol))))
        self._generator = torch.Generator(device=self._device)
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        if w1 is not None:
            self._root_w = (w1 - w0).to(self._dtype)
        else:
            self._generator.manual_seed(_mix(self._entropy ^ _ROOT_SALT))
            noise = torch.randn(
                self._size, dtype=self._dtype, device=self._device, generator=self._generator
            )
            self._root_w = noise * math.sqrt(length)

    shape = property(lambda self: self._size)
    dtype = property(lambda self: self._dtype)
    device = property(lambda self: self._device)
    levy_area_approximation = property(lambda self: LEVY_AREA_APPROXIMATIONS.none)
    t0 = property(lambda self: self._start)
    t1 = property(lambda self: self._end)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(t0={self._start:.3g}, t1={self._end:.3g}, size={self._size}, "
            f"entropy={self._entropy}, depth={self._depth})"
        )

    def __call__(self, t, tb=None, return_U: bool = False, return_A: bool = False):
        if return_U or return_A:
            raise InvalidArgumentError(
                "BrownianTree has no Lévy area; use BrownianInterval(levy_area_approximation=...)"
            )
        if tb is None:
            return self._w0 + self._from_start(t, "t")
        w_a, w_b = self._from_start(t, "ta"), self._from_start(tb, "tb")
        return w_b - w_a

    def _from_start(self, t: Any, name: str) -> torch.Tensor:
        t = _as_float(name, t)
        length = self._end - self._start
        if t < self._start - 1e-12 * length or t > self._end + 1e-12 * length:
            raise InvalidArgumentError(
                f"{name}={t} is outside the Brownian motion's span [{self._start}, {self._end}]"
            )
        depth = self._depth
        k = min(max(round((t - self._start) / length * 2**depth), 0), 2**depth)
        if k == 0:
            return torch.zeros(self._size, dtype=self._dtype, device=self._device)
        if k == 2**depth:
            return self._root_w
        total = None
        w = self._root_w
        index = 0
        for level in range(depth):
            if k == 0:  # the point is this node's start
                break
            half = 1 << (depth - level - 1)
            w_left = self._left_child(level, index, w, length / 2**level)
            if k >= half:
                total = w_left if total is None else total + w_left
                w, index, k = w - w_left, 2 * index + 1, k - half
            else:
                w, index = w_left, 2 * index
        return total if total is not None else torch.zeros_like(w)

    def _left_child(
        self, level: int, index: int, w: torch.Tensor, node_length: float
    ) -> torch.Tensor:
        key = (level, index)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        seed = _mix(_mix(self._entropy ^ ((level * 0x9E3779B97F4A7C15) & _MASK64)) + index)
        self._generator.manual_seed(seed)
        z = torch.randn(
            self._size, dtype=self._dtype, device=self._device, generator=self._generator
        )
        w_left = 0.5 * w + math.sqrt(node_length / 4) * z
        self._cache[key] = w_left
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return w_left


class ReverseBrownian(BaseBrownian):
    """The Brownian motion of reversed time: ``ReverseBrownian(bm)(ta, tb) == bm(-tb, -ta)``.

    Example:
        >>> bm = BrownianInterval(0.0, 1.0, size=(2,))
        >>> torch.equal(ReverseBrownian(bm)(-0.5, -0.25), bm(0.25, 0.5))
        True
    """

    def __init__(self, base_brownian: BaseBrownian):
        self.base_brownian = base_brownian

    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False):
        return self.base_brownian(-tb, -ta, return_U=return_U, return_A=return_A)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_brownian={self.base_brownian!r})"

    shape = property(lambda self: self.base_brownian.shape)
    dtype = property(lambda self: self.base_brownian.dtype)
    device = property(lambda self: self.base_brownian.device)
    levy_area_approximation = property(lambda self: self.base_brownian.levy_area_approximation)
    t0 = property(lambda self: -self.base_brownian.t1)
    t1 = property(lambda self: -self.base_brownian.t0)


def brownian_interval_like(
    y: torch.Tensor,
    t0: Any = 0.0,
    t1: Any = 1.0,
    size: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> BrownianInterval:
    """A BrownianInterval with the shape, dtype and device of ``y`` unless given.

    Example:
        >>> bm = brownian_interval_like(torch.zeros(3, 2), t1=2.0)
    """
    return BrownianInterval(
        t0=t0,
        t1=t1,
        size=tuple(y.shape) if size is None else size,
        dtype=y.dtype if dtype is None else dtype,
        device=y.device if device is None else device,
        **kwargs,
    )
