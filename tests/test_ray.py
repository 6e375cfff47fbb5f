"""`--engine ray` on a local Ray cluster started here (2 CPUs, shut down after): the local engine's
features, order and failure records on real photos and bad files, the model opened once per
actor, the first bad file stopping a run, URIs and encoded bytes as inputs, and the install
command when Ray is missing."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import error_line, run_cli
from fexport.errors import ImageError, OutputError
from fexport.runtime import FeatureExtractor, extract_to_file
from fexport.runtime.engines import ray_engine
from readback import read_features

BAD = ("empty.jpg", "text.jpg", "truncated.jpg")


@pytest.fixture(scope="module")
def cluster():
    with ray_engine.session(num_cpus=2, object_store_memory=200 << 20) as ray:
        yield ray


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, photo_paths) -> Path:
    """A large photo first (slow to decode, so later batches finish before it: order must be
    kept on purpose), nine real photos and three bad files; empty.jpg sorts between photos."""
    folder = tmp_path_factory.mktemp("mixed")
    noise = np.random.default_rng(0).integers(0, 256, (6000, 6000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "a_large.jpg", quality=90)
    for path in map(Path, photo_paths):
        (folder / path.name).write_bytes(path.read_bytes())
    jpeg = (folder / "rocket.jpg").read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, not a picture\n")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 4])
    return folder


@pytest.fixture(scope="module")
def inputs(mixed, tmp_path_factory, photo_paths) -> list:
    """The mixed folder, then a photo whose name is not UTF-8 (a POSIX name is any bytes)."""
    odd = tmp_path_factory.mktemp("odd") / os.fsdecode(b"caf\xe9.png")
    odd.write_bytes(Path(photo_paths[0]).read_bytes())
    return [mixed, odd]


@pytest.fixture(scope="module")
def local(resnet8_onnx, inputs, tmp_path_factory):
    """The local engine's output: (paths, features, failures)."""
    out = tmp_path_factory.mktemp("local") / "features.parquet"
    extract_to_file(FeatureExtractor(resnet8_onnx), inputs, out, batch_size=32)
    return read_features(out)


@pytest.fixture(scope="module")
def ray_run(cluster, resnet8_onnx, inputs, tmp_path_factory):
    """Two actors, batches of 1 and shards of 3 rows, so that order and sharding show."""
    out = tmp_path_factory.mktemp("ray") / "features.parquet"
    summary = extract_to_file(resnet8_onnx, inputs, out, engine="ray", batch_size=1,
                              num_workers=2, rows_per_shard=3)
    return out, summary


def test_features_order_and_failures_equal_the_local_engine(ray_run, local):
    out, summary = ray_run
    paths, features, failures = read_features(out)  # pyarrow reads the shards in name order
    assert paths == local[0] and len(paths) == 11 and paths[-1].endswith("caf\\xe9.png")
    np.testing.assert_array_equal(features, local[1])
    assert failures == local[2] and sorted(Path(p).name for p in failures) == list(BAD)
    assert "empty (0 bytes)" in failures[str(Path(paths[0]).parent / "empty.jpg")]
    assert len(list(out.glob("part-*.parquet"))) > 2
    assert (summary.total, summary.extracted, summary.row_shape) == (14, 11, (64,))
    assert summary.engine == "ray" and (summary.ray_nodes, summary.retries) == (1, 0)
    assert re.fullmatch(r"(cpu|cuda), [12] Ray workers? on 1 node", summary.ran)


def test_each_actor_opens_the_model_once(ray_run):
    """Fourteen batches on a pool of two: a model opened per batch would show as a process that
    opened it more than once, or as more processes than actors."""
    workers = ray_run[1].ray_workers
    assert 1 <= len(workers) <= 2
    assert [w["loads"] for w in workers.values()] == [1] * len(workers)
    assert sum(w["rows"] for w in workers.values()) == 14


def test_on_error_fail_stops_at_the_first_bad_file_and_a_resume_finishes(
        cluster, resnet8_onnx, mixed, tmp_path, local):
    """As with the local engine: no output, the committed shards kept for --resume; a resume
    with other options is refused with what differs; with --on-error skip it finishes."""
    out = tmp_path / "features.parquet"
    run = dict(engine="ray", batch_size=1, num_workers=2, rows_per_shard=1)
    with pytest.raises(ImageError, match=r"empty\.jpg: the file is empty"):
        extract_to_file(resnet8_onnx, [mixed], out, on_error="fail", **run)
    assert [p.name for p in tmp_path.iterdir()] == ["features.parquet.parts"]
    with pytest.raises(OutputError, match="left .*features.parquet.parts: pass --resume"):
        extract_to_file(resnet8_onnx, [mixed], out, **run)
    with pytest.raises(OutputError, match=r"--batch-size differs .*\(1 then, 2 now\)"):
        extract_to_file(resnet8_onnx, [mixed], out, mode="resume", **{**run, "batch_size": 2})
    with pytest.raises(OutputError, match=r"the input list differs .*\(13 inputs then, 14 now; "
                                          r"input #13 was \(none\), is '.*rocket.jpg'\)"):
        extract_to_file(resnet8_onnx, [mixed, mixed / "rocket.jpg"], out, mode="resume", **run)
    summary = extract_to_file(resnet8_onnx, [mixed], out, mode="resume", **run)
    paths, features, failures = read_features(out)
    assert paths == local[0][:-1] and failures == {k: v for k, v in local[2].items()}
    np.testing.assert_array_equal(features, local[1][:-1])
    # The run stops where the driver meets the failure in input order; the other actor may
    # have committed every later shard by then, and a resume then has nothing left to run.
    assert 0 < summary.resumed <= summary.total == 13 and summary.extracted == 10
    assert summary.resumed < 13 or summary.ran == "no Ray worker: every input was done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.failures.tsv",
                                                          "features.parquet"]
    extract_to_file(resnet8_onnx, [mixed], out, mode="overwrite", **run)  # replaced at the end
    assert read_features(out)[0] == paths and not out.with_name("features.parquet.parts").exists()


def _ray_cli(resnet8_onnx, inputs, out, *extra):
    mixed, odd = inputs
    return ["extract", str(resnet8_onnx), str(mixed), str(odd.parent), "-o", str(out),
            "--engine", "ray", "--num-workers", "2", "--batch-size", "1", "--rows-per-shard",
            "2", *extra]


def test_a_run_killed_mid_way_resumes_to_the_local_engines_rows(resnet8_onnx, inputs,
                                                                  tmp_path, local):
    """The driver and its local Ray cluster SIGKILLed with some shards committed and others
    not; --resume does the rest: the local engine's rows, none twice."""
    import signal
    import subprocess
    import sys
    import time

    out, paused = tmp_path / "features.parquet", tmp_path / "paused"
    env = {**os.environ, "FEXPORT_TEST_PAUSE_AT_INPUT": f"6:{paused}"}
    proc = subprocess.Popen([sys.executable, "-m", "fexport", *_ray_cli(resnet8_onnx, inputs,
                                                                        out)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert paused.exists(), f"the run never reached input 6 (exit {proc.poll()})"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, the raylet and every worker at once
    proc.wait(timeout=60)
    parts = out.with_name("features.parquet.parts")
    committed = sorted(p.name for p in parts.glob("part-*.json"))
    assert committed and all(int(name.split("-")[1]) < 6 for name in committed)
    resumed = run_cli(*_ray_cli(resnet8_onnx, inputs, out, "--resume"))
    paths, features, failures = read_features(out)
    assert paths == local[0] and failures == local[2]  # in order, each row once
    np.testing.assert_array_equal(features, local[1])
    assert "extracted 11 of 14 images" in resumed.stdout and not parts.exists()


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes(resnet8_onnx, inputs,
                                                                     tmp_path, local):
    """A Ray worker SIGKILLs itself at input 4: Ray restarts the actor and gives its batch
    again (ACTOR_RETRIES); the output is the local engine's, row for row."""
    out, died = tmp_path / "features.parquet", tmp_path / "died"
    proc = run_cli(*_ray_cli(resnet8_onnx, inputs, out),
                   env={"FEXPORT_TEST_KILL_WORKER_AT": f"4:{died}"})
    assert died.exists()  # a worker really died
    assert re.search(r"Ray workers on 1 node, 1 restart\) in [\d.]+ s, 3 failed", proc.stdout)
    paths, features, failures = read_features(out)
    assert paths == local[0] and failures == local[2]
    np.testing.assert_array_equal(features, local[1])


def test_uris_in_and_out(cluster, resnet8_onnx, mixed, tmp_path, local):
    """file:// URIs take the pyarrow.fs path that s3:// and gs:// take; an open extractor is
    reopened by the actors with its own options."""
    out = tmp_path / "features.parquet"
    extract_to_file(FeatureExtractor(resnet8_onnx, device="cpu"), [mixed.as_uri()],
                    out.as_uri(), engine="ray", num_workers=1)
    paths, features, failures = read_features(out)
    assert paths == [Path(p).as_uri() for p in local[0][:-1]]  # all but the odd name
    np.testing.assert_array_equal(features, local[1][:-1])
    assert {Path(k).name: v[len(k):] for k, v in failures.items()} == \
        {Path(k).name: v[len(k):] for k, v in local[2].items()}  # the same words after the key
    with pytest.raises(OutputError, match="already exists: pass --overwrite"):
        extract_to_file(resnet8_onnx, [mixed], out.as_uri(), engine="ray")


def test_inputs_given_one_by_one_are_listed_as_they_come(cluster, resnet8_onnx, inputs,
                                                       tmp_path, local):
    """A generator of paths is spooled to the run's listing file as it is read (never made
    a list), and on_listed says how many there were; the listing goes with the run."""
    mixed, odd = inputs
    out, listed = tmp_path / "features.parquet", []
    paths = (str(p) for p in [*sorted(mixed.iterdir()), odd])
    summary = extract_to_file(resnet8_onnx, paths, out, engine="ray", batch_size=4,
                              on_listed=listed.append)
    assert listed == [14] and summary.total == 14 and read_features(out)[0] == local[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.failures.tsv",
                                                          "features.parquet"]
    assert not list(out.glob("inputs*"))  # the run's listing went with its parts folder


def test_a_dataset_of_encoded_bytes(cluster, resnet8_onnx, mixed, local):
    """read_binary_files' rows (path, bytes) give the local engine's features, and failures
    named by their path rather than "<bytes>". The large photo stays out: 32 MB through a
    200 MB object store on two busy CPUs tests patience, not fexport."""
    files = [str(p) for p in sorted(mixed.iterdir()) if p.name != "a_large.jpg"]
    dataset = cluster.data.read_binary_files(files, include_paths=True)
    rows = ray_engine.extract_dataset(dataset, resnet8_onnx, batch_size=4).take_all()
    by_name = {Path(row["path"]).name: row for row in rows}
    expected = dict(zip((Path(p).name for p in local[0][1:-1]), local[1][1:-1]))
    assert {name for name, row in by_name.items() if row["error"] is None} == set(expected)
    for name, features in expected.items():
        np.testing.assert_array_equal(np.asarray(by_name[name]["features"], np.float32),
                                      features)
    for name in BAD:
        assert by_name[name]["features"] is None
        assert by_name[name]["error"].startswith(by_name[name]["path"] + ": ")


def test_without_ray_the_error_says_how_to_install_it(resnet8_onnx, photos, tmp_path):
    """A `ray` package that cannot be imported, first on the path of a fresh interpreter."""
    (tmp_path / "blocked" / "ray").mkdir(parents=True)
    (tmp_path / "blocked" / "ray" / "__init__.py").write_text(
        "raise ImportError('No module named ray (blocked by the test)')\n")
    proc = run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "f.parquet", "--engine",
                   "ray", check=False, env={"PYTHONPATH": str(tmp_path / "blocked")})
    assert proc.returncode == 1
    assert 'does not import' in error_line(proc)
    assert 'pip install "fexport[ray]"' in error_line(proc)


def test_cli_engine_ray_on_the_running_cluster(cluster, resnet8_onnx, inputs, tmp_path, local):
    out = tmp_path / "features.parquet"
    ray_options = ("--engine", "ray", "--address", cluster.get_runtime_context().gcs_address)
    mixed, odd = inputs
    proc = run_cli("extract", resnet8_onnx, mixed, odd.parent, "-o", out, *ray_options,
                   "--num-workers", "2", "--batch-size", "2")
    paths, features, failures = read_features(out)
    assert paths == local[0] and failures == local[2]
    np.testing.assert_array_equal(features, local[1])
    assert "extracted 11 of 14 images" in proc.stdout and proc.stderr.count("skipped") == 3
    assert re.search(r"(cpu|cuda), [12] Ray workers? on 1 node\)", proc.stdout)


def test_cli_names_the_ray_limit_on_file_names_that_are_not_utf8(cluster, resnet8_onnx,
                                                                  inputs, tmp_path):
    """Ray sends the command line to the cluster as UTF-8: a non-UTF-8 name cannot be on it."""
    proc = run_cli("extract", resnet8_onnx, inputs[1], "-o", tmp_path / "f.parquet", "--engine",
                   "ray", "--address", cluster.get_runtime_context().gcs_address, check=False)
    assert proc.returncode == 1 and "name its folder instead" in error_line(proc)


def test_a_dataset_of_arrays_in_the_models_own_layout(cluster, tmp_path):
    """A channels-first model's dataset of (C, H, W) arrays gives the local engine's rows."""
    import keras

    import fexport

    keras.utils.set_random_seed(9)
    model = keras.Sequential([keras.Input((1, 24, 24)),
                              keras.layers.Conv2D(4, 3, data_format="channels_first"),
                              keras.layers.MaxPooling2D(2, data_format="channels_first")])
    path = tmp_path / "cf.onnx"
    fexport.export(model, layer=-1, head="flatten", output=path)
    arrays = np.random.default_rng(0).integers(0, 256, (3, 1, 24, 24)).astype(np.float32)
    dataset = cluster.data.from_items([{"path": f"a{i}", "image": a}
                                       for i, a in enumerate(arrays)])
    rows = ray_engine.extract_dataset(dataset, path, batch_size=2).take_all()
    expected = FeatureExtractor(path, device="cpu").extract(arrays)
    got = np.stack([np.asarray(r["features"], np.float32) for r in sorted(
        rows, key=lambda r: r["path"])])
    np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """An S3-compatible server (moto's server mode) on 127.0.0.1, and the environment that
    points boto3 and pyarrow at it. Stopped at the end of the module."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    try:
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_inputs_from_an_s3_compatible_store(s3_server, resnet8_onnx, mixed, tmp_path, local,
                                            monkeypatch):
    """s3:// inputs on a real S3 protocol server: listed, read by the workers, the local
    engine's features and failures, named by their URIs."""
    pytest.importorskip("boto3")
    import boto3

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="fexport-photos")
    for path in sorted(mixed.iterdir()):
        client.upload_file(str(path), "fexport-photos", f"mixed/{path.name}")
    out = tmp_path / "features.parquet"
    proc = run_cli("extract", resnet8_onnx, "s3://fexport-photos/mixed/", "-o", out,
                   "--engine", "ray", "--num-workers", "2", "--batch-size", "4")
    paths, features, failures = read_features(out)
    names = [Path(p).name for p in local[0][:-1]]  # the odd name is not in the bucket
    assert paths == [f"s3://fexport-photos/mixed/{name}" for name in names]
    np.testing.assert_array_equal(features, local[1][:-1])
    assert {Path(k).name: v[len(k):] for k, v in failures.items()} == \
        {Path(k).name: v[len(k):] for k, v in local[2].items()}
    assert "extracted 10 of 13 images" in proc.stdout
