"""One checksum for model folders, teacher stores and preparation records."""


def test_file_sha256_of_known_content(tmp_path):
    from hieradist_lobes.files import file_sha256

    (tmp_path / "x").write_bytes(b"")
    assert file_sha256(str(tmp_path / "x")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
