"""Tamper-proof bundles (export/BUNDLE.md "Security"): permissions, the manifest's ed25519 signature,
every artifact's sha256, and the tree library's bytes checked as loaded. Through _core.verify_bundle,
the checks the engine runs before loading anything."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

pytest.importorskip("cryptography", reason="bundle signing uses the cryptography package")

from libfraud import FraudError, _core  # noqa: E402
from libfraud.export.sign import SIGNATURE_FILE, generate_keypair, sign_bundle  # noqa: E402

from bundles import payments, random_bundle  # noqa: E402

CHECKSUM, INVALID = "FRAUD_STATUS_BUNDLE_CHECKSUM", "FRAUD_STATUS_BUNDLE_INVALID"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    other = tmp_path_factory.mktemp("other-keys")
    generate_keypair(other / "k.pem", other / "k.pub.pem")
    private, public = generate_keypair(d / "k.pem", d / "k.pub.pem")
    return private, public, other / "k.pub.pem"


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory, keys):
    pytest.importorskip("xgboost")
    schema, spec = payments()
    return random_bundle(tmp_path_factory.mktemp("bundles") / "signed", schema, spec, sign_key=keys[0])


@pytest.fixture
def bundle(signed_bundle, tmp_path):
    return shutil.copytree(signed_bundle, tmp_path / "bundle")


def _refused(bundle, key, status, *words):
    with pytest.raises(FraudError) as error:
        _core.verify_bundle(str(bundle), str(key) if key else "")
    assert error.value.status == status, str(error.value)
    for w in words:
        assert str(w) in str(error.value), str(error.value)
    return str(error.value)


def _artifacts(bundle):
    import json
    return json.loads((bundle / "manifest.json").read_text())["artifacts"]


def test_a_signed_bundle_verifies_and_loads(bundle, keys):
    assert (bundle / SIGNATURE_FILE).stat().st_size == 64
    _core.verify_bundle(str(bundle), str(keys[1]))
    _core.verify_bundle(str(bundle))  # no key configured: permissions and checksums only
    from libfraud import Scorer
    assert Scorer(bundle).threshold == 0.5


def test_every_manifest_byte_flipped_is_refused(bundle, keys):
    path = bundle / "manifest.json"
    original = path.read_bytes()
    with open(path, "r+b", buffering=0) as f:
        for offset in range(len(original)):  # every byte: parsing never comes first
            f.seek(offset)
            f.write(bytes([original[offset] ^ 0x01]))
            _refused(bundle, keys[1], CHECKSUM, "manifest.json", "does not verify")
            f.seek(offset)
            f.write(original[offset:offset + 1])
    assert path.read_bytes() == original
    _core.verify_bundle(str(bundle), str(keys[1]))


def test_a_flipped_byte_in_any_artifact_is_refused(bundle, keys):
    for artifact in _artifacts(bundle):
        path = bundle / artifact["path"]
        original = path.read_bytes()
        n = len(original)
        for offset in sorted({0, 1, n // 3, n // 2, 2 * n // 3, n - 2, n - 1}):
            data = bytearray(original)
            data[offset] ^= 0x80
            path.write_bytes(bytes(data))
            for key in (keys[1], None):  # signed or not, the checksum refuses it
                _refused(bundle, key, CHECKSUM, artifact["name"], artifact["path"], "altered")
        path.write_bytes(original)
    _core.verify_bundle(str(bundle), str(keys[1]))


def test_an_altered_signature_is_refused(bundle, keys):
    path = bundle / SIGNATURE_FILE
    original = path.read_bytes()
    for offset in (0, 31, 63):
        data = bytearray(original)
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))
        _refused(bundle, keys[1], CHECKSUM, SIGNATURE_FILE)
    path.write_bytes(original[:-1])
    _refused(bundle, keys[1], CHECKSUM, SIGNATURE_FILE, "63 bytes")
    path.write_bytes(original + b"\n")
    _refused(bundle, keys[1], CHECKSUM, SIGNATURE_FILE, "longer")


@pytest.mark.parametrize("target", ["", "manifest.json", SIGNATURE_FILE, "trees", "trees/model.so",
                                    "trees/model.ubj"])
def test_writable_by_others_is_refused(bundle, keys, target):
    path = bundle / target if target else bundle
    mode = stat.S_IMODE(path.stat().st_mode)
    os.chmod(path, mode | stat.S_IWOTH)
    try:
        for key in (keys[1], None):
            _refused(bundle, key, INVALID, str(path), "writable by others", f"{mode | stat.S_IWOTH:04o}")
    finally:
        os.chmod(path, mode)
    os.chmod(path, mode | stat.S_IWGRP)  # group write: the operator's choice, allowed
    _core.verify_bundle(str(bundle), str(keys[1]))


def test_an_unsigned_bundle_is_refused_when_a_key_is_configured(bundle, keys):
    (bundle / SIGNATURE_FILE).unlink()
    _refused(bundle, keys[1], INVALID, SIGNATURE_FILE, "missing")
    _core.verify_bundle(str(bundle))  # without a key it still loads


def test_the_wrong_key_or_a_bad_key_file_is_refused(bundle, keys, tmp_path):
    _refused(bundle, keys[2], CHECKSUM, str(keys[2]), "does not verify")
    _refused(bundle, tmp_path / "nowhere.pem", INVALID, "nowhere.pem")
    (tmp_path / "junk.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    _refused(bundle, tmp_path / "junk.pem", INVALID, "junk.pem", "not a PEM public key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ec.pem").write_bytes(ec_key)
    _refused(bundle, tmp_path / "ec.pem", INVALID, "ec.pem", "not an ed25519")
    shutil.copy(keys[1], tmp_path / "open.pem")
    os.chmod(tmp_path / "open.pem", 0o666)
    _refused(bundle, tmp_path / "open.pem", INVALID, "open.pem", "writable by others")


def test_symlinks_leaving_the_bundle_are_refused(bundle, keys, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    so = bundle / "trees" / "model.so"
    shutil.copy2(so, outside / "model.so")  # the very same bytes: only the link is wrong
    so.unlink()
    so.symlink_to(outside / "model.so")
    for key in (keys[1], None):
        _refused(bundle, key, INVALID, str(so), "outside the bundle")
    so.unlink()
    shutil.copy2(outside / "model.so", so)

    shutil.move(bundle / "trees", outside / "trees")  # a directory on the way leaves it
    (bundle / "trees").symlink_to(outside / "trees")
    _refused(bundle, keys[1], INVALID, "outside the bundle")
    (bundle / "trees").unlink()
    shutil.move(outside / "trees", bundle / "trees")

    so.rename(bundle / "trees" / "real.so")  # a link that stays inside is fine
    so.symlink_to("real.so")
    _core.verify_bundle(str(bundle), str(keys[1]))


def test_the_tree_library_checks_the_bytes_it_loads(bundle):
    trees = next(a for a in _artifacts(bundle) if a["name"] == "trees")
    path = str(bundle / trees["path"])
    assert _core.TreeLibrary(path, expected_sha256=trees["sha256"]).num_features == len(payments()[1]["features"])
    with pytest.raises(FraudError) as error:
        _core.TreeLibrary(path, expected_sha256="0" * 64)
    assert error.value.status == CHECKSUM
    assert path in str(error.value) and "altered after verification" in str(error.value)
    _core.TreeLibrary(path)  # no expectation: no check


def test_signing_refuses_a_bundle_that_does_not_verify(bundle, keys):
    from libfraud.export import BundleError
    so = bundle / "trees" / "model.so"
    data = bytearray(so.read_bytes())
    data[len(data) // 2] ^= 0x01
    so.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="refusing to sign"):
        sign_bundle(bundle, keys[0])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "libfraud", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_keygen_and_sign_commands(bundle, tmp_path):
    private, public = tmp_path / "new.pem", tmp_path / "new.pub.pem"
    done = _cli("keygen", "--private", private, "--public", public)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    again = _cli("keygen", "--private", private, "--public", public)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    _refused(bundle, public, CHECKSUM, "does not verify")  # signed by the fixture's key
    done = _cli("sign", bundle, "--key", private)
    assert done.returncode == 0, done.stderr
    _core.verify_bundle(str(bundle), str(public))
    if shutil.which("openssl"):  # the format is plain ed25519: OpenSSL's own tool agrees
        check = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin",
                                "-in", bundle / "manifest.json", "-sigfile", bundle / SIGNATURE_FILE],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
