"""One exception hierarchy for the whole server.

Each class carries what the protocols need: the HTTP status, the openEO/REST error code and
the OGC exception code. ``tileserver.web.errors`` maps them to responses in one place.
"""

from __future__ import annotations


class TileserverError(Exception):
    """Base class of every error a client can cause or see."""

    status = 400
    code = "BadRequest"
    ogc_code = "InvalidParameterValue"

    def __init__(self, message: str, *, locator: str | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.locator = locator
        self.path = path

    def to_json(self) -> dict:
        """The openEO JSON error body."""
        body: dict = {"code": self.code, "message": self.message}
        if self.path:
            body["path"] = self.path
        if self.locator:
            body["locator"] = self.locator
        return body


class ProcessGraphError(TileserverError):
    """A process graph that does not parse or validate."""

    code = "ProcessGraphInvalid"


class UnknownProcess(ProcessGraphError):
    """A ``process_id`` that is not registered."""

    code = "ProcessUnsupported"


class ProductNotFound(ProcessGraphError):
    """A ``product_id`` the catalog does not have."""

    code = "ProductNotFound"


class BandNotFound(ProcessGraphError):
    """A band id the product does not have."""

    code = "BandNotFound"


class OutputFormatError(TileserverError):
    """An unknown output format or an impossible format option."""

    code = "FormatUnsupported"


class NotFound(TileserverError):
    """A resource that does not exist (or that the caller may not see)."""

    status = 404
    code = "NotFound"
    ogc_code = "NotFound"


class JobNotFound(NotFound):
    """No such job."""

    code = "JobNotFound"


class ServiceNotFound(NotFound):
    """No such service."""

    code = "ServiceNotFound"


class ProcessGraphNotFound(NotFound):
    """No such user-defined process (openEO 1.x ``/process_graphs``)."""

    code = "ProcessGraphNotFound"


class FileNotFound(NotFound):
    """No such user file."""

    code = "FileNotFound"


class WorkspaceNotFound(NotFound):
    """A workspace id the user does not have (openEO Workspaces extension)."""

    code = "WorkspaceNotFound"


class WorkspaceUnsupported(TileserverError):
    """A workspace this server cannot create or change: an unknown provider, the
    ``register`` intent (external storage), or the built-in ``files`` workspace."""

    code = "WorkspaceUnsupported"


class WorkspaceLimitReached(TileserverError):
    """A user who already has ``workspaces_per_user`` workspaces asks for one more."""

    code = "WorkspaceLimitReached"


class ExportNeedsBatchJob(ProcessGraphError):
    """``export_workspace`` in a synchronous request: it exports a batch job's results."""

    code = "ExportNeedsBatchJob"


class Conflict(TileserverError):
    """A request that does not fit the current state (e.g. an invalid job transition)."""

    status = 409
    code = "Conflict"


class JobLocked(Conflict):
    """A change to a job while it is queued or running."""


class JobNotFinished(Conflict):
    """Results asked for before the job finished."""


class Unauthorized(TileserverError):
    """Missing or wrong credentials."""

    status = 401
    code = "AuthenticationRequired"
    ogc_code = "NotAuthorized"


class InvalidCredentials(Unauthorized):
    """A token that was sent but is wrong or expired."""


class WrongPassword(InvalidCredentials):
    """HTTP Basic credentials that were sent but are wrong."""


class TokenInvalid(InvalidCredentials):
    """An OpenID Connect access token that is forged, expired, for another audience or of an
    unknown provider (openEO 1.x ``403 TokenInvalid``, like every wrong token)."""


class IdentityProviderUnavailable(TileserverError):
    """An OpenID Connect provider whose discovery document or keys cannot be fetched, so a
    token cannot be checked now (not the client's fault: 503)."""

    status = 503
    code = "ServiceUnavailable"
    ogc_code = "NoApplicableCode"


class LimitExceeded(TileserverError):
    """A request larger than a configured limit."""

    status = 413
    code = "PayloadTooLarge"
    ogc_code = "InvalidParameterValue"


class MemoryTooLarge(LimitExceeded):
    """An evaluation whose memory estimate exceeds the whole memory budget (the message
    says what to shrink)."""


class TooManyRequests(TileserverError):
    """Too many evaluations in flight (a ``retry_after`` in seconds goes with it)."""

    status = 503
    code = "ServiceUnavailable"
    ogc_code = "NoApplicableCode"


class MemoryBusy(TooManyRequests):
    """An evaluation that fits the memory budget, but not beside the evaluations in flight
    (429 with ``Retry-After``)."""

    status = 429
    code = "TooManyRequests"


class UserBusy(MemoryBusy):
    """A user with as many evaluations in flight as one user may have (429)."""


class EvaluationTimeout(TileserverError):
    """An evaluation that took longer than allowed."""

    status = 504
    code = "Timeout"
    ogc_code = "NoApplicableCode"


class UpstreamError(TileserverError):
    """A remote source (STAC API, file server, object store) that failed; the message
    names its host, never its credentials or signed query string."""

    status = 502
    code = "UpstreamError"
    ogc_code = "NoApplicableCode"


class UpstreamTimeout(UpstreamError):
    """A remote source that did not answer in time."""

    status = 504
    code = "UpstreamTimeout"


class StoreUnavailable(UpstreamError):
    """The object store that keeps batch results and user files (``storage_url``) cannot
    be reached or refused a request: the message names the store, never its credentials."""

    status = 503
    code = "StoreUnavailable"


# --- OGC-specific codes --------------------------------------------------------------


class OGCError(TileserverError):
    """An error with a standard OGC exception code."""

    code = "OGCError"


class MissingParameterValue(OGCError):
    """A mandatory parameter is missing."""

    ogc_code = code = "MissingParameterValue"


class InvalidParameterValue(OGCError):
    """A parameter has an invalid value."""

    ogc_code = code = "InvalidParameterValue"


class OperationNotSupported(OGCError):
    """An unknown REQUEST."""

    status = 501
    ogc_code = code = "OperationNotSupported"


class VersionNegotiationFailed(OGCError):
    """No common version."""

    ogc_code = code = "VersionNegotiationFailed"


class TileOutOfRange(OGCError):
    """A tile row/col outside the tile matrix."""

    ogc_code = code = "TileOutOfRange"


class NoSuchCoverage(OGCError):
    """An unknown coverage id."""

    status = 404
    ogc_code = code = "NoSuchCoverage"


class InvalidAxisLabel(OGCError):
    """A subset on an axis the coverage does not have."""

    status = 404
    ogc_code = code = "InvalidAxisLabel"


class InvalidSubsetting(OGCError):
    """A subset outside the coverage or with low > high."""

    status = 404
    ogc_code = code = "InvalidSubsetting"


class InvalidScaleFactor(OGCError):
    """A scale factor that is not positive."""

    status = 404
    ogc_code = code = "InvalidScaleFactor"


class InvalidExtent(OGCError):
    """A scale size or extent that is not possible."""

    status = 404
    ogc_code = code = "InvalidExtent"


class NoSuchField(OGCError):
    """A RANGESUBSET field the coverage does not have (WCS range subsetting)."""

    status = 404
    ogc_code = code = "NoSuchField"


class SubsettingCrsNotSupported(OGCError):
    """A SUBSETTINGCRS the server cannot use (WCS CRS extension)."""

    ogc_code = code = "SubsettingCrs-NotSupported"


class OutputCrsNotSupported(OGCError):
    """An OUTPUTCRS the server cannot produce (WCS CRS extension)."""

    ogc_code = code = "OutputCrs-NotSupported"


# --- openEO 1.x process graph codes (errors.json of the openEO API) -------------------


class ProcessArgumentRequired(ProcessGraphError):
    """A required argument of a process is missing."""

    code = "ProcessArgumentRequired"


class ProcessArgumentUnsupported(ProcessGraphError):
    """An argument the process does not have."""

    code = "ProcessArgumentUnsupported"


class ProcessArgumentInvalid(ProcessGraphError):
    """An argument a 1.x process cannot work with (openEO ``ProcessArgumentInvalid``).

    ``code`` may be one of the exceptions a process specification names (e.g.
    ``ArrayElementNotAvailable``); ``process`` and ``argument`` say where.
    """

    code = "ProcessArgumentInvalid"

    def __init__(self, message: str, *, process: str | None = None,
                 argument: str | None = None, code: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.process = process
        self.argument = argument
        if code is not None:
            self.code = code


class ProcessParameterMissing(ProcessGraphError):
    """A ``from_parameter`` reference to a parameter that nobody defines."""

    code = "ProcessParameterMissing"


class ProcessNamespaceInvalid(ProcessGraphError):
    """A ``namespace`` that names a remote process definition (openEO Remote Process
    Definition extension) that cannot be used: not an http(s) URL, a host the server may
    not fetch from, an answer too big, too slow, not JSON or without the process."""

    code = "ProcessNamespaceInvalid"

    def __init__(self, namespace: str, process: str, reason: str, **kwargs):
        super().__init__(f"The value passed for namespace '{namespace[:300]}' in process "
                         f"'{process[:64]}' is invalid: {reason}", **kwargs)
        self.namespace = namespace
        self.process = process
        self.reason = reason


class BillingPlanInvalid(TileserverError):
    """A ``plan`` that is not one of the billing plans of ``GET /`` (openEO 1.x)."""

    code = "BillingPlanInvalid"


class CollectionNotFound(ProductNotFound):
    """A collection id (1.x) the catalog does not have."""

    code = "CollectionNotFound"


class ProcessGraphMissing(TileserverError):
    """A request without the process (graph) it needs (openEO 1.x)."""

    code = "ProcessGraphMissing"


# --- user-defined functions (UDF) ------------------------------------------------------


class UdfError(TileserverError):
    """A user's UDF script failed (syntax error, exception, wrong result); the message
    names the script and quotes its line."""

    code = "UdfScriptError"


class UdfTimeout(EvaluationTimeout):
    """A UDF ran longer than ``udf_timeout``."""

    code = "UdfTimeout"


class UdfLimitExceeded(LimitExceeded):
    """A UDF used more memory or produced more output than allowed."""

    code = "UdfLimitExceeded"


class Forbidden(TileserverError):
    """An authenticated user who may not do this."""

    status = 403
    code = "PermissionDenied"
    ogc_code = "NotAuthorized"


class UdfUnavailable(TooManyRequests):
    """No UDF worker could be had (all busy past the wait, or the sandbox cannot start)."""

    code = "UdfUnavailable"


# --- WMS 1.3.0 / 1.1.1 exception codes ---------------------------------------------


class InvalidCRS(OGCError):
    """A CRS (1.3.0) or SRS (1.1.1: ``InvalidSRS``) the layer is not offered in."""

    ogc_code = code = "InvalidCRS"


class LayerNotDefined(OGCError):
    """A layer that the WMS does not offer."""

    ogc_code = code = "LayerNotDefined"


class StyleNotDefined(OGCError):
    """A style that the layer does not have."""

    ogc_code = code = "StyleNotDefined"


class InvalidFormat(OGCError):
    """A map, legend or feature-info format the WMS does not produce."""

    ogc_code = code = "InvalidFormat"


class InvalidDimensionValue(OGCError):
    """A ``TIME`` that is malformed or selects none of the layer's dates."""

    ogc_code = code = "InvalidDimensionValue"


class MissingDimensionValue(OGCError):
    """No ``TIME`` given and the layer has no default date."""

    ogc_code = code = "MissingDimensionValue"


class InvalidPoint(OGCError):
    """A GetFeatureInfo ``I``/``J`` (``X``/``Y``) outside the map."""

    ogc_code = code = "InvalidPoint"


class LayerNotQueryable(OGCError):
    """A GetFeatureInfo on a layer that is not queryable."""

    ogc_code = code = "LayerNotQueryable"
