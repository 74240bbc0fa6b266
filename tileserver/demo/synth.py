"""The generator: vectorised numpy from fixed seeds, a land-cover map shared by all dates of a
product, per-date vegetation vigour, snow, clouds, cirrus and cloud shadows; the final
array of any band (:func:`generate_band`) without writing files."""

from __future__ import annotations

import functools
import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tileserver.demo.products import (
    _BI,
    PRODUCTS,
    ItemSpec,
    ProductSpec,
    _product,
    band_grid,
)


def _rng(seed: int, *tags: str | int) -> np.random.Generator:
    """A generator keyed by a seed and stable tags (no use of ``hash()``)."""
    key = [seed] + [t if isinstance(t, int) else zlib.crc32(t.encode()) for t in tags]
    return np.random.default_rng(np.random.SeedSequence(key))


_M64 = (1 << 64) - 1


def _hash_u01(ids: np.ndarray, *salts: int) -> np.ndarray:
    """Counter-based uniform [0, 1) floats from integer ids (splitmix64)."""
    x = np.asarray(ids).astype(np.uint64)
    for s in salts:
        x = x ^ np.uint64((s * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _M64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _bspline_axis(n: int, spacing: float) -> tuple[np.ndarray, np.ndarray, int]:
    t = (np.arange(n, dtype=np.float64) + 0.5) / spacing
    i = np.floor(t).astype(np.intp)
    f = (t - i).astype(np.float32)
    f2, f3 = f * f, f * f * f
    w = np.stack(
        [
            (1 - f) ** 3 / 6,
            (3 * f3 - 6 * f2 + 4) / 6,
            (-3 * f3 + 3 * f2 + 3 * f + 1) / 6,
            f3 / 6,
        ]
    ).astype(np.float32)
    idx = i[None, :] + np.arange(4)[:, None]
    return idx, w, int(i[-1]) + 4


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], spacing: float) -> np.ndarray:
    """Smooth noise (cubic B-spline over a random lattice), ~unit variance.

    Only elementwise float32 operations are used (no BLAS), so the result is
    bit-identical on every machine.
    """
    h, w = shape
    ir, wr, nr = _bspline_axis(h, spacing)
    ic, wc, nc = _bspline_axis(w, spacing)
    lat = rng.standard_normal((nr, nc), dtype=np.float32)
    cols = wc[0][None, :] * lat[:, ic[0]]  # (nr, w): small
    for k in range(1, 4):
        cols += wc[k][None, :] * lat[:, ic[k]]
    cols *= np.float32(1 / 0.48)
    out = wr[0][:, None] * cols[ir[0]]  # gathers whole rows: fast
    tmp = np.empty_like(out)
    for k in range(1, 4):
        np.multiply(wr[k][:, None], cols[ir[k]], out=tmp)
        out += tmp
    return out


def _fbm(rng: np.random.Generator, shape: tuple[int, int], spacing: float,
         octaves: int = 3, persistence: float = 0.5) -> np.ndarray:
    """Fractal sum of value noise, ~unit variance."""
    total = np.zeros(shape, np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += np.float32(amp) * _value_noise(rng, shape, max(spacing / 2**o, 1.5))
        norm += amp * amp
        amp *= persistence
    total *= np.float32(1 / np.sqrt(norm))
    return total


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


# --------------------------------------------------------------------------
# Land cover and spectra
# --------------------------------------------------------------------------

FIELD, GRASS, FOREST, WATER, URBAN, ROCK = range(6)

# Surface reflectance (x10000) end-members per class, bands in _ALL order:
#            B01   B02   B03   B04   B05   B06   B07   B08   B8A   B09   B10   B11   B12
_LO = np.array([
    [900, 1000, 1300, 1650, 1950, 2150, 2300, 2450, 2550, 2600, 2600, 3300, 2700],  # bare soil
    [700, 650, 850, 950, 1350, 1900, 2200, 2400, 2500, 2500, 2500, 2900, 2000],  # dry grass
    [350, 330, 480, 520, 820, 1400, 1700, 1900, 2000, 2000, 2000, 1750, 950],  # leafless forest
    [700, 600, 480, 250, 200, 150, 130, 110, 100, 80, 80, 50, 40],  # clear water
    [900, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1550, 1550, 1550, 1700, 1500],  # asphalt
    [1100, 1200, 1450, 1700, 1900, 2050, 2150, 2250, 2300, 2300, 2300, 2700, 2300],  # rock
], np.float32)
_HI = np.array([
    [250, 280, 620, 330, 1050, 3000, 3900, 4200, 4350, 4400, 4400, 2100, 950],  # green crop
    [350, 350, 700, 450, 1100, 2600, 3200, 3500, 3600, 3600, 3600, 2300, 1200],  # green meadow
    [220, 220, 420, 260, 700, 1900, 2400, 2700, 2800, 2800, 2800, 1300, 550],  # dense conifer
    [850, 800, 850, 650, 550, 300, 260, 230, 210, 150, 150, 90, 70],  # turbid water
    [1900, 2000, 2200, 2500, 2700, 2850, 2950, 3100, 3150, 3150, 3150, 3400, 3000],  # bright roofs
    [1500, 1700, 2000, 2350, 2600, 2800, 2900, 3050, 3100, 3100, 3100, 3600, 3100],  # bright rock
], np.float32)
_SNOW = np.array([9300, 9300, 9200, 9000, 8800, 8600, 8400, 8000, 7800, 6800, 6000, 700, 500],
                 np.float32)
_CLOUD = np.array([7300, 7100, 7000, 7000, 7000, 6950, 6900, 6900, 6850, 6000, 2400, 5000, 3600],
                  np.float32)
_CIRRUS = np.array([900, 850, 800, 750, 720, 700, 700, 700, 700, 600, 1400, 500, 350], np.float32)
# Fraction of the light left in cloud shadow (diffuse skylight is bluish).
_SHADOW_KEEP = np.array(
    [0.5, 0.45, 0.38, 0.33, 0.31, 0.3, 0.29, 0.28, 0.28, 0.28, 0.28, 0.25, 0.24], np.float32)
# L1C: TOA = path + transmittance * surface (cirrus band B10 sees almost no surface).
_PATH = np.array([1300, 1000, 650, 400, 350, 300, 280, 250, 240, 100, 12, 60, 30], np.float32)
_TRANS = np.array([0.80, 0.85, 0.90, 0.92, 0.93, 0.94, 0.95, 0.95, 0.95, 0.25, 0.002, 0.93, 0.90],
                  np.float32)


@dataclass
class _Scene:
    """Static (date independent) description of a product's landscape at base resolution."""

    cls: np.ndarray  # uint8 class map
    frac: np.ndarray  # float32 static mixing fraction (texture) per pixel
    parcel: np.ndarray  # int32 parcel id (-1 outside fields)
    parcel_ids: np.ndarray  # sorted distinct parcel ids
    parcel_inv: np.ndarray  # index into parcel_ids of every field pixel (row-major)
    border: np.ndarray  # bool: parcel edge pixels
    elev: np.ndarray  # float32 elevation (m)
    shade: np.ndarray | None  # float32 terrain illumination factor (alpine only)
    snow_ok: np.ndarray  # float32 how much snow a pixel can hold (0..1)


@dataclass
class _State:
    """Per-acquisition surface and atmosphere state at base resolution."""

    frac: np.ndarray
    snow: np.ndarray
    cloud: np.ndarray  # opacity 0..1
    cirrus: np.ndarray  # 0..1
    shadow: np.ndarray  # 0..1
    valid: np.ndarray | None  # bool, None = all valid


def _base_shape(p: ProductSpec) -> tuple[int, int]:
    _, w, h = band_grid(p, p.base_resolution)
    return h, w


def _parcels(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, angle: float,
             widths: tuple[float, float], lengths: tuple[float, float], id_offset: int
             ) -> np.ndarray:
    """Brick-like partition into rotated rectangular parcels; returns parcel ids."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u = (x * c + y * s).astype(np.float32)
    v = (-x * s + y * c).astype(np.float32)
    umin, vmin = float(u.min()), float(v.min())
    span = float(v.max()) - vmin
    n_strips = int(span / widths[0]) + 2
    cuts = vmin + np.cumsum(rng.uniform(*widths, n_strips))
    strip = np.searchsorted(cuts, v).astype(np.int64)
    length = rng.uniform(*lengths, n_strips + 1).astype(np.float32)
    offset = rng.uniform(0, lengths[1], n_strips + 1).astype(np.float32)
    j = np.floor((u - umin + offset[strip]) / length[strip]).astype(np.int64)
    n_j = int((float(u.max()) - umin + lengths[1]) / lengths[0]) + 2
    pid = strip * n_j + j
    # Split some parcels in two along the strip direction.
    lo = np.concatenate([[vmin], cuts]).astype(np.float32)[strip]
    hi = cuts.astype(np.float32)[np.minimum(strip, n_strips - 1)]
    vfrac = (v - lo) / (hi - lo)
    split_table = _hash_u01(np.arange(int(pid.max()) + 1), id_offset, 11) < 0.35
    pid = pid * 2 + (split_table[pid] & (vfrac > 0.5))
    return (pid + id_offset).astype(np.int32)


def _town_mask(x: np.ndarray, y: np.ndarray, towns: list[tuple[float, float, float]],
               warp: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Urban mask, roof brightness and park mask for a list of (x, y, radius) towns."""
    h, w = x.shape
    r = float(x[0, 1] - x[0, 0])
    rnorm = np.full(x.shape, np.inf, np.float32)
    for tx, ty, tr in towns:
        r0, r1 = max(int((ty - 2 * tr) / r), 0), min(int((ty + 2 * tr) / r) + 1, h)
        c0, c1 = max(int((tx - 2 * tr) / r), 0), min(int((tx + 2 * tr) / r) + 1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        d = np.hypot(x[r0:r1, c0:c1] - np.float32(tx), y[r0:r1, c0:c1] - np.float32(ty))
        np.minimum(rnorm[r0:r1, c0:c1], d / np.float32(tr), out=rnorm[r0:r1, c0:c1])
    rnorm *= np.maximum(1 + 0.22 * warp, 0.6)  # ragged outline (stays inside the boxes)

    def grid_hash(bw: float, bh: float, salt: int) -> np.ndarray:
        bx = (x[0] // bw).astype(np.intp)
        by = (y[:, 0] // bh).astype(np.intp)
        ids = np.arange(by.max() + 1)[:, None] * 1_000_003 + np.arange(bx.max() + 1)[None, :]
        table = _hash_u01(ids, seed, salt).astype(np.float32)
        return table[by[:, None], bx[None, :]]

    # Built-up clusters decided on a coarse grid, roofs on a finer one.
    hc = grid_hash(260.0, 220.0, 1)
    urban = (rnorm < 0.5) | ((rnorm < 1.0) & (hc > (rnorm - 0.5) / 0.5 * 0.9))
    park = urban & (grid_hash(260.0, 220.0, 2) < 0.06)
    bw, bh = 110.0, 80.0
    street = ((x % bw) < 20) | ((y % bh) < 20)
    roof = 0.3 + 0.45 * grid_hash(bw, bh, 3) + 0.12 * warp
    roof[street] = 0.7 * roof[street] + 0.05
    np.clip(roof, 0, 1, out=roof)
    return urban, roof, park


def _make_scene(p: ProductSpec) -> _Scene:
    h, w = _base_shape(p)
    r = float(p.base_resolution)
    rng = _rng(p.seed, "scene")
    y = ((np.arange(h, dtype=np.float32) + 0.5) * r)[:, None] * np.ones((1, w), np.float32)
    x = ((np.arange(w, dtype=np.float32) + 0.5) * r)[None, :] * np.ones((h, 1), np.float32)
    wm, hm = w * r, h * r
    px = lambda metres: metres / r  # noqa: E731  (metres -> base pixels)

    n_forest = _fbm(rng, (h, w), px(2500), 4)
    n_warp = _fbm(rng, (h, w), px(1200), 3)
    n_tex = _fbm(rng, (h, w), px(300), 2)
    n_field = _fbm(rng, (h, w), px(150), 2)
    n_dom = _value_noise(rng, (h, w), px(8000))

    angle1, angle2 = rng.uniform(-30, 30, 2)
    parcel = np.where(
        n_dom > 0,
        _parcels(rng, x, y, angle1, (120, 420), (180, 700), 0),
        _parcels(rng, x, y, angle2 + 60, (150, 450), (200, 650), 1 << 24),
    )
    cls = np.full((h, w), FIELD, np.uint8)
    frac = np.clip(0.5 + 0.15 * n_tex, 0, 1).astype(np.float32)
    snow_ok = np.ones((h, w), np.float32)

    if p.terrain == "alpine":
        n_relief = _fbm(rng, (h, w), px(4000), 4)
        n_tree = _value_noise(rng, (h, w), px(1500))
        yy = y[:, 0]
        axis = (0.42 * wm + 2200 * np.sin(2 * np.pi * yy / 21000 + 0.7)
                + 600 * np.sin(2 * np.pi * yy / 6300)).astype(np.float32)
        d_main = np.abs(x - axis[:, None])
        side_y = (0.33 * hm + 900 * np.sin(2 * np.pi * x[0] / 9000)).astype(np.float32)
        east = np.maximum(x - axis[:, None], 0)
        d_side = np.abs(y - side_y[None, :]) + 0.18 * east
        d_side = np.where(x > axis[:, None], d_side, 1e6)
        k_soft = 700.0  # smooth minimum: no creases where the valleys meet
        d = -k_soft * np.logaddexp(-d_main / k_soft, -d_side / k_soft) + 600 * n_warp
        floor_w = 1300.0
        up = np.maximum(d - floor_w, 0)
        elev = (240 + 0.004 * (hm - y)
                + 2150 * (1 - np.exp(-up / 4200)) + 420 * n_relief * (1 - np.exp(-up / 1500))
                + 12 * n_tex).astype(np.float32)
        valley = d < floor_w
        # Slopes: forest below a noisy tree line, then alpine meadow, then rock.
        treeline = 1950 + 180 * n_tree
        slope = ~valley
        cls[slope & (elev < treeline) & (n_forest > -1.0)] = FOREST
        cls[slope & (elev < treeline) & (n_forest <= -1.0)] = GRASS
        cls[slope & (elev >= treeline)] = GRASS
        cls[slope & (elev >= 2350 + 150 * n_tree)] = ROCK
        cls[valley & (n_forest > 1.3)] = FOREST
        # Towns on the valley floor.
        ys = (0.18 * hm, 0.52 * hm, 0.83 * hm, 0.33 * hm)
        towns: list[tuple[float, float, float]] = []
        for k, ty in enumerate(ys):
            iy = min(int(ty / r), h - 1)
            tx = float(axis[iy]) + (700 if k % 2 else -600)
            if k == 3:  # village in the side valley
                tx = float(axis[iy]) + 5200
                ty = float(side_y[min(int(tx / r), w - 1)])
            towns.append((tx, ty, (1500.0, 900.0, 1200.0, 600.0)[k]))
        urban, roof, park = _town_mask(x, y, towns, n_warp, p.seed)
        urban &= elev < 900
        cls[urban] = URBAN
        cls[urban & park] = GRASS
        frac[urban] = roof[urban]
        # River along the valley, lake in the side valley.
        river_c = axis + 260 * np.sin(2 * np.pi * yy / 2300)
        river = np.abs(x - river_c[:, None]) < 32 + 6 * n_warp
        lx = float(axis[int(0.33 * h)]) + 9000
        ly = float(side_y[min(int(lx / r), w - 1)])
        lake = ((x - lx) / 2100) ** 2 + ((y - ly) / 520) ** 2 + 0.25 * n_warp < 1
        water = river | lake
        cls[water] = WATER
        frac[river] = 0.55 + 0.1 * n_tex[river]
        frac[lake] = 0.15 + 0.08 * n_tex[lake]
        # Terrain illumination for a January morning sun (azimuth 160, elevation 21).
        gy, gx = np.gradient(elev, r)
        nx, ny, nz = -gx, gy, np.ones_like(gx)  # rows run south: d/dnorth = -d/drow
        norm = np.sqrt(nx * nx + ny * ny + nz * nz)
        az, el = np.radians(160.0), np.radians(21.0)
        cos_i = (nx * np.sin(az) * np.cos(el) + ny * np.cos(az) * np.cos(el)
                 + nz * np.sin(el)) / norm
        direct = np.clip(cos_i, 0, None) / np.sin(el)
        shade = np.clip(0.3 + 0.7 * direct, 0.3, 1.5).astype(np.float32)
        snow_ok[cls == FOREST] = 0.55
    else:
        n_hills = _fbm(rng, (h, w), px(3000), 3)
        elev = (170 + 280 * _smoothstep((0.3 * wm - x) / 6000 + 0.5) + 40 * n_hills
                ).astype(np.float32)
        west = x < 0.27 * wm + 2500 * n_warp
        cls[(west & (n_forest > -0.7)) | (n_forest > 1.25)] = FOREST
        cls[(~west) & (n_forest < -1.6)] = GRASS
        towns = [(0.56 * wm, 0.37 * hm, 6500.0)]  # the city
        trng = _rng(p.seed, "towns")
        for _ in range(9):
            towns.append((float(trng.uniform(0.1, 0.95) * wm), float(trng.uniform(0.05, 0.95) * hm),
                          float(trng.uniform(500, 1400))))
        urban, roof, park = _town_mask(x, y, towns, n_warp, p.seed)
        cls[urban] = URBAN
        cls[urban & park] = GRASS
        frac[urban] = roof[urban]
        # A large river (~300 m wide) crossing the north-east, and gravel-pit ponds.
        xx = x[0]
        cy = (0.30 * hm + 0.45 * (xx - 0.5 * wm) + 1400 * np.sin(2 * np.pi * xx / 9000)
              + 500 * np.sin(2 * np.pi * xx / 2700)).astype(np.float32)
        river = np.abs(y - cy[None, :]) < 150 + 25 * n_warp
        ponds = (_fbm(rng, (h, w), px(700), 2) > 2.5) & (cls == FIELD) & (y > 0.5 * hm)
        cls[river | ponds] = WATER
        frac[river] = 0.6 + 0.1 * n_tex[river]
        frac[ponds] = 0.2 + 0.1 * n_tex[ponds]
        shade = None
        snow_ok[cls == FOREST] = 0.35
        snow_ok[cls == URBAN] = 0.5

    forest = cls == FOREST
    frac[forest] = np.clip(0.72 + 0.2 * n_tex[forest], 0, 1)
    rock = cls == ROCK
    frac[rock] = np.clip(0.4 + 0.25 * n_tex[rock], 0, 1)
    grass = cls == GRASS
    frac[grass] = np.clip(0.35 + 0.1 * n_tex[grass], 0, 1)
    snow_ok[cls == WATER] = 0.0

    fields = cls == FIELD
    parcel = np.where(fields, parcel, -1).astype(np.int32)
    border = np.zeros((h, w), bool)
    border[1:, :] |= parcel[1:, :] != parcel[:-1, :]
    border[:, 1:] |= parcel[:, 1:] != parcel[:, :-1]
    border &= fields
    frac[fields] = 0.06 * n_field[fields]  # within-field variation, added to vigour
    ids, inv = np.unique(parcel[fields], return_inverse=True)
    return _Scene(cls, frac, parcel, ids, inv.astype(np.int32), border, elev, shade, snow_ok)


def _parcel_vigour(p: ProductSpec, ids: np.ndarray, date_index: int) -> np.ndarray:
    """Per-parcel vegetation fraction for one date (vectorised over parcel ids)."""
    doy = p.datetimes[date_index].timetuple().tm_yday
    t = (doy - 5) / 80.0
    u = [_hash_u01(ids, p.seed, k) for k in range(6)]
    if p.terrain == "alpine":  # orchards, meadows, a few winter crops and bare plots
        probs = np.array([0.15, 0.20, 0.05, 0.25, 0.10, 0.25])
    else:
        probs = np.array([0.35, 0.25, 0.10, 0.12, 0.13, 0.05])
    crop = np.searchsorted(np.cumsum(probs), u[0] * probs.sum())
    v = np.empty(ids.shape, np.float64)
    # 0 winter cereal: slowly greening
    v0 = 0.30 + 0.2 * u[1] + (0.05 + 0.3 * u[2]) * t
    # 1 bare / ploughed
    v1 = 0.03 + 0.08 * u[1]
    # 2 rapeseed: lush, frost-damaged in late January
    v2 = 0.62 + 0.2 * u[1] - 0.15 * (doy > 20) * (doy < 40) * u[2]
    # 3 meadow / pasture (or orchard grass cover)
    v3 = 0.38 + 0.15 * u[1] + 0.25 * t * u[2]
    # 4 cover crop terminated (mulched / ploughed) at a parcel-specific date
    end = 5 + 60 * u[2]
    v4 = np.where(doy < end, 0.6 + 0.2 * u[1], 0.08)
    # 5 orchard: leafless trees over grass
    v5 = 0.33 + 0.1 * u[1] + 0.08 * t
    for k, vk in enumerate((v0, v1, v2, v3, v4, v5)):
        v[crop == k] = np.broadcast_to(vk, ids.shape)[crop == k]
    jitter = _hash_u01(ids, p.seed, 100 + date_index) - 0.5
    v += 0.2 * jitter
    return np.clip(v, 0.0, 0.95).astype(np.float32)


def _make_state(p: ProductSpec, scene: _Scene, d: int) -> _State:
    h, w = scene.cls.shape
    r = float(p.base_resolution)
    rng = _rng(p.seed, "date", d)
    doy = p.datetimes[d].timetuple().tm_yday

    # Vegetation vigour.
    frac = scene.frac.copy()
    fields = scene.parcel >= 0
    frac[fields] += _parcel_vigour(p, scene.parcel_ids, d)[scene.parcel_inv]
    frac[scene.border] *= 0.6
    grass = scene.cls == GRASS
    frac[grass] += (np.float32(0.12 * (doy - 5) / 80)
                    + 0.06 * np.sin(np.float32(d * 2.1) + 9 * scene.frac[grass]))
    forest = scene.cls == FOREST
    # stands (by their static texture) green up / brown differently from date to date
    frac[forest] += 0.06 * np.sin(np.float32(d * 1.7) + 9 * scene.frac[forest])
    np.clip(frac, 0, 1, out=frac)

    # Snow.
    if p.terrain == "alpine":
        n_snow = _fbm(rng, (h, w), 1500 / r, 3)
        snow = np.clip((scene.elev - p.snow[d]) / 350 + 0.35 * n_snow, 0, 1)
    else:
        cover = p.snow[d]
        if cover > 0:
            n_snow = _fbm(rng, (h, w), 4000 / r, 4)
            thr = np.quantile(n_snow[::7, ::7], 1 - cover)
            snow = np.clip((n_snow - thr) / 0.4, 0, 1)
        else:
            snow = np.zeros((h, w), np.float32)
    snow = (snow * scene.snow_ok).astype(np.float32)

    # Clouds on a grid extended to the south-east so that shadows (cast to the NNW)
    # of clouds outside the tile fall inside it.
    dist = p.shadow_distance[d]
    az = np.radians(160.0)
    dr = int(round(dist * np.cos(np.pi - az) / r))  # southwards
    dc = int(round(dist * np.sin(np.pi - az) / r))  # eastwards
    n_cloud = _fbm(rng, (h + dr, w + dc), 2800 / r, 5, 0.55)
    core = n_cloud[:h, :w]
    thr = np.quantile(core[::5, ::5], 1 - p.cloud_cover[d])
    opacity = np.clip((n_cloud - thr) / 0.9, 0, 1)
    opacity = (opacity * (2 - opacity)).astype(np.float32)  # fast rise at the edge
    cloud = np.ascontiguousarray(opacity[:h, :w])
    shadow = np.ascontiguousarray(opacity[dr:, dc:])
    shadow = np.clip(shadow * 1.3, 0, 1) * (cloud < 0.25)
    if p.cirrus[d]:
        n_ci = _fbm(rng, (h, w), 3500 / r, 3)
        streaks = _value_noise(rng, (h, w), 900 / r)
        thr_c = np.quantile(n_ci[::5, ::5], 0.8)
        cirrus = (np.clip((n_ci - thr_c) / 0.7, 0, 1) * np.clip(0.7 + 0.3 * streaks, 0, 1)
                  ).astype(np.float32)
    else:
        cirrus = np.zeros((h, w), np.float32)

    valid = None
    if d in p.nodata_strip:
        edge = 1.0 - p.nodata_strip[d]
        cols = np.arange(w, dtype=np.float32)[None, :]
        rows = np.arange(h, dtype=np.float32)[:, None]
        # A slanted swath edge, like a real orbit boundary.
        limit = w * (edge + 0.03 * (rows / h - 0.5) * 2)
        valid = cols < limit
    return _State(frac, snow, cloud, cirrus, shadow.astype(np.float32), valid)


def _surface_band(p: ProductSpec, scene: _Scene, st: _State, band: str,
                  atmosphere: bool = True) -> np.ndarray:
    """Noise-free reflectance (float32, x10000) of one band at base resolution.

    With ``atmosphere=False`` the clear-sky ground reflectance (no clouds, cloud
    shadows or cirrus, no top-of-atmosphere conversion) is returned.
    """
    b = _BI[band]
    lo = _LO[:, b][scene.cls]
    hi = _HI[:, b][scene.cls]
    refl = lo + st.frac * (hi - lo)
    refl += st.snow * (_SNOW[b] - refl)
    if scene.shade is not None:
        refl *= scene.shade
    if not atmosphere:
        return refl
    refl *= 1 - st.shadow * (1 - _SHADOW_KEEP[b])
    if p.level == "L1C":
        refl = _PATH[b] + _TRANS[b] * refl
    refl += st.cloud * (_CLOUD[b] - refl)
    refl += st.cirrus * _CIRRUS[b]
    return refl


def _scl(p: ProductSpec, scene: _Scene, st: _State) -> np.ndarray:
    red = _surface_band(p, scene, st, "B04", atmosphere=False)
    nir = _surface_band(p, scene, st, "B8A", atmosphere=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    scl = np.where(ndvi > 0.4, 4, 5).astype(np.uint8)
    scl[scene.cls == WATER] = 6
    scl[st.snow > 0.5] = 11
    scl[st.shadow > 0.3] = 3
    scl[st.cirrus > 0.25] = 10
    scl[(st.cloud > 0.08) & (st.cloud <= 0.3)] = 10  # thin cloud edges
    scl[st.cloud > 0.3] = 8
    scl[st.cloud > 0.65] = 9
    if st.valid is not None:
        scl[~st.valid] = 0
    return scl


class _Cache:
    """Thread-safe lazily computed scenes and states."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Any, threading.Lock] = {}
        self._values: dict[Any, Any] = {}

    def _get(self, key: Any, fn: Any) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            lk = self._locks.setdefault(key, threading.Lock())
        with lk:
            with self._lock:
                if key in self._values:
                    return self._values[key]
            value = fn()
            with self._lock:
                self._values[key] = value
            return value

    def scene(self, p: ProductSpec) -> _Scene:
        return self._get(("scene", p.id), lambda: _make_scene(p))

    def put_scene(self, p: ProductSpec, scene: _Scene) -> None:
        with self._lock:
            self._values[("scene", p.id)] = scene

    def state(self, p: ProductSpec, d: int) -> _State:
        return self._get(("state", p.id, d), lambda: _make_state(p, self.scene(p), d))

    def noise_tile(self, p: ProductSpec) -> np.ndarray:
        return self._get(("noise", p.id), lambda: _noise_tile(p))

    def drop_state(self, p: ProductSpec, d: int) -> None:
        with self._lock:
            self._values.pop(("state", p.id, d), None)


def _band_array(p: ProductSpec, item: ItemSpec, band: str, cache: _Cache) -> np.ndarray:
    """Full-size final array of a band (what is written to the COG)."""
    scene = cache.scene(p)
    st = cache.state(p, item.index)
    spec = p.band(band)
    if band == "SCL":
        return _scl(p, scene, st)
    base = _surface_band(p, scene, st, band)
    valid = st.valid
    f = spec.resolution / p.base_resolution
    if f > 1:  # coarser than the simulation grid: block average
        k = int(round(f))
        hh, ww = base.shape[0] // k, base.shape[1] // k
        base = base[: hh * k, : ww * k].reshape(hh, k, ww, k).mean(axis=(1, 3), dtype=np.float32)
        if valid is not None:
            valid = np.asarray(valid[: hh * k, : ww * k].reshape(hh, k, ww, k).all(axis=(1, 3)))
    k = int(round(1 / f)) if f < 1 else 1  # finer: pixel repetition (k x k)
    hh, ww = base.shape
    noise = _noise(p, item, band, spec.resolution, (hh * k, ww * k), cache)
    n4 = noise.reshape(hh, k, ww, k)
    b4 = base[:, None, :, None]
    # Mild sensor noise: ~0.25 % relative + 1 DN; +0.5 then truncation = rounding.
    n4 *= np.float32(0.0025) * b4 + np.float32(1.0)
    n4 += b4 + np.float32(0.5)
    np.maximum(noise, 1, out=noise)
    np.minimum(noise, 10000, out=noise)
    out = noise.astype(np.uint16)
    if valid is not None:
        if k > 1:
            valid = np.repeat(np.repeat(valid, k, axis=0), k, axis=1)
        out[~valid] = 0
    return out


_NOISE_TILE = 1024


def _noise_tile(p: ProductSpec) -> np.ndarray:
    return _rng(p.seed, "noise-tile").standard_normal((_NOISE_TILE, _NOISE_TILE), dtype=np.float32)


def _noise(p: ProductSpec, item: ItemSpec, band: str, res: int, shape: tuple[int, int],
           cache: _Cache) -> np.ndarray:
    """Unit Gaussian pixel noise for one band (a shifted/flipped periodic noise tile)."""
    tile = cache.noise_tile(p)
    rng = _rng(p.seed, "noise", item.index, _BI[band], res)
    oy, ox, flip = (int(v) for v in rng.integers(0, _NOISE_TILE, 3))
    if flip & 1:
        tile = tile[::-1]
    if flip & 2:
        tile = tile[:, ::-1]
    tile = np.roll(tile, (oy, ox), axis=(0, 1))
    h, w = shape
    if h <= _NOISE_TILE and w <= _NOISE_TILE:
        return tile[:h, :w].copy()
    return np.pad(tile, ((0, max(h - _NOISE_TILE, 0)), (0, max(w - _NOISE_TILE, 0))),
                  mode="wrap")[:h, :w]


@functools.lru_cache(maxsize=2)
def _shared_scene(product_id: str) -> _Scene:
    return _make_scene(PRODUCTS[product_id])


def generate_band(product_id: str, item_id: str, band: str, window: Any = None) -> np.ndarray:
    """Regenerate the data of one asset (or a window of it) without writing files.

    ``window`` may be a :class:`rasterio.windows.Window`, a pair of slices
    ``(rows, cols)`` or ``None`` for the whole band.  The result is identical,
    byte for byte, to what :func:`write_demo_catalog` writes into
    ``<product_id>/<item_id>/<band>.tif``.  The date's state is simulated in
    full (about a second) and then cut; the product's static landscape is kept
    in memory for the last two products asked for.
    """
    p = _product(product_id)
    cache = _Cache()
    cache.put_scene(p, _shared_scene(p.id))
    arr = _band_array(p, p.item(item_id), band, cache)
    if window is None:
        return arr
    if hasattr(window, "toslices"):
        rows, cols = window.toslices()
    else:
        rows, cols = window
    return arr[rows, cols].copy()
