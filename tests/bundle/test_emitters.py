"""The emitter seam: an engine added in a test, with no change to the compiler, is in every compile.

``TeamFiles`` writes one JSON file per team (its grants valid now). Registered,
it shows up in full and incremental compiles, in MANIFEST.json's digests, in
CODEOWNERS and in a publish; unregistered, the bundle is byte for byte what it
was without it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bundle.budget import Memo, ObjectTooLarge
from bundle.compiler import MANIFEST, Bundle, compile_bundle, owned_roots
from bundle.emitters import Emitter, GroupedEmitter, register, registered, unregister
from bundle.emitters.cilium import CILIUM
from bundle.emitters.istio import ISTIO
from bundle.emitters.opa import OPA
from bundle.incremental import IncrementalCompiler
from bundle.policy_repository import PolicyRepository
from bundle.records import BundleOptions, GrantRecord
from tests.bundle.fixtures import NOW, varied_records
from tests.bundle.test_policy_repository import remote_file

HOUR = timedelta(hours=1)
OPTIONS = BundleOptions(max_object_bytes=1200, security_owner="@org/security", owner_template="@org/{team}")
Destination = tuple[str, str, int, str]  # identity, host, port, protocol


class TeamFiles(GroupedEmitter[str, Destination]):
    """A made-up engine: per team, the destinations its workloads may reach now."""

    name = "teamfiles"
    roots = ("teamfiles",)

    def unsupported(self, record: GrantRecord) -> str:
        return "" if record.team else f"{record.identity} (no team)"

    def items(self, record: GrantRecord) -> list[tuple[str, Destination]]:
        return [(record.team, (record.identity, record.host, record.port, record.protocol))]

    def render_group(
        self, group: str, items: Sequence[Destination], options: BundleOptions, memo: Memo | None = None
    ) -> list[tuple[str, bytes]]:
        document = {"team": group, "allow": [list(item) for item in items]}
        return [(f"teamfiles/{group}.json", (json.dumps(document, sort_keys=True) + "\n").encode())]


@contextmanager
def engine(emitter: Emitter) -> Iterator[Emitter]:
    register(emitter)
    try:
        yield emitter
    finally:
        unregister(emitter.name)


def expected_team_file(records: list[GrantRecord], team: str, now: object = NOW) -> dict:
    live = {
        (r.identity, r.host, r.port, r.protocol)
        for r in records
        if r.team == team and r.valid_from <= now < r.expires_at  # type: ignore[operator]
    }
    return {"team": team, "allow": [list(item) for item in sorted(live)]}


def manifest(bundle: Bundle) -> dict:
    return json.loads(bundle.files[MANIFEST])


def test_the_registry_holds_opa_istio_and_cilium_in_codeowners_order() -> None:
    assert registered() == (OPA, ISTIO, CILIUM)


def test_an_engine_registered_in_a_test_is_in_the_full_compile_its_manifest_and_codeowners() -> None:
    records = varied_records()
    without = compile_bundle(records, now=NOW, options=OPTIONS)
    with engine(TeamFiles()):
        bundle = compile_bundle(records, now=NOW, options=OPTIONS)
        assert owned_roots(bundle.files) >= {"teamfiles", "opa", "istio", "cilium"}
    teams = sorted({r.team for r in records if r.team and r.valid_from <= NOW < r.expires_at})
    assert sorted(path for path in bundle.files if path.startswith("teamfiles/")) == [
        f"teamfiles/{team}.json" for team in teams
    ]
    for team in teams:
        assert json.loads(bundle.files[f"teamfiles/{team}.json"]) == expected_team_file(records, team)
    listed = manifest(bundle)
    for path, data in bundle.files.items():
        if path != MANIFEST:
            assert listed["files"][path] == hashlib.sha256(data).hexdigest()
    assert listed["skipped"]["teamfiles"] == sorted(
        {f"{r.identity} (no team)" for r in records if not r.team and r.valid_from <= NOW < r.expires_at}
    )
    assert "/teamfiles/ @org/security" in bundle.files["CODEOWNERS"].decode().splitlines()
    # Every other engine's files are untouched; the revision binds the new files too.
    changed = {path for path in without.files if without.files[path] != bundle.files.get(path)}
    assert changed == {MANIFEST, "opa/.manifest", "CODEOWNERS"}
    assert bundle.revision != without.revision
    # Gone again: the bundle is what it was without it.
    assert compile_bundle(records, now=NOW, options=OPTIONS).files == without.files
    assert "teamfiles" not in owned_roots(without.files)


def test_an_engine_registered_in_a_test_is_in_incremental_compiles_which_render_only_what_changed() -> None:
    records = {r.id: r for r in varied_records()}
    compiler = IncrementalCompiler()
    compiler.compile(records, now=NOW, options=OPTIONS)
    with engine(TeamFiles()):
        # A new set of engines starts from nothing, as new options do.
        first = compiler.compile(records, now=NOW, options=OPTIONS)
        assert compiler.full_compiles == 2
        assert first.files == compile_bundle(records.values(), now=NOW, options=OPTIONS).files
        grant = next(r for r in records.values() if r.team == "payments" and r.valid_from <= NOW < r.expires_at)
        records[5_000] = replace(grant, id=5_000, host="new.vendor.example")
        later = NOW + HOUR
        second = compiler.compile(records, now=later, options=OPTIONS)
        assert compiler.full_compiles == 2
        assert second.files == compile_bundle(records.values(), now=later, options=OPTIONS).files
        assert json.loads(second.files["teamfiles/payments.json"]) == expected_team_file(
            list(records.values()), "payments", later
        )
        # Only the team whose grants changed (or flipped in the hour) rendered its file again.
        flipped = {r.team for r in records.values() if NOW < r.valid_from <= later or NOW < r.expires_at <= later}
        rerendered = {
            path
            for path, data in second.files.items()
            if path.startswith("teamfiles/") and first.files.get(path) is not data
        }
        assert rerendered == {f"teamfiles/{team}.json" for team in {"payments"} | flipped if team}
        # A team whose last grant goes: its file goes too.
        for i in [i for i, r in records.items() if r.team == "ml"]:
            del records[i]
        third = compiler.compile(records, now=later, options=OPTIONS)
        assert "teamfiles/ml.json" not in third.files and "teamfiles/payments.json" in third.files
        assert third.files == compile_bundle(records.values(), now=later, options=OPTIONS).files
    assert compiler.compile(records, now=later, options=OPTIONS).files == (
        compile_bundle(records.values(), now=later, options=OPTIONS).files
    )
    assert compiler.full_compiles == 3


def test_a_publish_carries_the_engines_files_and_drops_them_when_it_is_removed(tmp_path: Path) -> None:
    records = varied_records(200)
    publisher = PolicyRepository(url=str(tmp_path / "policy.git"), work_dir=tmp_path / "work")
    with engine(TeamFiles()):
        bundle = compile_bundle(records, now=NOW)
        assert publisher.publish(bundle, trigger="test").status == "published"
    remote = tmp_path / "policy.git"
    ours = sorted(path for path in bundle.files if path.startswith("teamfiles/"))
    assert ours and [path for path in branch_paths(remote) if path.startswith("teamfiles/")] == ours
    assert all(remote_file(remote, path) == bundle.files[path] for path in ours)
    assert publisher.publish(compile_bundle(records, now=NOW), trigger="test").status == "published"
    assert not [path for path in branch_paths(remote) if path.startswith("teamfiles/")]


def branch_paths(remote: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.splitlines()


def test_the_registry_refuses_a_name_or_a_directory_another_engine_has() -> None:
    class Clash(TeamFiles):
        name = "opa"

    class Squatter(TeamFiles):
        name = "squatter"
        roots = ("istio",)

    class Teams(TeamFiles):
        name = "teams-engine"
        roots = ("teams",)

    for emitter in (Clash(), Squatter(), Teams()):
        with pytest.raises(ValueError, match="emitter"):
            register(emitter)
    assert registered() == (OPA, ISTIO, CILIUM)


def test_a_file_over_its_engines_budget_is_refused_with_the_engine_and_path() -> None:
    class Tight(TeamFiles):
        name = "tight"
        roots = ("tight",)

        def budget(self, options: BundleOptions) -> int:
            return 64

        def render_group(
            self, group: str, items: Sequence[Destination], options: BundleOptions, memo: Memo | None = None
        ) -> list[tuple[str, bytes]]:
            return [(f"tight/{group}.json", json.dumps([list(item) for item in items]).encode())]

    with engine(Tight()), pytest.raises(ObjectTooLarge, match=r"tight: tight/\w+\.json is [\d,]+ bytes, over its 64"):
        compile_bundle(varied_records(50), now=NOW)
