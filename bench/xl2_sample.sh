#!/usr/bin/env bash
# xl2_sample.sh — `difftune sample` end to end with DiT-XL/2 at 256 px and the SD VAE: the time
# and peak memory of the whole command (load, sampling with guidance, decoding, the PNG).
#
#   BUILD=/path/to/release-build bench/xl2_sample.sh
#
# Weights in the published shapes come from tests/tools (gen_dit: DiT-XL/2 in diffusers' layout,
# f16, 674,834,720 parameters; gen_vae: the SD VAE, f16): the time does not depend on their values,
# so the grid is noise. Settings (environment): DEVICE (cpu), N (2 images), STEPS (10, DDIM),
# CFG (4), CLASSES (207,360), KEEP=1 (keep the generated weights in $BUILD/bench-xl2). Writes
# bench/results/<device>_xl2_sample_<MACHINE>.json; see server_bench_env.sh for BUILD, OUT,
# MACHINE.
set -eu
source "$(dirname "$0")/server_bench_env.sh"
DEVICE=${DEVICE:-cpu}
N=${N:-2}
STEPS=${STEPS:-10}
CFG=${CFG:-4}
CLASSES=${CLASSES:-207,360}
[ -n "${NO_BUILD:-}" ] || cmake --build "$BUILD" -j"$(nproc)" --target gen_dit gen_vae >/dev/null
WORK=$BUILD/bench-xl2
mkdir -p "$WORK"
[ -s "$WORK/xl2.safetensors" ] || "$BUILD/tests/tools/gen_dit" --out "$WORK/xl2.safetensors" \
  --layout diffusers --dtype f16 --arch DiT-XL/2 --input-size 32 --in-channels 4 --classes 1000 \
  --learn-sigma 1 >/dev/null
[ -s "$WORK/vae.safetensors" ] || "$BUILD/tests/tools/gen_vae" --out "$WORK/vae.safetensors" \
  --dtype f16 >/dev/null

/usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$BUILD/difftune" sample \
  --checkpoint "$WORK/xl2.safetensors" --input-size 32 --vae "$WORK/vae.safetensors" \
  --classes "$CLASSES" --n "$N" --cfg "$CFG" --sampler ddim --steps "$STEPS" --device "$DEVICE" \
  --out "$WORK/grid.png" > "$WORK/sample.json"
read -r WALL RSS_KB < "$WORK/time.txt"
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
RESULT=$OUT/${DEVICE%%:*}_xl2_sample_$MACHINE.json
"$PY" - "$RESULT" <<PY
import json, sys
rec = {"bench": "xl2_sample", "commit": "$COMMIT", "machine": "$MACHINE", "cpu": "$CPU",
       "cores": $(nproc), "omp_threads": "${OMP_NUM_THREADS:-unset}", "device": "$DEVICE",
       "model": "DiT-XL/2 (diffusers layout, f16, 674834720 parameters)", "vae": "SD VAE (f16)",
       "images": $N, "pixels": 256, "sampler": "ddim", "steps": $STEPS, "cfg": $CFG,
       "classes": "$CLASSES", "wall_seconds": $WALL, "peak_rss_gib": round($RSS_KB / 1048576, 2),
       "output": json.load(open("$WORK/sample.json"))}
json.dump(rec, open(sys.argv[1], "w"), indent=1)
print(json.dumps(rec))
PY
[ -n "${KEEP:-}" ] || rm -f "$WORK/xl2.safetensors" "$WORK/vae.safetensors"
