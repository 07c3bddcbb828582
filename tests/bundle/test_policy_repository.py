"""Publishing to real git repositories (bare remotes in a temporary folder)."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from pathlib import Path

import git
import pytest

from bundle.compiler import compile_bundle
from bundle.policy_repository import PolicyRepository, PublishError
from tests.bundle.fixtures import NOW, sample_records


def remote_log(remote: Path, branch: str = "main") -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%s", branch], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def remote_file(remote: Path, path: str, branch: str = "main") -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "show", f"{branch}:{path}"], capture_output=True, check=True
    ).stdout


def make_publisher(tmp_path: Path, name: str = "work", **kwargs: object) -> PolicyRepository:
    return PolicyRepository(url=str(tmp_path / "policy.git"), work_dir=tmp_path / name, **kwargs)


def test_first_publish_creates_the_bare_repo_and_commits_the_tree(tmp_path: Path) -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    result = make_publisher(tmp_path).publish(bundle, trigger="test")
    remote = tmp_path / "policy.git"
    assert result.status == "published" and len(result.commit) == 40
    assert remote_log(remote) == [f"Egress policy bundle {bundle.revision}: +6 -0 grants"]
    for path, data in bundle.files.items():
        assert remote_file(remote, path) == data
    message = git.Repo(remote).commit("main").message
    assert "grant 1: spiffe://cluster.local/ns/payments/sa/checkout-api -> api.stripe.com:443/tcp" in message
    assert "(request #10, approved by bob)" in message


def test_publishing_the_same_state_makes_no_commit(tmp_path: Path) -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    publisher = make_publisher(tmp_path)
    first = publisher.publish(bundle, trigger="test")
    again = publisher.publish(bundle, trigger="test")
    assert again.status == "unchanged" and again.commit == first.commit
    assert len(remote_log(tmp_path / "policy.git")) == 1


def test_commit_message_lists_added_and_removed_grants(tmp_path: Path) -> None:
    records = sample_records()
    publisher = make_publisher(tmp_path)
    publisher.publish(compile_bundle(records, now=NOW), trigger="test")
    changed = [r for r in records if r.id != 1]
    result = publisher.publish(compile_bundle(changed, now=NOW), trigger="grant 1 revoked")
    assert [g.id for g in result.removed] == [1] and result.added == []
    message = git.Repo(tmp_path / "policy.git").commit("main").message
    assert "+0 -1 grants" in message and "Removed:" in message and "Trigger: grant 1 revoked" in message


def test_files_no_longer_in_the_bundle_are_removed(tmp_path: Path) -> None:
    records = sample_records()
    publisher = make_publisher(tmp_path)
    publisher.publish(compile_bundle(records, now=NOW), trigger="test")
    runner_only = [r for r in records if "runner" in r.identity]
    publisher.publish(compile_bundle(runner_only, now=NOW), trigger="test")
    tree = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "policy.git"), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "cilium/payments/egress-checkout-api.yaml" not in tree
    assert "cilium/ci/egress-runner.yaml" in tree


def test_subdirectory_and_branch_are_configurable(tmp_path: Path) -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    make_publisher(tmp_path, branch="policies", subdir="egress/prod").publish(bundle, trigger="test")
    assert (
        remote_file(tmp_path / "policy.git", "egress/prod/opa/data.json", "policies") == bundle.files["opa/data.json"]
    )


def test_rejected_push_is_rebuilt_on_the_new_head(tmp_path: Path) -> None:
    records = sample_records()
    remote = tmp_path / "policy.git"
    ours = make_publisher(tmp_path, "ours")
    ours.publish(compile_bundle(records[:2], now=NOW), trigger="first")
    # Someone else moves the branch between our commit and our push.
    other = tmp_path / "other"
    git.Repo.clone_from(str(remote), other)

    def move_branch(attempt: int) -> None:
        if attempt == 1:
            (other / "README.md").write_text("owned by the security team\n")
            repo = git.Repo(other)
            repo.index.add(["README.md"])
            repo.index.commit("Add README")
            repo.remotes.origin.push("HEAD:main")

    result = ours.publish(compile_bundle(records, now=NOW), trigger="second", before_push=move_branch)
    assert result.status == "published" and result.attempts == 2
    log = remote_log(remote)
    assert log[1] == "Add README" and log[0].startswith("Egress policy bundle")
    assert remote_file(remote, "README.md") == b"owned by the security team\n"
    assert remote_file(remote, "opa/data.json") == compile_bundle(records, now=NOW).files["opa/data.json"]


def test_two_publishers_on_separate_machines_both_land(tmp_path: Path) -> None:
    records = sample_records()
    first, second = make_publisher(tmp_path, "node-a"), make_publisher(tmp_path, "node-b")
    first.publish(compile_bundle(records[:1], now=NOW), trigger="a")
    second.publish(compile_bundle(records[:3], now=NOW), trigger="b")  # its clone is older than node-a's push
    first.publish(compile_bundle(records, now=NOW), trigger="a again")
    assert len(remote_log(tmp_path / "policy.git")) == 3
    assert (
        remote_file(tmp_path / "policy.git", "opa/data.json") == compile_bundle(records, now=NOW).files["opa/data.json"]
    )


def test_unreachable_remote_fails_then_recovers_with_the_whole_state(tmp_path: Path) -> None:
    missing = tmp_path / "later.git"
    publisher = PolicyRepository(url=f"file://{missing}", work_dir=tmp_path / "work")
    bundle = compile_bundle(sample_records(), now=NOW)
    with pytest.raises(PublishError) as info:
        publisher.publish(bundle, trigger="test")
    assert info.value.transient
    git.Repo.init(missing, bare=True, initial_branch="main")
    result = publisher.publish(bundle, trigger="retry")
    assert result.status == "published"
    assert remote_file(missing, "MANIFEST.json") == bundle.files["MANIFEST.json"]


def test_concurrent_publishers_sharing_a_lock_make_one_commit(tmp_path: Path) -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    lock = threading.Lock()
    results: list[str] = []

    def run(name: str) -> None:
        with lock:  # the service uses a database advisory lock; see test_publishing.py
            results.append(make_publisher(tmp_path, name).publish(bundle, trigger=name).status)

    threads = [threading.Thread(target=run, args=(f"node-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["published", "unchanged", "unchanged"]
    assert len(remote_log(tmp_path / "policy.git")) == 1


def test_refresh_restores_files_someone_edited_on_the_branch(tmp_path: Path) -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    publisher = make_publisher(tmp_path)
    publisher.publish(bundle, trigger="first")
    other = tmp_path / "other"
    repo = git.Repo.clone_from(str(tmp_path / "policy.git"), other)
    (other / "opa" / "egress" / "policy.rego").write_text("package egress\nallow := true\n")
    repo.index.add(["opa/egress/policy.rego"])
    repo.index.commit("Open everything")
    repo.remotes.origin.push("HEAD:main")
    # The fast path trusts its own last push; the refreshing safety net compares every file.
    assert publisher.publish(bundle, trigger="event").status == "unchanged"
    repaired = publisher.publish(bundle, trigger="schedule", refresh=True)
    assert repaired.status == "published"
    assert remote_file(tmp_path / "policy.git", "opa/egress/policy.rego") == bundle.files["opa/egress/policy.rego"]


def test_an_unpushed_commit_is_pushed_by_the_next_publish(tmp_path: Path) -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    publisher = make_publisher(tmp_path)
    publisher.publish(compile_bundle(sample_records()[:1], now=NOW), trigger="first")

    def fail_push(attempt: int) -> None:
        raise OSError("fatal: unable to access remote")

    with pytest.raises(PublishError):
        publisher.publish(bundle, trigger="second", before_push=fail_push)
    assert remote_file(tmp_path / "policy.git", "MANIFEST.json") != bundle.files["MANIFEST.json"]
    result = publisher.publish(bundle, trigger="retry")
    assert result.status == "published"
    assert remote_file(tmp_path / "policy.git", "MANIFEST.json") == bundle.files["MANIFEST.json"]


def remote_tree(remote: Path, branch: str = "main") -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", f"{branch}^{{tree}}"], capture_output=True, text=True, check=True
    ).stdout.strip()


def changed_paths(remote: Path, branch: str = "main") -> set[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "diff", "--name-only", f"{branch}~1", branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_an_incremental_publish_writes_only_changed_files_and_equals_a_full_rebuild(tmp_path: Path) -> None:
    records = sample_records()
    remote = tmp_path / "policy.git"
    publisher = make_publisher(tmp_path)
    before = compile_bundle(records[:4], now=NOW)
    publisher.publish(before, trigger="first")
    after = compile_bundle(records, now=NOW)
    result = publisher.publish(after, trigger="second")
    assert result.status == "published" and [g.id for g in result.added] == [5, 6]
    expected = {path for path, sha in after.digests.items() if before.digests.get(path) != sha}
    assert changed_paths(remote) == expected and "opa/egress/policy.rego" not in expected
    incremental_tree = remote_tree(remote)
    # A fresh publisher (no memory of the last push) rebuilds every file: same tree.
    rebuilt = make_publisher(tmp_path, "fresh").publish(after, trigger="rebuild", refresh=True)
    assert rebuilt.status == "unchanged" and remote_tree(remote) == incremental_tree


def add_foreign_file(tmp_path: Path, path: str, text: str) -> None:
    other = tmp_path / f"other-{len(list(tmp_path.iterdir()))}"
    repo = git.Repo.clone_from(str(tmp_path / "policy.git"), other)
    (other / path).parent.mkdir(parents=True, exist_ok=True)
    (other / path).write_text(text)
    (other / "cilium" / "payments" / "egress-checkout-api.yaml").write_text("tampered\n")
    repo.index.add([path, "cilium/payments/egress-checkout-api.yaml"])
    repo.index.commit(f"Add {path}")
    repo.remotes.origin.push("HEAD:main")


def test_paths_the_bundle_does_not_own_survive_publishes_and_refreshes(tmp_path: Path) -> None:
    records = sample_records()
    remote = tmp_path / "policy.git"
    publisher = make_publisher(tmp_path)
    publisher.publish(compile_bundle(records, now=NOW), trigger="first")
    add_foreign_file(tmp_path, "audit/checkpoint-1.json", '{"head": 1}\n')
    # Our push is rejected (the branch moved): rebuilt on the new head, keeping audit/.
    publisher.publish(compile_bundle(records[:3], now=NOW), trigger="second")
    assert remote_file(remote, "audit/checkpoint-1.json") == b'{"head": 1}\n'
    cilium = "cilium/payments/egress-checkout-api.yaml"
    assert remote_file(remote, cilium) == compile_bundle(records[:3], now=NOW).files[cilium]  # not "tampered"
    # The refresh restores only the bundle's own paths.
    add_foreign_file(tmp_path, "audit/checkpoint-2.json", '{"head": 2}\n')
    assert publisher.publish(compile_bundle(records, now=NOW), trigger="refresh", refresh=True).status == "published"
    assert remote_file(remote, "audit/checkpoint-1.json") == b'{"head": 1}\n'
    assert remote_file(remote, "audit/checkpoint-2.json") == b'{"head": 2}\n'
    bundle = compile_bundle(records, now=NOW)
    for path, data in bundle.files.items():
        assert remote_file(remote, path) == data


def test_a_full_rebuild_removes_stale_files_under_its_own_roots_only(tmp_path: Path) -> None:
    records = sample_records()
    remote = tmp_path / "policy.git"
    make_publisher(tmp_path).publish(compile_bundle(records, now=NOW), trigger="first")
    add_foreign_file(tmp_path, "istio/handmade.yaml", "kind: Nothing\n")
    no_kubernetes = [r for r in records if not r.is_kubernetes]
    make_publisher(tmp_path, "fresh").publish(compile_bundle(no_kubernetes, now=NOW), trigger="x", refresh=True)
    tree = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main"], capture_output=True, text=True
    ).stdout.split()
    assert not [path for path in tree if path.startswith("cilium/")]
    assert "istio/handmade.yaml" not in tree
    assert {"MANIFEST.json", "opa/data.json"} <= set(tree)


def test_a_fresh_signature_over_the_same_files_makes_no_commit(tmp_path: Path) -> None:
    from bundle import signatures
    from bundle.compiler import Bundle

    def signed(token_tail: str) -> Bundle:
        bundle = compile_bundle(sample_records(), now=NOW)
        claims = signatures.claims(bundle.files_under("opa"))
        header = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ"  # {"alg":"ES256","kid":"k"}
        body = json.dumps(claims).encode()
        token = f"{header}.{base64.urlsafe_b64encode(body).decode().rstrip('=')}.{token_tail}"
        return bundle.with_files({"opa/.signatures.json": signatures.signatures_file(token)})

    first = signed("first-signature")
    make_publisher(tmp_path).publish(first, trigger="first")
    # Another process signs the same files again (ES256 is randomised): nothing to commit.
    again = make_publisher(tmp_path, "other").publish(signed("second-signature"), trigger="again", refresh=True)
    assert again.status == "unchanged"
    assert remote_file(tmp_path / "policy.git", "opa/.signatures.json") == first.files["opa/.signatures.json"]
