"""Crash safety: kill -9 a process in the middle of writing a person; reopen and check (both backends)."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

from facegallery.gallery import Gallery

CHILD = textwrap.dedent("""
    import sys, time
    import torch
    torch.set_num_threads(1)
    from facegallery.gallery import Gallery
    from facegallery.gallery.postgres import PostgresStore
    from facegallery.gallery.sqlite import SQLiteStore

    db, model, root = sys.argv[1:4]

    def stalling(write_centroid):
        def stall_inside_transaction(self, ident):
            write_centroid(self, ident)  # photos, embeddings and centroid of 'Late' written, not committed
            if self.names_of([ident])[ident] == "Late":
                print("inside", flush=True)
                time.sleep(60)
        return stall_inside_transaction

    for Store in (SQLiteStore, PostgresStore):
        Store.update_centroid = stalling(Store.update_centroid)
    g = Gallery.open(db, model=model, create=True)
    g.enroll("Early", [f"{root}/Person 0/{i}.jpg" for i in range(1, 6)])
    print("early committed", flush=True)
    g.enroll("Late", [f"{root}/Person 1/{i}.jpg" for i in range(1, 6)])
""")


def test_kill_9_mid_enrolment_keeps_people_whole(face_tree, tiny_model_dir, location):
    db = location
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(tiny_model_dir), str(face_tree)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        lines = [child.stdout.readline().strip() for _ in range(2)]
        assert lines == ["early committed", "inside"], lines
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
        child.stdout.close()
    with Gallery.open(db) as g:
        if not str(db).startswith("postgresql"):
            assert g.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {p.name: p.photos for p in g.people()} == {"Early": 5}  # Late: all or nothing -> nothing
        assert len(g.store.embeddings()[0]) == 5 and g.store.count("centroids") == 1
        _, emb = g.store.embeddings()
        assert np.allclose(g.store.centroids()[2][0], emb.mean(0), atol=1e-6)
        assert g.identify(face_tree / "Person 0" / "2.jpg").candidates[0].name == "Early"
        r = g.enroll("Late", [face_tree / "Person 1" / f"{i}.jpg" for i in range(1, 6)])  # enrol again
        assert r.added == 5
