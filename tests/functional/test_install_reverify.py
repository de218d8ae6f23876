"""A candidate judged at arrival is installed only if its bytes are still the judged ones.

The verdict is cached by (device, inode, size, mtime); bytes changed in place with all four kept
are caught by the sha256 checked right before the install: that candidate is rejected with the
reason and the next valid one installed, never the changed bytes on the stale verdict.
"""

import os


def test_bytes_changed_after_judgement_are_never_installed_on_the_stale_verdict(pair):
    a, b = pair.a, pair.b
    a.save_users(5)
    older = a.ha.ship()["name"]
    a.save_users(6)
    newer = a.ha.ship()["name"]
    assert [v["valid"] for v in b.ha.list_backups()["incoming"]] == [True, True]  # judged, cached
    path = b.inbox_dir / f"{newer}.db"
    st = os.stat(path)
    with open(path, "r+b") as handle:  # same inode, same size, then the same mtime
        handle.seek(st.st_size - 1)
        last = handle.read(1)
        handle.seek(st.st_size - 1)
        handle.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    report = b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, older)
    reasons = {r["name"]: r["reason"] for r in report["rejected"]}
    assert "sha256 changed since it was judged" in reasons[newer]
    assert len(b.shared_config()["mysql_users"]) == 5
    assert b.running()
