#!/bin/sh
# The attach benchmark inside the VM (see benches/attach.rs): fio against
# an obd ublk device and a loop device over the same stack, flattened.
# Each result is printed as "BENCH <stack> <workload> <ublk|loop> <round>",
# fio's JSON, "BENCH-END".

FX=/fx
RUNTIME=5
ROUNDS=4
export OBD_RUN_DIR=/run/obd

while read -r m; do insmod "/lib/modules/$m.ko" || echo "insmod $m failed"; done < /lib/modules/order

fio_run() {  # fio_run LABEL DEVICE fio-args...
    label=$1; dev=$2; shift 2
    echo "BENCH $label"
    fio --name=bench --filename="$dev" --direct=1 --ioengine=io_uring \
        --time_based --runtime="$RUNTIME" --randrepeat=1 --norandommap \
        --output-format=json "$@" 2>&1
    echo "BENCH-END"
}

# bench_stack NAME RAND_SIZE LAYER...: seq 1 MiB QD1 and random 4 KiB QD32,
# ublk and loop taking turns, ROUNDS short rounds each (the host is shared:
# the report keeps the best round of each). RAND_SIZE > 0 adds a random run
# confined to the first RAND_SIZE bytes (NAME-data).
bench_stack() {
    name=$1; data_size=$2; shift 2
    set -- $(for l in "$@"; do echo "$FX/$l"; done)
    ublk=$(obd attach --queues 1 --depth 128 "$@") || { echo "attach failed"; return; }
    obd flatten -q -o "/tmp/$name.raw" "$@" || { echo "flatten failed"; return; }
    loop=$(losetup -f) && losetup -r "$loop" "/tmp/$name.raw" || { echo "losetup failed"; return; }
    echo "bench: $name on $ublk and $loop ($(blockdev --getsize64 "$ublk") bytes)"
    # Warm both paths once.
    dd if="$ublk" of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null
    dd if="$loop" of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null
    for round in $(seq "$ROUNDS"); do
        for kind in ublk loop; do
            eval dev=\$$kind
            fio_run "$name seq-1M-qd1 $kind $round" "$dev" --rw=read --bs=1M --iodepth=1
            fio_run "$name rand-4K-qd32 $kind $round" "$dev" --rw=randread --bs=4k --iodepth=32
            if [ "$data_size" != 0 ]; then
                fio_run "$name-data rand-4K-qd32 $kind $round" "$dev" --rw=randread --bs=4k --iodepth=32 --size="$data_size"
            fi
        done
    done
    losetup -d "$loop"
    obd detach -q "$ublk"
    rm -f "/tmp/$name.raw"
}

bench_stack fixture-lz4 2097152 L0.lz4.tar L1.lz4-bs16.zfile L2.lz4-bs64.tar
bench_stack sample-lz4 0 sample.L0.zfile sample.L1.zfile sample.L2.zfile
bench_stack sample-plain 0 sample.L0.commit sample.L1.commit sample.L2.commit
