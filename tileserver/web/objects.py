"""Objects of the store (:mod:`tileserver.storage`) as HTTP answers: a file of the server's
disk through Flask's ``send_file`` (conditional, ranges), an object of an object store
streamed through the server with the same answers (``Accept-Ranges``, 206 for a ``Range``,
``ETag``, ``Last-Modified``) when clients cannot reach the store themselves."""

from __future__ import annotations

from flask import Response, request, send_file
from werkzeug.datastructures import ContentRange
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from tileserver.errors import FileNotFound
from tileserver.storage import Store

#: Bytes of one chunk streamed from the store.
CHUNK = 1024 * 1024


def send_object(store: Store, key: str, *, mimetype: str, download_name: str,
                as_attachment: bool = False, max_age: int = 0) -> Response:
    """The object ``key`` of ``store`` (404 :class:`FileNotFound` when missing)."""
    local = store.local_path(key)
    if local is not None:
        if not local.is_file():
            raise FileNotFound(f"no file {download_name!r}")
        return send_file(local, mimetype=mimetype, conditional=True, max_age=max_age,
                         download_name=download_name, as_attachment=as_attachment)
    info = store.info(key)
    if info is None:
        raise FileNotFound(f"no file {download_name!r}")
    etag = info.version or f"{info.size}-{info.modified.timestamp()}"
    if request.if_none_match and request.if_none_match.contains(etag):
        resp = Response(status=304)
        resp.set_etag(etag)
        return resp
    start, end, status = 0, info.size - 1, 200
    ranges = request.range
    if_range = request.headers.get("If-Range")
    if ranges is not None and (not if_range or if_range.strip('"') == etag):
        bounds = ranges.range_for_length(info.size)
        if bounds is None:
            raise RequestedRangeNotSatisfiable(length=info.size)
        start, end, status = bounds[0], bounds[1] - 1, 206
    body = store.open(key, start, end) if info.size else None

    def chunks():
        if body is None:
            return
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    resp = Response(chunks(), status=status, mimetype=mimetype, direct_passthrough=True)
    resp.content_length = end - start + 1 if info.size else 0
    if status == 206:
        resp.content_range = ContentRange("bytes", start, end + 1, info.size)
    resp.accept_ranges = "bytes"
    resp.set_etag(etag)
    resp.last_modified = info.modified
    resp.cache_control.max_age = max_age
    resp.cache_control.public = max_age > 0
    disposition = "attachment" if as_attachment else "inline"
    resp.headers["Content-Disposition"] = f'{disposition}; filename="{download_name}"'
    return resp
