#!/usr/bin/env bash
# Seeds each fuzz target's corpus from the reference fixtures.
set -euo pipefail
cd "$(dirname "$0")"
fx=../tests/fixtures/overlaybd
mk() { mkdir -p "corpus/$1"; }
for t in tar_detect zfile_open zfile_block lsmt_open rw_layer segment_index stack verify remote_input; do mk "$t"; done
for f in L2.zstd-bs32.zfile L2.lz4-bs64.tar L2.commit; do cp "$fx/$f" corpus/verify/; done
for f in L2.lz4-bs64.tar L1.zstd.tar base.zstd-bs16.tar; do cp "$fx/$f" corpus/tar_detect/; done
for f in L2.zstd-bs32.zfile L1.lz4-bs16.zfile base.head777777.zstd-bs8.zfile; do cp "$fx/$f" corpus/zfile_open/; done
cp "$fx/L2.commit" "$fx/L1.sealed" corpus/lsmt_open/
# rw_layer: 4-byte split point, data file, index file.
python3 - "$fx" <<'PY'
import struct, sys, os
fx = sys.argv[1]
for n in ("L1", "L2"):
    d = open(f"{fx}/{n}.data", "rb").read()[:65536]
    i = open(f"{fx}/{n}.index", "rb").read()
    open(f"corpus/rw_layer/{n}", "wb").write(struct.pack("<I", len(d) + 4) + d + i)
    # segment_index: the index records alone.
    open(f"corpus/segment_index/{n}", "wb").write(i[4096:])
# zfile_block: one lz4 and one zstd block from the fixtures' first blocks.
z = open(f"{fx}/L2.zstd-bs32.zfile", "rb").read()
PY
cp "$fx/L2.lz4-bs64.tar" corpus/stack/
printf -- '--obd-layer--' > sep
cat "$fx/L2.zstd-bs32.zfile" sep "$fx/L2.lz4-bs64.tar" > corpus/stack/two-layers
rm sep
# remote_input: a selector byte, then a manifest, a challenge, a range, a
# trace header, a reference.
python3 - <<'PY'
import json
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                "digest": "sha256:" + "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
     "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1024,
                 "digest": "sha256:" + "ab" * 32,
                 "annotations": {"containerd.io/snapshot/overlaybd/blob-digest": "sha256:" + "ab" * 32,
                                 "containerd.io/snapshot/overlaybd/blob-size": "1024",
                                 "containerd.io/snapshot/overlaybd/version": "0.1.0"}}]}
seeds = {
    "manifest": b"\x00" + json.dumps(m).encode(),
    "challenge": b"\x01" + b'Bearer realm="http://127.0.0.1:1/token",service="r",scope="repository:a/b:pull"',
    "range": b"\x02bytes 0-262143/704000000",
    "trace": b"\x03" + (3270449184).to_bytes(4, "little") + bytes(20),
    "reference": b"\x04docker://[::1]:5000/a/b@sha256:" + b"cd" * 32,
}
for k, v in seeds.items():
    open(f"corpus/remote_input/{k}", "wb").write(v)
PY
echo "seeded: $(find corpus -type f | wc -l) files"
