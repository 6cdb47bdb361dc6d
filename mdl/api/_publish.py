"""``publish``: each model's verified local files, by content, and its version's manifest, uploaded
to an S3 prefix or a shared folder;
``prune --mirror``: such a mirror pruned of what the catalog no longer names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.api._context import catalog_models
from mdl.api._inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress
from mdl.setting import Overrides, StrPath

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog
    from mdl.redact import Secrets
    from mdl.upload.mirrorprune import MirrorPruneReport
    from mdl.upload.publisher import PublishReport


@checked
def publish(
    *names: str,
    to: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    connections: int | None = None,
    endpoint: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    lock_file: StrPath | None = None,
    sign: StrPath | None = None,
    force: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> PublishReport:
    """Upload each model's verified local files, each once by its content
    (``<prefix>/<model>/<sha256>``), and per complete model its version's manifest, to ``to``
    (``s3://bucket/prefix``, ``file:///abs/path``, or the nodes' template
    ``<prefix>/{model}/{sha256}``), or to a registry as a ModelPack artifact per model
    (``oci://REGISTRY/REPOSITORY[:TAG]``, ``{model}`` in it for several); with ``sign`` (an EC
    private key, PEM) a model.sig the manifest names. ``dry_run``: what would go up, nothing
    sent."""
    from mdl.lockfile.policy import LockUse
    from mdl.report import warned
    from mdl.upload.publisher import publish_models

    registry = to.startswith("oci://")
    target = to if registry else _target(to, endpoint)
    if registry and endpoint is not None:
        raise UsageError("--endpoint-url: not for a registry (--to oci://…)")
    if force and sign is None:
        raise UsageError(
            "publish: --force only lets --sign replace a model's own model.sig; give --sign KEY.pem"
        )
    flags = Overrides(
        dest=dest,
        layout=layout,
        connections=connections,
        locked=locked,
        frozen=frozen,
        lock_file=lock_file,
    )
    settings, models, lock = catalog_models(
        catalog, environ, names, flags, all_models=all, secrets=secrets
    )
    # what is published is what is installed here as its pull verified it (the records), signed
    # or not: on the release machine the lock names the version deployed, the one before the
    # release being published (docs/releases.md: pull --unsigned, publish, then lock --upgrade)
    by_records = settings.lock_mode == "auto"
    pins, warnings, pinned = LockUse(settings, lock=lock).view([] if by_records else models)
    if registry:
        from mdl.upload.ocipublish import check_target, publish_to_registry

        check_target(to, [model.name for model in models])
        report = publish_to_registry(
            models,
            settings,
            to,
            progress=progress or NullProgress(),
            pins=pins,
            locked=pinned,
            dry_run=dry_run,
            sign=None if sign is None else Path(sign),
            force=force,
        )
        return warned(report, warnings)
    report = publish_models(
        models,
        settings,
        target,
        progress=progress or NullProgress(),
        pins=pins,
        locked=pinned,
        endpoint=endpoint,
        sign=None if sign is None else Path(sign),
        force=force,
        dry_run=dry_run,
    )
    return warned(report, warnings)


def _target(to: str, endpoint: str | None) -> str:
    """Where ``publish --to`` writes: the prefix ``to`` names (itself, or the nodes' template of
    the published layout), checked with ``endpoint``; UsageError (exit 2) naming the flag."""
    from mdl.buckets import versions
    from mdl.buckets.registry import store_for, store_schemes
    from mdl.buckets.s3 import parse_s3_prefix
    from mdl.paths import is_http_url

    if (store := store_for(to)) is None:
        raise UsageError(f"--to: expected {store_schemes()}, got {to!r}")
    place = versions.prefix_of(to) or to  # the nodes' template names the place it reads
    target = parse_s3_prefix(place).uri() if store.scheme == "s3" else place.removesuffix("/")
    if "{" in target or "}" in target:
        raise UsageError(
            f"--to: {to!r} is a template of another layout; publish writes"
            f" {versions.template_of('PREFIX')}: give PREFIX, or that template"
        )
    store.check_template(versions.template_of(target), where="--to")
    if endpoint is not None and not store.takes_endpoint:
        raise UsageError(f"--endpoint-url: a {store.scheme}:// target has no endpoint")
    if endpoint is not None and not is_http_url(endpoint):
        raise UsageError(f"--endpoint-url: expected an http(s) URL with a host, got {endpoint!r}")
    return target


@checked
def prune_mirror(
    mirror: str,
    *,
    catalog: Catalog | StrPath | None = None,
    keep_days: float | None = None,
    keep_versions: int | None = None,
    locks: Sequence[StrPath] = (),
    all_models: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    secrets: Secrets | None = None,
) -> MirrorPruneReport:
    """Remove from the mirror ``mirror`` (a template in an object store, as in ``mirrors``) the
    objects mdl wrote under the catalog's models (``all_models``: under any model) that no kept
    version names, once older than ``keep_days`` (default 7) by the store's clock, the manifests
    of versions no longer kept, and expired leases; never an object mdl did not write, a live
    lease or the object it guards. Kept: the versions the catalog's lock and each of ``locks``
    pin, and the newest ``keep_versions`` (default 2; 0: only the locks') published versions of
    each model (their manifests in the mirror)."""
    from mdl.upload.keptversions import KEEP_VERSIONS
    from mdl.upload.mirrorprune import KEEP_DAYS, prune_mirror_models

    days = KEEP_DAYS if keep_days is None else keep_days
    if not 0 <= days < 100_000:
        raise UsageError(f"--keep-days: expected a number of days from 0, got {keep_days!r}")
    count = KEEP_VERSIONS if keep_versions is None else keep_versions
    if not 0 <= count <= 10_000:
        raise UsageError(f"--keep-versions: expected 0 to 10000 versions, got {keep_versions!r}")
    flags = Overrides(mirrors=[mirror], dry_run=dry_run)
    settings, models, _ = catalog_models(
        catalog, environ, (), flags, all_models=True, secrets=secrets
    )
    kept = [Path(lock) for lock in locks]
    if mirror.startswith("oci://"):  # a registry: its own rules, the same report
        from mdl.upload.registryprune import prune_registry

        if keep_days is not None:
            raise UsageError(
                "--keep-days: a registry keeps no time of its manifests; prune --mirror oci://"
                " keeps versions by the locks and --keep-versions"
            )

        return prune_registry(
            models, settings, mirror=mirror, all_models=all_models, locks=kept, keep_versions=count
        )
    return prune_mirror_models(
        models,
        settings,
        template=mirror,
        keep_days=days,
        all_models=all_models,
        locks=kept,
        keep_versions=count,
    )
