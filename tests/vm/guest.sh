#!/bin/sh
# The VM test checks, run by /init inside the guest (busybox sh).
# Every check prints exactly one line: "PASS: <name>" or "FAIL: <name>: <why>".
# Inputs (made by tests/vm.rs): /fx (fixtures and test images), /vm/stacks,
# /vm/ext4.sums, /vm/ext4.gone, /vm/corrupt; obd is /bin/obd.

FX=/fx
export OBD_RUN_DIR=/run/obd
# GNU sha256sum (when the host provided it) hashes a third faster than busybox's.
SHA256SUM=sha256sum
[ -x /usr/bin/sha256sum ] && SHA256SUM=/usr/bin/sha256sum

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; }

# wait_for SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds.
wait_for() {
    n=$(($1 * 10)); shift
    while [ "$n" -gt 0 ]; do
        "$@" 2>/dev/null && return 0
        sleep 0.1; n=$((n - 1))
    done
    return 1
}

no_ublk_devices() { ! ls /dev/ublkb* /dev/ublkc* >/dev/null 2>&1; }
gone() { [ ! -e "$1" ]; }
dead() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# A field of the first device in `obd list --json` (numbers and strings).
list_field() {
    obd list --json | sed -n "s/^ *\"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" | head -n 1
}

load_modules() {  # load_modules [except]
    while read -r m; do
        [ "$m" = "$1" ] && continue
        insmod "/lib/modules/$m.ko" || echo "insmod $m failed"
    done < /lib/modules/order
}

check_preflight() {
    out=$(obd attach "$FX/L0.commit" 2>&1); rc=$?
    if [ "$rc" = 2 ] && echo "$out" | grep -q "ublk_drv" && [ "$(echo "$out" | wc -l)" = 1 ]; then
        pass preflight
    else
        fail preflight "exit $rc: $out"
    fi
}

# check_stack NAME SHA256 MODE UPPER_DATA UPPER_INDEX LAYER...
# MODE: ro (no upper layer), rw (--upper, writable), upper-ro (--upper --read-only).
check_stack() {
    name=$1; want=$2; mode=$3; ud=$4; ui=$5; shift 5
    set -- $(for l in "$@"; do echo "$FX/$l"; done)
    wantro=1
    if [ "$mode" != ro ]; then
        # Attach a copy: a writable device may write to its upper layer.
        cp "$FX/$ud" "/tmp/$name.data" && cp "$FX/$ui" "/tmp/$name.index"
        set -- --upper "/tmp/$name.data" "/tmp/$name.index" "$@"
        if [ "$mode" = upper-ro ]; then set -- --read-only "$@"; else wantro=0; fi
    fi
    # s_mixed stacks a sealed-in-place L1 under an L2 committed over L1.commit:
    # its parent-uuid chain is broken on purpose.
    [ "$name" = s_mixed ] && set -- --ignore-chain "$@"
    dev=$(obd attach "$@" 2>"/tmp/$name.err") || { fail "stack:$name" "attach: $(cat /tmp/$name.err)"; return; }
    size=$(blockdev --getsize64 "$dev")
    ro=$(blockdev --getro "$dev")
    # Large readahead: fewer, bigger requests (each costs dearly under TCG).
    blockdev --setra 16384 "$dev"
    got=$($SHA256SUM "$dev" | cut -d' ' -f1)
    obd detach -q "$dev" 2>"/tmp/$name.err" || { fail "stack:$name" "detach: $(cat /tmp/$name.err)"; return; }
    if [ "$got" != "$want" ]; then
        fail "stack:$name" "sha256 of $dev is $got, the manifest says $want"
    elif [ "$size" != 1073741824 ] || [ "$ro" != "$wantro" ]; then
        fail "stack:$name" "size $size read-only $ro ($mode)"
    elif ! wait_for 5 gone "$dev"; then
        fail "stack:$name" "$dev still there after detach"
    else
        pass "stack:$name"
    fi
}

check_stacks() {
    # Two at a time: hashing dominates and the VM has two CPUs.
    running=0
    while read -r line; do
        [ -z "$line" ] && continue
        check_stack $line &
        running=$((running + 1))
        if [ "$running" -ge 2 ]; then wait; running=0; fi
    done < /vm/stacks
    wait
}

check_ext4() {
    dev=$(obd attach "$FX/ext4.L0.zfile" "$FX/ext4.L1.zfile" 2>/tmp/ext4.err) || { fail ext4-ro "attach: $(cat /tmp/ext4.err)"; return; }
    if ! mount -t ext4 -o ro,noload "$dev" /mnt 2>/tmp/ext4.err; then
        fail ext4-ro "mount: $(cat /tmp/ext4.err)"; obd detach -q "$dev"; return
    fi
    (cd /mnt && sha256sum -c /vm/ext4.sums) >/tmp/ext4.sums.out 2>&1; sums=$?
    present=""
    while read -r f; do [ -e "/mnt/$f" ] && present="$present $f"; done < /vm/ext4.gone
    nfiles=$(find /mnt -type f | grep -v lost+found | wc -l)
    # Detaching a mounted device is refused.
    out=$(obd detach "$dev" 2>&1); drc=$?
    umount /mnt
    obd detach -q "$dev" 2>/tmp/ext4.err || { fail ext4-ro "detach: $(cat /tmp/ext4.err)"; return; }
    if [ "$sums" != 0 ]; then
        fail ext4-ro "checksums: $(grep -v ': OK' /tmp/ext4.sums.out | head -n 5 | tr '\n' ' ')"
    elif [ -n "$present" ]; then
        fail ext4-ro "deleted files are back:$present"
    elif [ "$nfiles" != "$(wc -l < /vm/ext4.sums)" ]; then
        fail ext4-ro "$nfiles files on the filesystem, $(wc -l < /vm/ext4.sums) expected"
    elif [ "$drc" != 2 ] || ! echo "$out" | grep -q mounted; then
        fail ext4-ro "detaching the mounted device: exit $drc: $out"
    else
        pass ext4-ro
    fi
}

# A writable upper layer over the ext4 stack: mount read-write, change
# files, commit the layer, and find the changes in the new read-only stack.
check_rw() {
    obd create -q -f --size 0 /tmp/up.data /tmp/up.index || { fail rw "obd create"; return; }
    rm -f /tmp/L2.commit
    dev=$(obd attach --upper /tmp/up.data /tmp/up.index "$FX/ext4.L0.zfile" "$FX/ext4.L1.zfile" 2>/tmp/rw.err) \
        || { fail rw "attach: $(cat /tmp/rw.err)"; return; }
    ro=$(blockdev --getro "$dev")
    if ! mount -t ext4 "$dev" /mnt 2>/tmp/rw.err; then
        fail rw "mount read-write: $(cat /tmp/rw.err); server log: $(tail -n 3 /run/obd/${dev#/dev/ublkb}.log | tr '\n' ' ')"
        obd detach -q "$dev"; return
    fi
    mkdir -p /mnt/new/dir
    dd if=/dev/urandom of=/mnt/new/dir/random.bin bs=64k count=24 2>/dev/null
    cp /mnt/docs/a.txt /mnt/new/a-copy.txt
    echo "written through ublk" > /mnt/hello.txt
    rm /mnt/keep/big.bin /mnt/docs/b.txt
    # Discards of the freed blocks reach the upper layer as zeroed extents.
    fstrim /mnt 2>/tmp/rw.trim; trim=$?
    (cd /mnt && find . -type f ! -path './lost+found/*' | sort | xargs $SHA256SUM) > /tmp/rw.sums
    sync
    umount /mnt
    obd detach -q "$dev" || { fail rw "detach"; return; }
    records=$(( ($(wc -c < /tmp/up.index) - 4096) / 16 ))
    obd commit -q --base "$FX/ext4.L0.zfile" --base "$FX/ext4.L1.zfile" /tmp/up.data /tmp/up.index /tmp/L2.commit 2>/tmp/rw.err || { fail rw "commit: $(cat /tmp/rw.err)"; return; }
    dev=$(obd attach "$FX/ext4.L0.zfile" "$FX/ext4.L1.zfile" /tmp/L2.commit 2>/tmp/rw.err) \
        || { fail rw "attach with the new layer: $(cat /tmp/rw.err)"; return; }
    mount -t ext4 -o ro,noload "$dev" /mnt 2>/tmp/rw.err || { fail rw "mount: $(cat /tmp/rw.err)"; obd detach -q "$dev"; return; }
    (cd /mnt && $SHA256SUM -c /tmp/rw.sums) >/tmp/rw.check 2>&1; sums=$?
    nfiles=$(find /mnt -type f ! -path '/mnt/lost+found/*' | wc -l)
    big=$([ -e /mnt/keep/big.bin ] && echo present)
    umount /mnt
    obd detach -q "$dev"
    if [ "$ro" != 0 ]; then
        fail rw "the device is read-only"
    elif [ "$records" -lt 1 ]; then
        fail rw "nothing reached the upper layer's index"
    elif [ "$sums" != 0 ]; then
        fail rw "after commit: $(grep -v ': OK' /tmp/rw.check | head -n 5 | tr '\n' ' ')"
    elif [ "$nfiles" != "$(wc -l < /tmp/rw.sums)" ] || [ -n "$big" ]; then
        fail rw "$nfiles files after commit, $(wc -l < /tmp/rw.sums) written (big.bin: ${big:-gone})"
    elif [ "$trim" != 0 ]; then
        fail rw "fstrim: $(cat /tmp/rw.trim)"
    else
        pass rw
    fi
}

check_corrupt() {
    read -r file bad good < /vm/corrupt
    dev=$(obd attach "$FX/$file" 2>/tmp/c.err) || { fail corrupt "attach: $(cat /tmp/c.err)"; return; }
    id=${dev#/dev/ublkb}
    dd if="$dev" of=/tmp/c.bad bs=512 skip="$bad" count=1 iflag=direct 2>/tmp/c.dd; badrc=$?
    dd if="$dev" of=/tmp/c.good bs=512 skip="$good" count=1 iflag=direct 2>/dev/null; goodrc=$?
    # Through the page cache, as a plain reader would.
    dd if="$dev" of=/dev/null bs=1M count=4 skip=$((bad / 2048)) 2>/dev/null; bufrc=$?
    logged=$(grep -c "crc32c mismatch" "/run/obd/$id.log" 2>/dev/null)
    obd detach -q "$dev"
    if [ "$badrc" = 0 ]; then
        fail corrupt "reading the corrupted block succeeded ($(wc -c < /tmp/c.bad) bytes)"
    elif ! grep -qi "input/output error" /tmp/c.dd; then
        fail corrupt "dd failed without an I/O error: $(cat /tmp/c.dd)"
    elif [ "$goodrc" != 0 ]; then
        fail corrupt "an intact block failed too"
    elif [ "$bufrc" = 0 ]; then
        fail corrupt "a buffered read over the corrupted block succeeded"
    elif [ "${logged:-0}" = 0 ]; then
        fail corrupt "the server log does not name the crc32c mismatch: $(head -n 3 /run/obd/$id.log)"
    else
        pass corrupt
    fi
}

check_sigterm() {
    obd attach --foreground "$FX/L0.lz4.tar" "$FX/L1.lz4-bs16.zfile" >/tmp/fg.out 2>/tmp/fg.err &
    pid=$!
    if ! wait_for 30 grep -q /dev/ublkb /tmp/fg.out; then
        fail sigterm "foreground attach did not print a device: $(cat /tmp/fg.err)"; kill -9 $pid; return
    fi
    dev=$(cat /tmp/fg.out)
    # Large reads start the decompression thread pool: its threads must not
    # take the SIGTERM meant for the server.
    dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null || { fail sigterm "reading $dev"; kill -9 $pid; return; }
    [ -e "$OBD_RUN_DIR/${dev#/dev/ublkb}.json" ] || { fail sigterm "no run-state record"; kill -9 $pid; return; }
    kill -TERM $pid
    wait $pid; rc=$?
    if [ "$rc" != 0 ]; then
        fail sigterm "foreground server exited $rc after SIGTERM: $(cat /tmp/fg.err)"
    elif ! wait_for 10 no_ublk_devices; then
        fail sigterm "left behind: $(ls /dev/ublkb* /dev/ublkc* 2>&1 | tr '\n' ' ')"
    elif [ -e "$OBD_RUN_DIR/${dev#/dev/ublkb}.json" ]; then
        fail sigterm "run-state record left behind"
    else
        # The background server stops on SIGTERM too.
        dev=$(obd attach "$FX/L0.lz4.tar") || { fail sigterm "background attach"; return; }
        dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null
        spid=$(list_field pid)
        kill -TERM "$spid"
        if wait_for 30 no_ublk_devices && wait_for 10 dead "$spid"; then
            pass sigterm
        else
            fail sigterm "background server $spid did not tear down $dev"
        fi
    fi
}

check_kill9() {
    dev=$(obd attach "$FX/L0.commit" 2>/tmp/k.err) || { fail kill9 "attach: $(cat /tmp/k.err)"; return; }
    id=${dev#/dev/ublkb}
    spid=$(list_field pid)
    kill -9 "$spid"
    wait_for 10 dead "$spid"
    state=$(list_field state)
    out=$(obd detach "$id" 2>&1); rc=$?
    obd detach --force "$id" >/tmp/k.out 2>&1; frc=$?
    if [ "$state" != dead ]; then
        fail kill9 "list says $state for a device whose server was killed"
    elif [ "$rc" != 2 ] || ! echo "$out" | grep -q -- "--force"; then
        fail kill9 "plain detach of a dead device: exit $rc: $out"
    elif [ "$frc" != 0 ]; then
        fail kill9 "detach --force: exit $frc: $(cat /tmp/k.out)"
    elif ! wait_for 10 no_ublk_devices; then
        fail kill9 "left behind: $(ls /dev/ublkb* /dev/ublkc* 2>&1 | tr '\n' ' ')"
    elif [ -n "$(list_field id)" ]; then
        fail kill9 "obd list still shows a device"
    else
        pass kill9
    fi
}

# A writable device whose server is killed mid-write: what a FLUSH
# acknowledged (dd conv=fsync) survives, the upper layer opens and commits.
check_upper_crash() {
    obd create -q -f --size 0 /tmp/k9.data /tmp/k9.index || { fail upper-crash "obd create"; return; }
    dev=$(obd attach --upper /tmp/k9.data /tmp/k9.index "$FX/L0.commit" 2>/tmp/k9.err) \
        || { fail upper-crash "attach: $(cat /tmp/k9.err)"; return; }
    spid=$(list_field pid)
    dd if=/dev/urandom of=/tmp/k9.pat bs=1M count=4 2>/dev/null
    want=$($SHA256SUM < /tmp/k9.pat | cut -d' ' -f1)
    dd if=/tmp/k9.pat of="$dev" bs=1M seek=8 oflag=direct conv=fsync 2>/tmp/k9.err; wrc=$?
    # Unflushed writes in flight when the server dies.
    dd if=/dev/urandom of="$dev" bs=64k seek=1024 count=4096 oflag=direct 2>/dev/null &
    ddpid=$!
    sleep 1
    kill -9 "$spid"
    wait_for 10 dead "$spid"
    wait_for 30 dead "$ddpid" || kill -9 "$ddpid"
    obd detach --force "${dev#/dev/ublkb}" >/tmp/k9.out 2>&1; frc=$?
    wait_for 10 no_ublk_devices
    obd commit -q --base "$FX/L0.commit" /tmp/k9.data /tmp/k9.index /tmp/k9.commit 2>/tmp/k9.cerr; crc=$?
    got=none
    if [ "$crc" = 0 ] && dev=$(obd attach "$FX/L0.commit" /tmp/k9.commit 2>>/tmp/k9.cerr); then
        got=$(dd if="$dev" bs=1M skip=8 count=4 iflag=direct 2>/dev/null | $SHA256SUM | cut -d' ' -f1)
        obd detach -q "$dev"
    fi
    if [ "$wrc" != 0 ]; then
        fail upper-crash "flushed write: $(cat /tmp/k9.err)"
    elif [ "$frc" != 0 ]; then
        fail upper-crash "detach --force: $(cat /tmp/k9.out)"
    elif [ "$crc" != 0 ]; then
        fail upper-crash "commit after the crash: $(cat /tmp/k9.cerr)"
    elif [ "$got" != "$want" ]; then
        fail upper-crash "flushed data reads back as $got, wrote $want"
    else
        pass upper-crash
    fi
}

check_config() {
    cat > /tmp/config.json <<EOF
{"repoBlobUrl": "https://registry.invalid/v2/x/blobs",
 "lowers": [{"file": "$FX/L0.commit"}, {"dir": "/tmp/l1dir"}, {"file": "$FX/L2.lz4-bs64.tar"}],
 "resultFile": "/tmp/config.result"}
EOF
    mkdir -p /tmp/l1dir && cp "$FX/L1.commit" /tmp/l1dir/overlaybd.commit
    dev=$(obd attach --config /tmp/config.json 2>/tmp/cfg.err) || { fail config "attach: $(cat /tmp/cfg.err)"; return; }
    result=$(cat /tmp/config.result)
    layers=$(obd list --json | grep -c '\.commit"\|\.tar"')
    obd detach -q "$dev"
    # A config naming a missing layer fails, and says so in the result file.
    sed 's|/tmp/l1dir|/tmp/nowhere|' /tmp/config.json > /tmp/bad.json
    sed -i 's|/tmp/config.result|/tmp/bad.result|' /tmp/bad.json
    obd attach --config /tmp/bad.json >/dev/null 2>&1; badrc=$?
    bad=$(cat /tmp/bad.result 2>/dev/null)
    if [ "$result" != success ]; then
        fail config "result file says '$result'"
    elif [ "$layers" != 3 ]; then
        fail config "obd list shows $layers layers"
    elif [ "$badrc" != 2 ] || [ "${bad#failed:}" = "$bad" ]; then
        fail config "bad config: exit $badrc, result '$bad'"
    else
        pass config
    fi
}

check_list() {
    a=$(obd attach --queues 2 --depth 32 "$FX/L0.commit" "$FX/L1.commit") || { fail list "attach a"; return; }
    b=$(obd attach --json "$FX/L2.zstd-bs32.zfile" > /tmp/b.json && sed -n 's/^ *"device": "\(.*\)",$/\1/p' /tmp/b.json)
    [ -e "$b" ] || { fail list "attach --json gave no device: $(cat /tmp/b.json)"; obd detach -q "$a"; return; }
    obd list > /tmp/list.txt
    obd list --json > /tmp/list.json
    live=$(grep -c '"state": "live"' /tmp/list.json)
    queues=$(cat /sys/block/${a#/dev/}/mq/*/nr_tags 2>/dev/null | head -n 1)
    nq=$(ls -d /sys/block/${a#/dev/}/mq/* | wc -l)
    obd detach -q "$a"; obd detach -q "$b"
    if [ "$live" != 2 ]; then
        fail list "$live live devices in: $(cat /tmp/list.json)"
    elif ! grep -q "L2.zstd-bs32.zfile" /tmp/list.txt; then
        fail list "the table lacks the layers: $(cat /tmp/list.txt)"
    elif [ "$nq" != 2 ] || [ "$queues" != 32 ]; then
        fail list "$a has $nq queues of depth $queues, expected 2 of 32"
    elif ! wait_for 10 no_ublk_devices; then
        fail list "devices left after detach"
    else
        pass list
    fi
}

# The kernel's own NBD client on an `obd serve` export: mount the ext4 stack
# read-write through /dev/nbd0 with a writable upper layer, check its files,
# write one, stop the export (which flushes the upper layer), commit it, and
# find the file again in the new stack attached through ublk.
check_nbd() {
    if ! command -v nbd-client >/dev/null; then
        fail nbd "no nbd-client in the guest (the host lacks the nbd-client package)"; return
    fi
    [ -b /dev/nbd0 ] || { fail nbd "no /dev/nbd0 (the nbd module did not load)"; return; }
    obd create -q -f --size 0 /tmp/nup.data /tmp/nup.index || { fail nbd "obd create"; return; }
    obd serve -q --socket /tmp/nbd.sock --upper /tmp/nup.data /tmp/nup.index \
        "$FX/ext4.L0.zfile" "$FX/ext4.L1.zfile" >/tmp/nbd.uri 2>/tmp/nbd.err \
        || { fail nbd "serve: $(cat /tmp/nbd.err)"; return; }
    if ! nbd-client -u /tmp/nbd.sock /dev/nbd0 -b 4096 >/tmp/nbd.cl 2>&1; then
        fail nbd "nbd-client: $(tr '\n' ' ' < /tmp/nbd.cl)"; obd detach -q nbd0; return
    fi
    listed=$(obd list --format plain | grep -c '^nbd0 ')
    if ! mount -t ext4 /dev/nbd0 /mnt 2>/tmp/nbd.err; then
        fail nbd "mount: $(cat /tmp/nbd.err)"; nbd-client -d /dev/nbd0 >/dev/null 2>&1; obd detach -q nbd0; return
    fi
    (cd /mnt && sha256sum -c /vm/ext4.sums) >/tmp/nbd.sums 2>&1; sums=$?
    echo "written through nbd" > /mnt/nbd.txt
    sync
    umount /mnt
    nbd-client -d /dev/nbd0 >/dev/null 2>&1
    obd detach -q nbd0 2>/tmp/nbd.err || { fail nbd "detach: $(cat /tmp/nbd.err)"; return; }
    obd commit -q --base "$FX/ext4.L0.zfile" --base "$FX/ext4.L1.zfile" /tmp/nup.data /tmp/nup.index /tmp/N2.commit 2>/tmp/nbd.err \
        || { fail nbd "commit: $(cat /tmp/nbd.err)"; return; }
    dev=$(obd attach "$FX/ext4.L0.zfile" "$FX/ext4.L1.zfile" /tmp/N2.commit 2>/tmp/nbd.err) \
        || { fail nbd "attach with the new layer: $(cat /tmp/nbd.err)"; return; }
    mount -t ext4 -o ro,noload "$dev" /mnt 2>/tmp/nbd.err || { fail nbd "mount after commit: $(cat /tmp/nbd.err)"; obd detach -q "$dev"; return; }
    again=$(cat /mnt/nbd.txt 2>&1)
    umount /mnt
    obd detach -q "$dev"
    if [ "$listed" != 1 ]; then
        fail nbd "obd list does not show nbd0: $(obd list --format plain | tr '\n' ' ')"
    elif [ "$sums" != 0 ]; then
        fail nbd "checksums through /dev/nbd0: $(grep -v ': OK' /tmp/nbd.sums | head -n 5 | tr '\n' ' ')"
    elif [ "$again" != "written through nbd" ]; then
        fail nbd "the file written through nbd reads back as: $again"
    elif [ -e /tmp/nbd.sock ]; then
        fail nbd "the socket is left after detach"
    else
        pass nbd
    fi
}

# An image in a registry on the guest's own loopback (Debian's docker-registry
# over storage the host's obd push filled): attached lazily through the blob
# cache with its reads recorded into a trace, checked file by file; then, with
# an empty cache, attached with that trace replayed, and, once the replay is
# done, read with the registry stopped: the prefetch fetched what was read.
reg_up() { obd map --json "$REG_IMAGE" >/dev/null; }
check_registry() {
    command -v docker-registry >/dev/null || { fail registry "no docker-registry in the guest"; return; }
    ip link set lo up
    REG_IMAGE=docker://127.0.0.1:5000/vm/ext4:v1
    export OBD_CACHE_DIR=/tmp/obd-cache
    docker-registry serve /vm/registry.yml >/tmp/registry.log 2>&1 &
    rpid=$!
    if ! wait_for 120 reg_up; then
        fail registry "the image cannot be read: $(obd map --json "$REG_IMAGE" 2>&1 | tail -n 1) $(tail -n 3 /tmp/registry.log)"
        kill "$rpid"; return
    fi
    rm -f /tmp/app.trace /tmp/app.trace.ok
    dev=$(obd attach --record-trace /tmp/app.trace "$REG_IMAGE" 2>/tmp/reg.err) \
        || { fail registry "attach: $(cat /tmp/reg.err)"; kill "$rpid"; return; }
    mount -t ext4 -o ro,noload "$dev" /mnt 2>/tmp/reg.err || { fail registry "mount: $(cat /tmp/reg.err)"; obd detach -q "$dev"; kill "$rpid"; return; }
    (cd /mnt && $SHA256SUM -c /vm/ext4.sums) >/tmp/reg.sums 2>&1; sums=$?
    umount /mnt
    rm -f /tmp/app.trace.lock
    wait_for 30 test -e /tmp/app.trace.ok; traced=$?
    obd detach -q "$dev"
    wait_for 10 gone "$dev"
    records=$(( ($(wc -c < /tmp/app.trace) - 24) / 24 ))
    if [ "$sums" != 0 ]; then
        fail registry "checksums through the lazy device: $(grep -v ': OK' /tmp/reg.sums | head -n 5 | tr '\n' ' ')"
        kill "$rpid"; return
    elif [ "$traced" != 0 ] || [ "$records" -lt 1 ]; then
        fail registry "no trace: ok file $traced, $records records"
        kill "$rpid"; return
    fi
    # A cold cache; the trace replayed; then the registry goes away.
    rm -rf /tmp/obd-cache
    dev=$(obd attach --prefetch /tmp/app.trace "$REG_IMAGE" 2>/tmp/reg.err) \
        || { fail registry "attach --prefetch: $(cat /tmp/reg.err)"; kill "$rpid"; return; }
    log=$(list_field log)
    wait_for 300 grep -q "prefetch .* replayed" "$log"; replayed=$?
    kill "$rpid"; wait "$rpid" 2>/dev/null
    summary=$(grep "prefetch .* replayed" "$log")
    mount -t ext4 -o ro,noload "$dev" /mnt 2>/tmp/reg.err; mounted=$?
    if [ "$mounted" = 0 ]; then
        (cd /mnt && $SHA256SUM -c /vm/ext4.sums) >/tmp/reg.sums 2>&1; sums=$?
        umount /mnt
    fi
    obd detach -q "$dev"
    if [ "$replayed" != 0 ]; then
        fail registry "the prefetch did not finish: $(tail -n 3 "$log" | tr '\n' ' ')"
    elif ! echo "$summary" | grep -q " 0 failed"; then
        fail registry "prefetch: $summary"
    elif [ "$mounted" != 0 ]; then
        fail registry "mount with the registry stopped: $(cat /tmp/reg.err)"
    elif [ "$sums" != 0 ]; then
        fail registry "with the registry stopped, after the prefetch of $records records: $(grep -v ': OK' /tmp/reg.sums | head -n 5 | tr '\n' ' ')"
    else
        echo "registry: $records trace records; $summary"
        pass registry
    fi
}

# obd doctor before ublk_drv is loaded (run by main), then after: what
# fails, what passes, the feature mask by name, a control device that only
# root may open.
doctor_status() {  # doctor_status FILE CHECK: that check's status
    tr -d '\n ' < "$1" | sed -n "s/.*\"check\":\"$2\",\"detail\":\"[^\"]*\",\"status\":\"\([a-z]*\)\".*/\1/p"
}
check_doctor() {
    obd doctor --json > /tmp/doctor.after; after=$?
    chmod 000 /dev/ublk-control
    obd doctor --json > /tmp/doctor.locked; locked=$?
    chmod 600 /dev/ublk-control
    obd doctor > /tmp/doctor.table
    if [ "$(cat /tmp/doctor.before.rc)" != 1 ] || [ "$(doctor_status /tmp/doctor.before ublk_drv)" != fail ] \
        || [ "$(doctor_status /tmp/doctor.before control)" != fail ]; then
        fail doctor "before ublk_drv: exit $(cat /tmp/doctor.before.rc): $(tr -d '\n' < /tmp/doctor.before)"
    elif [ "$after" != 0 ] || [ "$(doctor_status /tmp/doctor.after ublk_drv)" != ok ] \
        || [ "$(doctor_status /tmp/doctor.after control)" != ok ] \
        || ! grep -q "USER_RECOVERY" /tmp/doctor.after; then
        fail doctor "after ublk_drv: exit $after: $(tr -d '\n' < /tmp/doctor.after)"
    elif [ "$locked" != 0 ] || [ "$(doctor_status /tmp/doctor.locked control)" != warn ]; then
        fail doctor "mode 000: exit $locked: $(tr -d '\n' < /tmp/doctor.locked)"
    elif ! grep -q "features" /tmp/doctor.table; then
        fail doctor "the table: $(cat /tmp/doctor.table)"
    else
        echo "doctor: $(grep -o '"0x[0-9a-f]*: [A-Z_ ]*' /tmp/doctor.after | head -n 1)"
        pass doctor
    fi
}

# obd stats on a ublk device: a direct read of 1 MiB is counted.
stat_field() {  # stat_field FILE KEY
    tr -d '\n ' < "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}
check_stats() {
    dev=$(obd attach "$FX/L0.commit" "$FX/L1.commit" 2>/tmp/stats.err) || { fail stats "attach: $(cat /tmp/stats.err)"; return; }
    dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct 2>/dev/null
    sleep 2
    obd stats --json "$dev" > /tmp/stats.json 2>/tmp/stats.err; rc=$?
    obd detach -q "$dev"
    reads=$(stat_field /tmp/stats.json reads); bytes=$(stat_field /tmp/stats.json read_bytes)
    if [ "$rc" != 0 ] || [ -z "$reads" ] || [ "$reads" -lt 1 ] || [ "$bytes" -lt 1048576 ]; then
        fail stats "exit $rc: $(tr -d '\n' < /tmp/stats.json) $(cat /tmp/stats.err)"
    else
        echo "stats: $reads reads, $bytes bytes"
        pass stats
    fi
}

# --- main ---
load_modules ublk_drv
check_preflight
obd doctor --json > /tmp/doctor.before; echo $? > /tmp/doctor.before.rc
insmod /lib/modules/ublk_drv.ko || echo "insmod ublk_drv failed"
echo "checks: $(cat /vm/checks)"
for c in $(cat /vm/checks); do
    case $c in
        stacks) check_stacks ;;
        ext4) check_ext4 ;;
        rw) check_rw ;;
        corrupt) check_corrupt ;;
        sigterm) check_sigterm ;;
        kill9) check_kill9 ;;
        upper-crash) check_upper_crash ;;
        config) check_config ;;
        list) check_list ;;
        nbd) check_nbd ;;
        registry) check_registry ;;
        doctor) check_doctor ;;
        stats) check_stats ;;
    esac
    # Every check leaves the machine as it found it.
    no_ublk_devices || echo "WARN: devices left after $c: $(ls /dev/ublk[bc]* | tr '\n' ' ')"
done
