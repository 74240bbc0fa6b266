"""The STAC API deployment of the tests: the demo collections and the 10 000-item
CONTINENT collection in pgSTAC, served by stac-fastapi-pgstac, with their COGs served over
HTTP (Range requests) by :class:`tests.support.http_server.RangeServer`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pystac

from tests.support import continent
from tests.support.http_server import RangeServer, range_server
from tests.support.pg import PostgresCluster, StacApi, load, migrate


@dataclass
class Deployment:
    """What the tests use."""

    url: str  # the STAC API root
    dsn: str  # the pgSTAC database
    files: RangeServer
    cluster: PostgresCluster
    demo_dir: Path
    continent_dir: Path


def demo_records(catalog_json: Path, base_url: str) -> tuple[list[dict], list[dict]]:
    """Collections and items of the demo catalog with their assets behind ``base_url``."""
    root = catalog_json.parent.resolve()
    cat = pystac.Catalog.from_file(str(catalog_json))
    collections, items = [], []
    for col in cat.get_all_collections():
        data = col.to_dict(include_self_link=False, transform_hrefs=False)
        data["links"] = []
        collections.append(data)
        for item in col.get_items():
            item.make_asset_hrefs_absolute()
            d = item.to_dict(include_self_link=False, transform_hrefs=False)
            for asset in d["assets"].values():
                rel = Path(asset["href"]).resolve().relative_to(root)
                asset["href"] = f"{base_url}/demo/{rel.as_posix()}"
            d["links"] = []
            d["collection"] = col.id
            items.append(d)
    return collections, items


@contextlib.contextmanager
def deployment(cluster: PostgresCluster, demo_catalog: Path, workdir: Path, extra=None):
    """pgSTAC loaded with the demo and CONTINENT collections (plus ``extra(base_url)`` ->
    ``(collections, items)``), its API and the file server, for the ``with`` block."""
    cont = continent.write_files(workdir / "continent")
    mounts = {"demo": demo_catalog.parent, "continent": cont, "extra": workdir / "extra"}
    (workdir / "extra").mkdir(exist_ok=True)
    with range_server(mounts) as files:
        dsn = cluster.create_db("pgstac")
        migrate(dsn)
        cols, items = demo_records(demo_catalog, files.url)
        cols.append(continent.collection())
        more_cols, more_items = extra(files.url, workdir / "extra") if extra else ([], [])
        load(dsn, cols + more_cols, [*items, *more_items,
                                     *continent.items(files.url + "/continent")])
        api = StacApi(cluster, "pgstac", workdir)
        try:
            yield Deployment(api.url, dsn, files, cluster, demo_catalog.parent, cont)
        finally:
            api.stop()
