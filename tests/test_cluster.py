"""The sweep scales out: cells run on a real (local) Dask cluster through joblib give the rows a local run gives."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import collect  # noqa: E402  (a script in benchmarks/, not part of the package)

from advisor import store  # noqa: E402

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_cells_on_a_dask_cluster_match_a_local_run(tmp_path):
    from joblib import parallel_config

    cells = [collect.Cell("digits", 5, 0.3, 1)]  # one cell keeps the suite short; it runs on a worker process
    local, remote = tmp_path / "local.jsonl", tmp_path / "cluster.jsonl"
    collect.collect(cells, local, depths=())  # no fine-tune variants: the four strategies suffice here
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, parallel_config(backend="dask"):
        # the workers are separate processes that import collect.py themselves
        client.run(lambda: sys.path.insert(0, str(Path(collect.__file__).parent)))
        collect.collect(cells, remote, n_jobs=2, depths=())
        workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2
    a = {r["key"]: r for r in store.read(local)}
    b = {r["key"]: r for r in store.read(remote)}
    assert set(a) == set(b) == {c.key for c in cells}
    for key in a:
        for field in ("n_images", "n_classes", "test_images", "scratch_arch", "fine_tune_depth"):
            assert a[key][field] == b[key][field]
        assert a[key]["similarity"]["score"] == pytest.approx(b[key]["similarity"]["score"], abs=0.02)
        # feature extraction is deterministic; trained runs differ only by thread scheduling
        assert a[key]["runs"]["feature_extraction"]["val_accuracy"] == pytest.approx(
            b[key]["runs"]["feature_extraction"]["val_accuracy"], abs=0.02)
        for s in ("fine_tune", "retrain", "scratch"):
            assert a[key]["runs"][s]["val_accuracy"] == pytest.approx(b[key]["runs"][s]["val_accuracy"], abs=0.15)
