"""The Nix side of a record, shared by the uploader and the gateway.

A store path (or a build log) lives in the network as a payload (chunks,
shards) plus a signed record whose metadata is Nix text.  What both
``uploader`` and ``cache_server`` need to know about that lives here, one
module per job:

``narinfo_record``  narinfo to record and back, the record key of a store
                    path, the NAR URL, the stored form of a narinfo
``build_logs``      the key and metadata of a build log's record
``publishing``      store the payload, check it, publish the record (the commit point)
``signing_key``     the publisher's Nix secret key from a file or the environment,
                    and the check that the network file lists it
``cache_secret``    a private cache's keyring from a file or the environment
``errors``          the exception tree (:class:`NixRecordsError` at its root)

It imports :mod:`nix_formats` and the public surface of
:mod:`storage_network`, never ``uploader`` or ``cache_server``.  The names
below are its public surface.
"""

from nix_records.build_logs import (
    LOG_MAGIC,
    is_build_log,
    log_metadata,
    log_record_key,
)
from nix_records.cache_secret import CACHE_SECRET_ENV, load_keyring
from nix_records.errors import (
    CacheSecretConfigError,
    NixRecordsError,
    RecordContentError,
    SecretError,
    SigningKeyError,
    UnlistedPublisherError,
)
from nix_records.narinfo_record import (
    STORED_COMPRESSION,
    nar_url,
    narinfo_from_record,
    narinfo_record,
    new_narinfo,
    record_key,
    stored_narinfo,
)
from nix_records.pins import (
    PIN_MAGIC,
    Pin,
    PinChange,
    PinError,
    check_pin_name,
    is_pin,
    pin_from_record,
    pin_paths,
    pin_record_key,
    read_pin,
    unpin,
)
from nix_records.publishing import (
    RecordContent,
    StoredPayload,
    publish,
    store,
    store_then_publish,
)
from nix_records.realisation_record import (
    REALISATION_MAGIC,
    is_realisation,
    realisation_from_record,
    realisation_record,
    realisation_record_key,
)
from nix_records.retention import PathLinks, record_links
from nix_records.signing_key import (
    SIGNING_KEY_ENV,
    PublishingKey,
    check_publisher,
    load_signing_key,
    read_secret,
)

__all__ = [
    "CACHE_SECRET_ENV",
    "LOG_MAGIC",
    "PIN_MAGIC",
    "REALISATION_MAGIC",
    "SIGNING_KEY_ENV",
    "STORED_COMPRESSION",
    "CacheSecretConfigError",
    "NixRecordsError",
    "PathLinks",
    "Pin",
    "PinChange",
    "PinError",
    "PublishingKey",
    "RecordContent",
    "RecordContentError",
    "SecretError",
    "SigningKeyError",
    "StoredPayload",
    "UnlistedPublisherError",
    "check_pin_name",
    "check_publisher",
    "is_build_log",
    "is_pin",
    "is_realisation",
    "load_keyring",
    "load_signing_key",
    "log_metadata",
    "log_record_key",
    "nar_url",
    "narinfo_from_record",
    "narinfo_record",
    "new_narinfo",
    "pin_from_record",
    "pin_paths",
    "pin_record_key",
    "publish",
    "read_pin",
    "read_secret",
    "realisation_from_record",
    "realisation_record",
    "realisation_record_key",
    "record_key",
    "record_links",
    "store",
    "store_then_publish",
    "stored_narinfo",
    "unpin",
]
