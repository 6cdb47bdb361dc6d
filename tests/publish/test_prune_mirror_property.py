"""``prune --mirror`` never removes an object mdl did not write or another catalog names: over any
mix of objects in a shared bucket (mdl's and other tools', this catalog's models', other models',
objects under no model, any age), what goes is only what mdl wrote under this catalog's models
(any model's with ``all_models``), named by none of them, older than ``keep_days``."""

from __future__ import annotations

from buckets.memstore import MemoryStore, as_writer
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.upload.mirrorprune import DAY, Named, model_prefix, prune_mirror

TEMPLATE = "s3://team/{model}/{path}"
OURS = ("tiny", "loose")  # the catalog's models; tiny's two files are pinned
PINNED = {"s3://team/tiny/config.json", "s3://team/tiny/model.safetensors"}
FIRSTS = (*OURS, "other-team", "datasets", "backups", "tin", "tiny-2")
NAMES = ("config.json", "model.safetensors", "train.parquet", "db.sql.gz", "x/y.bin")

objects = st.dictionaries(
    st.one_of(
        st.builds(
            lambda m, p: f"s3://team/{m}/{p}", st.sampled_from(FIRSTS), st.sampled_from(NAMES)
        ),
        st.sampled_from(["s3://team/README.md", "s3://team/tinyweights.bin"]),
    ),
    st.tuples(st.booleans(), st.integers(0, 30 * 24).map(lambda hours: hours * 3600.0)),
    max_size=20,
)


@settings(max_examples=examples(150), deadline=None)
@given(objects, st.integers(0, 240).map(lambda hours: hours / 24), st.booleans(), st.booleans())
def test_only_what_mdl_wrote_under_this_catalogs_models_and_no_one_names_goes(
    found: dict[str, tuple[bool, float]], keep_days: float, all_models: bool, dry_run: bool
) -> None:
    store = MemoryStore()
    start = store.clock
    for uri, (marked, age) in found.items():
        store.clock = start - age
        store.put(uri, b"x", marked=marked)
        found[uri] = (marked, start - store.clock)  # the age as the store's clock says it
    store.clock = start
    unpinned = model_prefix(TEMPLATE, "loose")
    named = Named(
        dict.fromkeys(PINNED, "named"),
        {unpinned: "not pinned"},
        None if all_models else tuple(model_prefix(TEMPLATE, m) for m in OURS),
    )
    report = prune_mirror(as_writer(store), TEMPLATE, named, keep_days=keep_days, dry_run=dry_run)
    removed = {e.uri for e in report.removed}
    left = set(store.objects())
    assert left == set(found) - (set() if dry_run else removed)
    for uri in removed:
        marked, age = found[uri]
        assert marked, f"{uri}: mdl did not write it"
        assert uri not in PINNED and not uri.startswith(unpinned), f"{uri}: the catalog names it"
        assert all_models or uri.startswith(("s3://team/tiny/", "s3://team/loose/")), uri
        assert age >= keep_days * DAY, f"{uri}: younger than {keep_days} day(s)"
    # and everything that may go, goes: an old object mdl wrote that nothing keeps
    for uri, (marked, age) in found.items():
        ours = all_models or uri.startswith("s3://team/tiny/")
        if marked and ours and uri not in PINNED and not uri.startswith(unpinned):
            assert (uri in removed) == (age >= keep_days * DAY), uri
    kept = {e.uri: e for e in report.kept}
    for uri, entry in kept.items():  # kept for its age alone: says when it goes
        marked, age = found[uri]
        assert (entry.after is not None) == (
            entry.reason.startswith("younger") and marked and age < keep_days * DAY
        )
