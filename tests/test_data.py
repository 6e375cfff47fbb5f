"""The repository carries its test data: every model the tests use is in tests/data, whole, with
its source and license, and no code reads the folder beside the repository."""

import hashlib

from conftest import DATA, ROOT


def _listed_hashes() -> dict:
    lines = (DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def test_every_model_file_matches_its_sha256():
    listed = _listed_hashes()
    models = sorted(p.name for p in DATA.iterdir() if p.suffix in (".h5", ".hdf5", ".keras"))
    assert sorted(listed) == models
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_the_readme_names_each_file_with_its_license_and_hash():
    readme = (DATA / "README.md").read_text()
    for name, digest in _listed_hashes().items():
        assert f"`{name}`" in readme and digest in readme, name
    assert "MIT" in readme and "Apache-2.0" in readme


def test_no_code_reads_the_folder_beside_the_repository():
    beside = "../" + "shared"  # spelled apart so that this file does not match itself
    code = [*ROOT.glob("*/*.py"), *ROOT.glob("*/*/*.py"), ROOT / ".ci" / "run"]
    readers = [str(p) for p in code if ".venv" not in p.parts and beside in p.read_text()]
    assert readers == []
