"""One exception tree for the whole library.

    DockyardError                 exit 1
     +-- InvalidReference         "invalid reference format..."
     +-- NotFound                 "No such image: x"
     |    +-- ImageNotFound
     |    +-- ContainerNotFound
     |    +-- ObjectNotFound
     +-- Conflict                 "conflict: unable to delete ..."
     +-- InvalidArgument          bad flags, bad -c changes, bad filters
     +-- ArchiveError             a tar or archive that cannot be read safely
     |    +-- DigestMismatch      content whose digest or size is not what was promised
     +-- StoreCorrupt             the store itself is inconsistent

Each class carries the exit status the CLI uses, and later the distribution-spec
code and HTTP status that the registry and engine render.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""

    exit_code = 1
    http_status = 500
    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidReference(DockyardError):
    http_status = 400
    code = "NAME_INVALID"


class InvalidArgument(DockyardError):
    http_status = 400
    code = "INVALID_ARGUMENT"


class NotFound(DockyardError):
    http_status = 404
    code = "NOT_FOUND"


class ImageNotFound(NotFound):
    code = "MANIFEST_UNKNOWN"

    def __init__(self, name: str) -> None:
        super().__init__(f"No such image: {name}")
        self.name = name


class ContainerNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such container: {name}")
        self.name = name


class ObjectNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such object: {name}")
        self.name = name


class BlobNotFound(NotFound):
    code = "BLOB_UNKNOWN"


class Conflict(DockyardError):
    http_status = 409
    code = "CONFLICT"


class ArchiveError(DockyardError):
    """An archive or layer that cannot be read safely."""

    http_status = 400
    code = "INVALID_ARCHIVE"


class DigestMismatch(ArchiveError):
    code = "DIGEST_INVALID"


class StoreCorrupt(DockyardError):
    code = "STORE_CORRUPT"
