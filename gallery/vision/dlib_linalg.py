"""dlib's small-matrix geometry, replicated operation by operation in Python floats.

Face chips are sampled with bilinear interpolation truncated to uint8, so a sample
coordinate that differs from dlib's in its last bit can change a pixel (in flat regions
the interpolated value sits exactly on an integer). To be pixel-exact we therefore
compute the transforms exactly as dlib 20 does: its SVD (``svd4``, the Golub-Reinsch
algorithm from the Handbook for Automatic Computation that dlib uses when built without
LAPACK, as the PyPI wheel is), ``pinv`` on top of it, and the Umeyama similarity fit of
``find_similarity_transform``, with every sum in dlib's order. Python floats are IEEE
doubles and dlib is built without FMA contraction, so each step rounds the same way.

Matrices here are tiny (at most 3x3) lists of lists of floats.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from functools import lru_cache

Matrix = list[list[float]]
Point = tuple[float, float]

_EPS = sys.float_info.epsilon
_TINY = sys.float_info.min


def svd(a: Sequence[Sequence[float]]) -> tuple[Matrix, list[float], Matrix]:
    """dlib's ``svd4(SVD_SKINNY_U, true, a, u, q, v)``: ``a = u diag(q) v^T`` for m >= n.

    A line-by-line port of dlib/matrix/matrix_la.h (non-LAPACK branch).
    """
    m, n = len(a), len(a[0])
    if m < n:
        raise ValueError("svd needs at least as many rows as columns")
    u = [[float(a[i][j]) for j in range(n)] for i in range(m)]
    v = [[0.0] * n for _ in range(n)]
    q = [0.0] * n
    e = [0.0] * n
    eps = _EPS
    tol = _TINY / eps

    # Householder's reduction to bidiagonal form.
    g = x = 0.0
    l = 0
    for i in range(n):
        e[i] = g
        s = 0.0
        l = i + 1
        for j in range(i, m):
            s += u[j][i] * u[j][i]
        if s < tol:
            g = 0.0
        else:
            f = u[i][i]
            g = math.sqrt(s) if f < 0 else -math.sqrt(s)
            h = f * g - s
            u[i][i] = f - g
            for j in range(l, n):
                s = 0.0
                for k in range(i, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
        q[i] = g
        s = 0.0
        for j in range(l, n):
            s += u[i][j] * u[i][j]
        if s < tol:
            g = 0.0
        else:
            f = u[i][i + 1]
            g = math.sqrt(s) if f < 0 else -math.sqrt(s)
            h = f * g - s
            u[i][i + 1] = f - g
            for j in range(l, n):
                e[j] = u[i][j] / h
            for j in range(l, m):
                s = 0.0
                for k in range(l, n):
                    s += u[j][k] * u[i][k]
                for k in range(l, n):
                    u[j][k] += s * e[k]
        y = abs(q[i]) + abs(e[i])
        if y > x:
            x = y

    # Accumulation of right-hand transformations.
    for i in range(n - 1, -1, -1):
        if g != 0.0:
            h = u[i][i + 1] * g
            for j in range(l, n):
                v[j][i] = u[i][j] / h
            for j in range(l, n):
                s = 0.0
                for k in range(l, n):
                    s += u[i][k] * v[k][j]
                for k in range(l, n):
                    v[k][j] += s * v[k][i]
        for j in range(l, n):
            v[i][j] = v[j][i] = 0.0
        v[i][i] = 1.0
        g = e[i]
        l = i

    # Accumulation of left-hand transformations (skinny u: m x n).
    for i in range(n - 1, -1, -1):
        l = i + 1
        g = q[i]
        for j in range(l, n):
            u[i][j] = 0.0
        if g != 0.0:
            h = u[i][i] * g
            for j in range(l, n):
                s = 0.0
                for k in range(l, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
            for j in range(i, m):
                u[j][i] /= g
        else:
            for j in range(i, m):
                u[j][i] = 0.0
        u[i][i] += 1.0

    # Diagonalization of the bidiagonal form.
    eps *= x
    for k in range(n - 1, -1, -1):
        iterations = 0
        while True:
            # Test for splitting.
            cancel = False
            for l in range(k, -1, -1):
                if abs(e[l]) <= eps:
                    break
                if abs(q[l - 1]) <= eps:
                    cancel = True
                    break
            if cancel:
                c, s = 0.0, 1.0
                l1 = l - 1
                for i in range(l, k + 1):
                    f = s * e[i]
                    e[i] *= c
                    if abs(f) <= eps:
                        break
                    g = q[i]
                    h = q[i] = math.sqrt(f * f + g * g)
                    c = g / h
                    s = -f / h
                    for j in range(m):
                        y = u[j][l1]
                        z = u[j][i]
                        u[j][l1] = y * c + z * s
                        u[j][i] = -y * s + z * c
            # Test for convergence.
            z = q[k]
            if l == k:
                break
            iterations += 1
            if iterations > 300:
                raise ArithmeticError("svd did not converge")
            # Shift from bottom 2x2 minor.
            x = q[l]
            y = q[k - 1]
            g = e[k - 1]
            h = e[k]
            f = ((y - z) * (y + z) + (g - h) * (g + h)) / (2 * h * y)
            g = math.sqrt(f * f + 1.0)
            f = ((x - z) * (x + z) + h * (y / ((f - g) if f < 0 else (f + g)) - h)) / x
            # Next QR transformation.
            c = s = 1.0
            for i in range(l + 1, k + 1):
                g = e[i]
                y = q[i]
                h = s * g
                g *= c
                e[i - 1] = z = math.sqrt(f * f + h * h)
                c = f / z
                s = h / z
                f = x * c + g * s
                g = -x * s + g * c
                h = y * s
                y *= c
                for j in range(n):
                    x = v[j][i - 1]
                    z = v[j][i]
                    v[j][i - 1] = x * c + z * s
                    v[j][i] = -x * s + z * c
                q[i - 1] = z = math.sqrt(f * f + h * h)
                if z != 0:
                    c = f / z
                    s = h / z
                f = c * g + s * y
                x = -s * g + c * y
                for j in range(m):
                    y = u[j][i - 1]
                    z = u[j][i]
                    u[j][i - 1] = y * c + z * s
                    u[j][i] = -y * s + z * c
            e[l] = 0.0
            e[k] = f
            q[k] = x
        if z < 0.0:
            q[k] = -z
            for j in range(n):
                v[j][k] = -v[j][k]
    return u, q, v


def _matmul(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> Matrix:
    """``a @ b`` summing left to right from the first product, as dlib's multiply does."""
    inner = len(b)
    result = []
    for row in a:
        out_row = []
        for c in range(len(b[0])):
            total = row[0] * b[0][c]
            for k in range(1, inner):
                total += row[k] * b[k][c]
            out_row.append(total)
        result.append(out_row)
    return result


def pinv(a: Sequence[Sequence[float]]) -> Matrix:
    """dlib's ``pinv`` of a matrix with at least as many rows as columns."""
    u, w, v = svd(a)
    cutoff = _EPS * max(len(a), len(a[0])) * max(w)
    inv_w = [1.0 / x if (x >= cutoff or x <= -cutoff) and x != 0 else 0.0 for x in w]
    scaled_v = [[v[r][c] * inv_w[c] for c in range(len(w))] for r in range(len(v))]
    u_t = [list(col) for col in zip(*u, strict=True)]
    return _matmul(scaled_v, u_t)


def _affine_design(from_points: Sequence[Point]) -> tuple[tuple[float, ...], ...]:
    return (
        tuple(float(p[0]) for p in from_points),
        tuple(float(p[1]) for p in from_points),
        tuple(1.0 for _ in from_points),
    )


@lru_cache(maxsize=16)
def _pinv_of_design(design: tuple[tuple[float, ...], ...]) -> Matrix:
    return pinv(design)


def affine_pinv(from_points: Sequence[Point]) -> Matrix:
    """``pinv(P)`` of dlib's ``find_affine_transform`` for three source points (cached)."""
    return _pinv_of_design(_affine_design(from_points))


def find_affine_transform(from_points: Sequence[Point], to_points: Sequence[Point]) -> tuple[Matrix, Point]:
    """dlib's ``find_affine_transform``: ``(m, b)`` with ``to ~ m @ from + b``, via ``Q pinv(P)``."""
    if len(from_points) != 3:
        raise ValueError("only the three-point affine fit is needed (and cached)")
    q = [[float(p[0]) for p in to_points], [float(p[1]) for p in to_points]]
    full = _matmul(q, affine_pinv(from_points))
    return [full[0][:2], full[1][:2]], (full[0][2], full[1][2])


def find_similarity_transform(from_points: Sequence[Point], to_points: Sequence[Point]) -> tuple[Matrix, Point]:
    """dlib's ``find_similarity_transform`` (Umeyama) in double precision: ``(c R, t)``."""
    count = len(from_points)
    mfx = mfy = mtx = mty = 0.0
    for (fx, fy), (tx, ty) in zip(from_points, to_points, strict=True):
        mfx += fx
        mfy += fy
        mtx += tx
        mty += ty
    mfx /= count
    mfy /= count
    mtx /= count
    mty /= count

    sigma_from = 0.0
    cov = [[0.0, 0.0], [0.0, 0.0]]
    for (fx, fy), (tx, ty) in zip(from_points, to_points, strict=True):
        dfx, dfy = fx - mfx, fy - mfy
        dtx, dty = tx - mtx, ty - mty
        sigma_from += dfx * dfx + dfy * dfy
        cov[0][0] += dtx * dfx
        cov[0][1] += dtx * dfy
        cov[1][0] += dty * dfx
        cov[1][1] += dty * dfy
    sigma_from /= count
    # dlib divides a matrix by a scalar by multiplying with its reciprocal.
    inv_count = 1.0 / count
    cov = [[x * inv_count for x in row] for row in cov]

    u, d, v = svd(cov)
    s = [1.0, 1.0]
    det_cov = cov[0][0] * cov[1][1] - cov[0][1] * cov[1][0]
    det_u = u[0][0] * u[1][1] - u[0][1] * u[1][0]
    det_v = v[0][0] * v[1][1] - v[0][1] * v[1][0]
    if det_cov < 0 or (det_cov == 0 and det_u * det_v < 0):
        if d[1] < d[0]:
            s[1] = -1.0
        else:
            s[0] = -1.0
    u_s = _matmul(u, [[s[0], 0.0], [0.0, s[1]]])
    r = _matmul(u_s, [[v[0][0], v[1][0]], [v[0][1], v[1][1]]])
    c = 1.0
    if sigma_from != 0:
        c = 1.0 / sigma_from * (d[0] * s[0] + d[1] * s[1])
    # dlib pulls the scalar out of the product: t = mean_to - c * (r @ mean_from).
    t = (
        mtx - (r[0][0] * mfx + r[0][1] * mfy) * c,
        mty - (r[1][0] * mfx + r[1][1] * mfy) * c,
    )
    return [[r[0][0] * c, r[0][1] * c], [r[1][0] * c, r[1][1] * c]], t


def apply_affine(m: Matrix, b: Point, point: Point) -> Point:
    """``m @ p + b`` as dlib's ``point_transform_affine`` evaluates it."""
    x, y = point
    return (m[0][0] * x + m[0][1] * y + b[0], m[1][0] * x + m[1][1] * y + b[1])
