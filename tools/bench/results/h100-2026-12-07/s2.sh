#!/usr/bin/env bash
# Session 6, call 2: FP8 on the full-size model (fp8-full.sh on call 1's pipeline transformer, adapters, bf16 engine)
set -u
ROOT=$(pwd); O=/tmp/o2; mkdir -p $O; W=/tmp/cudacheck
[ -f $W/bin/build-engine ] || { mkdir -p $W/bin; tar -xJf $ROOT/.dev/g/bin.tar.xz -C $W/bin; }
WORK=$W MODEL=$W/pipe/transformer ADAPTERS=$W BF16_ENGINE=$W/engine-bf16 SKIP_TINY=1 OUT=$O timeout ${BUDGET:-570} bash tools/device/fp8-full.sh > $O/fp8-full.out 2>&1
echo "fp8-full rc=$?"; cat $O/summary.txt; df -h /tmp | tail -1; ls $W
