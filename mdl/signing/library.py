"""The one place mdl talks to ``model_signing`` (OpenSSF model signing, the ``mdl[sign]`` extra),
imported only when a signature is asked for.

model_signing's public API verifies a signature only together with hashing the model folder again.
mdl has hashed every byte once already, while downloading (or packing): it hands
``verifying.Config`` a hashing configuration that reads nothing and returns a manifest that keeps
whatever it is compared with. The library does all of its own work (the bundle, the key, certificate
chain or sigstore checks, the DSSE envelope, the in-toto statement, the root digest) and then
compares its verified manifest with ours: that is how the verified manifest reaches mdl, which then
holds each file to it with the digest it already has. Signing is the same in reverse: the library
signs the manifest of digests mdl computed."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, get_type_hints

from mdl.background import Background
from mdl.errors import IntegrityError, MdlError, NetworkError, OutsideJSONError, UsageError
from mdl.outsidejson import read_json
from mdl.paths import read_small_file, shown_path
from mdl.redact import printable
from mdl.signing.statement import (
    GIT_PATHS,
    MAX_KEY_BYTES,
    SIGNATURE_FILE,
    SignedManifest,
    Trust,
    manifest_from_items,
)

if TYPE_CHECKING:
    from model_signing import hashing, manifest, verifying

EXTRA_HINT = "pip install 'mdl[sign]'"
# a statement for ~400,000 files; anything bigger is not a model's signature
MAX_SIGNATURE_BYTES = 64 << 20


class _ImportAhead:
    """model_signing (≈0.4 CPU-s of sigstore, TUF, protobuf, …) imported on a thread while the
    signature downloads: the time is hidden on a real network, though not the CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._import: Background | None = None

    def start(self) -> None:
        with self._lock:
            if self._import is not None or "model_signing" in sys.modules:
                return
            # a daemon: Ctrl-C (or any exit) never waits for an import nobody needs any more
            self._import = Background("mdl-import-model_signing", self._run).start()

    @staticmethod
    def _run(stop: threading.Event) -> None:
        # Whatever the import raises is not this thread's to report (a thread's traceback would
        # print): the caller imports again on its own thread and gets the same error as without.
        with contextlib.suppress(BaseException):
            importlib.import_module("model_signing")

    def join(self) -> None:
        """Wait for a started import, with a bound (a signal interrupts the wait: Ctrl-C is not
        held up); past it, the caller's own import waits on the module's import lock."""
        with self._lock:
            started = self._import
        if started is not None:
            started.stop()


_ahead = _ImportAhead()


def import_ahead() -> None:
    """Start importing model_signing on a thread, once per process, when a signature is about to be
    verified: ``verify_signature`` then waits for it instead of importing it itself. Call it only
    when a verification is likely: a run that verifies nothing should not pay the import."""
    _ahead.start()


def _library() -> Any:
    _ahead.join()  # a started import finishes (or fails) before this one looks at it
    try:
        import model_signing
    except ImportError:
        raise UsageError(
            f"signed models need model_signing, which is not installed: {EXTRA_HINT}",
            hint=EXTRA_HINT,
        ) from None
    return model_signing


def require_library() -> None:
    """UsageError (exit 2) naming the extra when model_signing is not installed (found, not
    imported: a verified signature kept from an earlier run needs no import)."""
    # a parent that is not a package, or a module blocked
    with contextlib.suppress(ImportError, ValueError):
        if importlib.util.find_spec("model_signing") is not None:
            return
    _library()  # raises the one error that names the extra
    raise UsageError(f"signed models need model_signing: {EXTRA_HINT}", hint=EXTRA_HINT)


def _quiet() -> contextlib.AbstractContextManager[object]:
    """model_signing prints warnings on stdout, which is mdl's data: they go nowhere (our own
    messages say it).
    """
    return contextlib.redirect_stdout(io.StringIO())


def verify_signature(data: bytes, trust: Trust, *, what: str) -> SignedManifest:
    """The statement ``data`` (a model.sig bundle) signs, verified against ``trust``; IntegrityError
    (exit 6) naming ``what`` when it is not a signature, not a valid one, or not one by whom
    ``trust`` names. A key's signature is verified with `cryptography` alone when it verifies
    (mdl.signing.keyed); anything else, a bad signature included, by model_signing, as ever."""
    if len(data) <= MAX_SIGNATURE_BYTES:
        from mdl.signing.keyed import key_verified

        if (keyed := key_verified(data, trust)) is not None:
            return keyed
    _library()
    if len(data) > MAX_SIGNATURE_BYTES:
        raise IntegrityError(f"{what}: {len(data)} bytes is too big for a model signature")
    try:  # the library parses it too: only JSON the one reader takes reaches it
        read_json(data, source="its bundle", limit=MAX_SIGNATURE_BYTES)
    except OutsideJSONError as exc:
        raise IntegrityError(f"{what}: the signature does not verify: {exc.message}") from None
    with tempfile.TemporaryDirectory(prefix="mdl-sig-") as folder:
        return _verified(data, trust, Path(folder), what=what)


def _verified(data: bytes, trust: Trust, folder: Path, *, what: str) -> SignedManifest:
    """verify_signature in ``folder``, where the library reads the signature and the trust's key or
    certificates: copies of the bytes the trust read once (a small regular file each), never the
    user's paths again."""
    from model_signing import manifest

    config = _verifier(trust, _trusted_copies(trust, folder, what=what), what=what)
    found: list[Any] = []
    config.set_hashing_config(_keeping_hashing(found))
    signature = Path(folder, SIGNATURE_FILE)
    signature.write_bytes(data)
    try:
        with _quiet():
            config.verify(Path(folder, "model"), signature)
    # whatever a malformed bundle raises: a bad signature, no traceback
    except Exception as exc:  # noqa: BLE001
        raise IntegrityError(f"{what}: the signature does not verify: {_said(exc)}") from None
    if len(found) != 1 or not isinstance(found[0], manifest.Manifest):
        raise IntegrityError(
            f"{what}: the signature does not verify: model_signing returned no statement"
        )
    return _statement(found[0], what=what)


def _trusted_copies(trust: Trust, folder: Path, *, what: str) -> list[Path]:
    """The trust's key or certificates, as read once, written into ``folder`` for the library."""
    try:
        trusted = [Path(folder, f"trusted-{n}.pem") for n in range(len(trust.material))]
    except OSError as exc:
        named = shown_path(exc.filename) if exc.filename else trust.kind
        raise UsageError(
            f"{what}: cannot read the trusted {named}: {exc.strerror or exc}"
        ) from None
    for path, material in zip(trusted, trust.material, strict=True):
        path.write_bytes(material)
    return trusted


def _verifier(trust: Trust, trusted: list[Path], *, what: str) -> verifying.Config:
    """model_signing's verifying configuration for ``trust`` (a key, a certificate chain or a
    sigstore identity); exit 2 when the library cannot use it, 4 when sigstore's root is out of
    reach."""
    from model_signing import verifying

    config = verifying.Config()  # type: ignore[no-untyped-call]
    try:
        if trust.key is not None:
            config.use_elliptic_key_verifier(public_key=trusted[0])
        elif trust.certificates:
            config.use_certificate_verifier(certificate_chain=trusted)
        else:
            assert trust.identity is not None and trust.issuer is not None
            config.use_sigstore_verifier(identity=trust.identity, oidc_issuer=trust.issuer)
    except OSError as exc:
        raise UsageError(
            f"{what}: cannot read the trusted key or certificates: {exc.strerror or exc}"
        ) from None
    # the library's own words for a key or certificate it cannot use
    except Exception as exc:  # noqa: BLE001
        raise _unusable(exc, trust, what=what) from None
    return config


def _unusable(exc: Exception, trust: Trust, *, what: str) -> MdlError:
    """The error for a trust the library refused: keyless (sigstore) verification refreshes its
    trust root from the network (TUF), so that failing is a network error."""
    from sigstore.errors import TUFError  # installed with model_signing

    if isinstance(exc, TUFError):
        return NetworkError(
            f"{what}: keyless (sigstore) verification needs sigstore's trust root from the"
            f" network: {_said(exc)}",
            hint="a signature made with a key or a certificate chain is verified offline",
        )
    return UsageError(f"{what}: the trusted {trust.kind} cannot be used: {_said(exc)}")


def _keeping_hashing(found: list[Any]) -> hashing.Config:
    """A hashing configuration that reads nothing (mdl hashed every byte already) and returns a
    manifest equal to whatever it is compared with, which it keeps in ``found``."""
    from model_signing import hashing, manifest

    kind = manifest.SerializationType.from_args(
        {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    )

    class Keeper(manifest.Manifest):  # equal to what it is compared with, which it keeps
        def __eq__(self, other: object) -> bool:
            found.append(other)
            return True

        __hash__ = None  # type: ignore[assignment]

    class NoHashing(hashing.Config):  # mdl hashed every byte already
        def hash(self, model_path: Any, *, files_to_hash: Any = None) -> Any:
            return Keeper("", [], kind)

    return NoHashing()  # type: ignore[no-untyped-call]


def _statement(signed: manifest.Manifest, *, what: str) -> SignedManifest:
    """Our view of the manifest the library verified; IntegrityError naming ``what`` when it is
    not one mdl can hold files to."""
    try:
        args = signed.serialization_type
        items = [
            (str(d.identifier), str(d.digest.algorithm), bytes(d.digest.digest_value))
            for d in signed.resource_descriptors()
        ]
        return manifest_from_items(
            items,
            method=str(args["method"]),
            algorithm=str(args["hash_type"]),
            shard_size=args.get("shard_size"),
            ignore_paths=tuple(str(p) for p in args.get("ignore_paths", ())),
            model_name=str(signed.model_name),
        )
    except IntegrityError as exc:
        raise IntegrityError(f"{what}: {exc.message}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what}: the signed statement is malformed: {_said(exc)}") from None


def sign_digests(
    digests: Mapping[str, str],
    *,
    private_key: Path,
    model_name: str,
    ignore_paths: Sequence[str] = (),
) -> bytes:
    """A model.sig (the format model_signing's ``sign key`` writes) over ``digests`` (path -> sha256
    hex, computed by the caller), signed with the EC private key at ``private_key``; UsageError
    (exit 2) naming the key if unusable. ``ignore_paths`` (relative to the model folder) are left
    out by the signer, as ``sign key --ignore-paths``."""
    _library()
    from model_signing import hashing, manifest, signing

    # The digest type the public manifest item asks for (it has no public name of its own): no
    # private import.
    digest = get_type_hints(manifest.FileManifestItem.__init__)["digest"]

    ignored = [SIGNATURE_FILE, *ignore_paths, *GIT_PATHS]
    kind = manifest.SerializationType.from_args(
        {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": ignored}
    )
    items = [
        manifest.FileManifestItem(
            path=PurePosixPath(path), digest=digest("sha256", bytes.fromhex(sha256))
        )
        for path, sha256 in sorted(digests.items())
    ]
    made = manifest.Manifest(model_name, items, kind)

    class Precomputed(hashing.Config):  # the digests mdl computed: nothing is read again
        def hash(self, model_path: Any, *, files_to_hash: Any = None) -> Any:
            return made

    try:
        # a regular file, small: the library reads it whole, blocking
        read_small_file(private_key, limit=MAX_KEY_BYTES)
        signer = signing.Config()  # type: ignore[no-untyped-call]
        config = signer.use_elliptic_key_signer(private_key=private_key)
    except OSError as exc:
        raise UsageError(
            f"signing key {private_key}: cannot read it: {exc.strerror or exc}"
        ) from None
    # the library's own words for a key it cannot use
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"signing key {private_key}: not a usable EC private key (PEM): {_said(exc)}"
        ) from None
    config.set_hashing_config(Precomputed())  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory(prefix="mdl-sign-") as folder:
        out = Path(folder, SIGNATURE_FILE)
        with _quiet():
            config.sign(Path(folder, model_name), out)
        return read_small_file(out, limit=MAX_SIGNATURE_BYTES)


def _said(exc: BaseException) -> str:
    """The library's message on one line, bounded (it may quote a whole bundle)."""
    # a bundle without a field it needs (the key is the bundle's text: made printable)
    if isinstance(exc, KeyError):
        return (
            f"it has no {printable(repr(exc.args[0]), limit=80)}"
            if exc.args
            else "a field is missing"
        )
    # it quotes the bundle's text
    return printable(" ".join(str(exc).split()) or type(exc).__name__, limit=300)


def public_key_of(private_key: Path) -> bytes:
    """The PEM public key of an EC private key (UsageError naming the file when it cannot be read
    as one).
    """
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(
            read_small_file(private_key, limit=MAX_KEY_BYTES), password=None
        )
    except (OSError, ValueError, TypeError) as exc:
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"signing key {private_key}: cannot read it: {said}") from None
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
