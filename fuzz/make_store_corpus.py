#!/usr/bin/env python3
"""make_store_corpus.py - writes the seed corpora of the store-object fuzz
targets: corpus-volmeta/ (volume.json), corpus-lease/ (the lease),
corpus-snapshot/ (a name-selector byte, then a snapshot object or a clone
marker), and corpus-s3creds/ (a parser-selector byte, then what a credential
source or an S3 error answers). Valid objects of each shape the code writes, plus the crafted ones
that once got past validation. Run it again after changing it; the files
are committed."""
import base64
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
U1 = "71679efc-df84-4f0f-bc64-5339c4039233"
U2 = "0b7e3c4d-2f1a-4e6b-9c8d-7a6b5c4d3e2f"
MAN = "0000000000000002-0000000000000011"


def b64(n, fill):
    return base64.b64encode(bytes([fill]) * n).decode()


KW = {"cipher": "aes-256-gcm", "kdf": "pbkdf2-sha256", "iterations": 600000,
      "salt": b64(16, 1), "nonce": b64(12, 2), "wrapped_key": b64(32, 3), "tag": b64(16, 4)}
KW_GENS = dict(KW, gen=2, keys=[{"gen": 3, "nonce": b64(12, 5), "wrapped_key": b64(32, 6),
                                  "tag": b64(16, 7)}])
ROOT = {"block_size": 131072, "compression": "none", "created_ms": 1796617085112,
        "data_uuid": U1, "encryption": None, "format": 1, "size": 2097152, "uuid": U1}


def vol(**kw):
    d = dict(ROOT)
    for k, v in kw.items():
        if v is None and k in ("data_uuid", "created_ms", "encryption", "compression"):
            d.pop(k, None)
        else:
            d[k] = v
    return d


def clone(lineage, snap="s1", man=MAN, **kw):
    return vol(uuid=U2, lineage=lineage,
               parent={"name": lineage[-1] if lineage else "root", "snapshot": snap,
                       "manifest": man}, **kw)


VOLMETA = {
    "root": vol(),
    "root_minimal": vol(data_uuid=None, created_ms=None, encryption=None, compression=None),
    "root_zstd_encrypted": vol(compression="zstd", encryption=KW, block_size=4096),
    "root_key_generations": vol(encryption=KW_GENS),
    "clone": clone(["root"]),
    "clone_of_live_state": clone(["root"], snap="@clone-fuzzvol", man=None),
    "clone_deep": clone(["a", "b", "c"], block_size=1 << 22),
    "tombstone": dict(clone(["root"]), deleted=True),
    # refused: each once got past, or is a consistency rule
    "bad_lineage_empty_with_parent": clone([], man="0000000000000001-0000000000000001"),
    "bad_parent_not_last": vol(uuid=U2, lineage=["a", "b"],
                               parent={"name": "a", "snapshot": "s1", "manifest": MAN}),
    "bad_lineage_self": clone(["fuzzvol"]),
    "bad_lineage_repeated": clone(["a", "b", "a"]),
    "bad_lineage_without_parent": vol(lineage=["a"]),
    "bad_root_data_uuid": vol(data_uuid=U2),
    "bad_parent_snapshot_path": clone(["root"], snap="../../x"),
    "bad_deleted_string": dict(vol(), deleted="yes"),
    "bad_key_gen_without_keys": vol(encryption=dict(KW, gen=2)),
    "bad_key_gens_not_consecutive": vol(encryption=dict(KW_GENS, gen=1)),
}

LEASE = {
    "held": {"epoch": 3, "fences": {"1": 17, "2": 0}, "format": 1, "heartbeat_ms": 1796617085191,
             "node_id": "3d1219c7c4c5404aaa1f6d2a48adfda4", "state": "held"},
    "released": {"epoch": 1, "fences": {}, "format": 1, "heartbeat_ms": 1796617085191,
                 "node_id": "node-a", "state": "released"},
    "no_fences": {"epoch": 9, "format": 1, "heartbeat_ms": 0, "node_id": "n", "state": "held"},
    "bad_fence_same_epoch_twice": {"epoch": 3, "fences": {"1": 5, "01": 9}, "format": 1,
                                   "heartbeat_ms": 1, "node_id": "n", "state": "held"},
    "bad_epoch_in_origin_bits": {"epoch": 1 << 56, "fences": {}, "format": 1,
                                 "heartbeat_ms": 1, "node_id": "n", "state": "held"},
    "bad_node_control": {"epoch": 1, "fences": {}, "format": 1, "heartbeat_ms": 1,
                         "node_id": "a\nb", "state": "held"},
    "bad_fence_not_earlier": {"epoch": 2, "fences": {"2": 1}, "format": 1, "heartbeat_ms": 1,
                              "node_id": "n", "state": "held"},
}

# first byte: 0 "s1", 1 "@clone-child", 2 "@fenced-7", 3 "other" (fuzz_snapshot.c)
SNAPSHOT = {
    "snap": (0, {"created_ms": 1796617085112, "manifest": MAN, "name": "s1", "size": 2097152}),
    "snap_empty_volume": (0, {"created_ms": 1, "manifest": None, "name": "s1", "size": 512}),
    "snap_clone_implicit": (1, {"created_ms": 1, "manifest": MAN, "name": "@clone-child",
                                "size": 1 << 30}),
    "snap_fenced_hold": (2, {"created_ms": 1, "manifest": MAN, "name": "@fenced-7",
                             "size": 4096}),
    "marker": (0, {"created_ms": 1796617085112, "snapshot": "s1"}),
    "marker_implicit": (3, {"created_ms": 1, "snapshot": "@clone-child"}),
    "bad_snap_name_mismatch": (3, {"created_ms": 1, "manifest": MAN, "name": "s1", "size": 512}),
    "bad_snap_size_513": (0, {"manifest": MAN, "name": "s1", "size": 513}),
    "bad_marker_path": (0, {"snapshot": "../../lease"}),
}

# first byte: the parser (fuzz_s3_creds.c): 0 IMDS/container JSON, 1 STS XML,
# 2 credentials file ("default"), 3 config file ("prod"), 4 time + role list,
# 5 S3 error naming a region
S3CREDS = {
    'error_redirect': (5, '<Error><Code>PermanentRedirect</Code><Message>m</Message><Endpoint>b.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>b</Bucket></Error>'),
    'error_region': (5, "<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region><RequestId>R</RequestId></Error>"),
    'ini_bad': (2, 'key = outside\n[default\n[]\n'),
    'ini_config': (3, '[default]\nregion = us-east-1\n[profile   prod]\naws_access_key_id = AKIDCONFIGPROD\naws_secret_access_key = s\naws_session_token = t\n[profile sso]\nsso_start_url = https://x\n'),
    'ini_credentials': (2, '# c\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s/x+1\ns3 =\n    addressing_style = path\n[prod]\naws_access_key_id:AKIDPROD\r\naws_secret_access_key=x\r\n'),
    'json_dup': (0, '{"AccessKeyId":"A","AccessKeyId":"B"}'),
    'json_ecs': (0, '{"RoleArn":"arn:aws:iam::1:role/r","AccessKeyId":"ASIAECSCABCDEF123456","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"2099-11-14T22:20:00Z"}'),
    'json_failure': (0, '{"Code":"Failure","Message":"no"}'),
    'json_imds': (0, '{"Code":"Success","LastUpdated":"2023-11-14T22:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDSABCDEF123456","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","Token":"IQoJb3JpZ2luX2VjE+/=","Expiration":"2099-11-14T23:13:20Z"}'),
    'role_list': (4, 'glidefs-test-role\nother'),
    'sts_error': (1, '<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>bad</Message></Error><RequestId>r</RequestId></ErrorResponse>'),
    'sts_ok': (1, '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><SessionToken>FwoGZXIvYXdzE+/=</SessionToken><SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey><Expiration>2099-11-14T23:13:20Z</Expiration><AccessKeyId>ASIASTSWABCDEF123456</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>'),
    'sts_xxe': (1, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>&e;</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>'),
    'time_and_role': (4, '2023-11-14T22:13:20.123Z'),
    # what a parser must refuse: a key with a control character, a region
    # that is not one (a path, upper case): the harness aborts if either passes
    'json_bad_akid_control': (0, '{"Code":"Success","AccessKeyId":"ASIA\\u0001BAD","SecretAccessKey":"s","Token":"t","Expiration":"2099-11-14T23:13:20Z"}'),
    'error_bad_region': (5, '<Error><Code>PermanentRedirect</Code><Message>m</Message><Region>../EU-west-1</Region><Endpoint>b.s3/x</Endpoint></Error>'),
}


def write(sub, items):
    d = os.path.join(HERE, sub)
    os.makedirs(d, exist_ok=True)
    for name, data in items.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(items), d))


write("corpus-volmeta", {k: json.dumps(v, sort_keys=True).encode() for k, v in VOLMETA.items()})
write("corpus-lease", {k: json.dumps(v, sort_keys=True).encode() for k, v in LEASE.items()})
write("corpus-snapshot", {k: bytes([sel]) + json.dumps(v, sort_keys=True).encode()
                          for k, (sel, v) in SNAPSHOT.items()})
write("corpus-s3creds", {k: bytes([sel]) + v.encode() for k, (sel, v) in S3CREDS.items()})
