#!/usr/bin/env bash
# test_latent_cli.sh — latent DiTs from the command line, with weights generated in the published
# layouts: `difftune sample --vae` decodes a 4-channel DiT's samples with the SD VAE at its full
# published widths (the grid has the pixel size, the --classes labels, f16 weights load), and
# refuses what cannot work (no --vae for a latent DiT, a VAE whose latents do not fit, malformed
# or out-of-range --classes); `difftune train` encodes into --latent-dir (and
# $DIFFTUNE_LATENT_DIR), reuses it, and refuses a 4-channel base model without "vae" (exit 2).
source "$(dirname "$0")/check_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/latent_cli
rm -rf "$TMP" && mkdir -p "$TMP"
: "${DIFFTUNE_GEN_VAE:?DIFFTUNE_GEN_VAE must point at gen_vae (ctest sets it)}"
: "${DIFFTUNE_GEN_DIT:?DIFFTUNE_GEN_DIT must point at gen_dit (ctest sets it)}"
unset DIFFTUNE_LATENT_DIR DIFFTUNE_INCEPTION_WEIGHTS
export HOME=$TMP/home

# PNG width and height from the IHDR chunk.
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8}'; }

"$DIFFTUNE_GEN_VAE" --out "$TMP/vae.safetensors" --dtype f16 >/dev/null || bad "gen_vae (published widths, f16)"
"$DIFFTUNE_GEN_VAE" --out "$TMP/vae_small.safetensors" --channels 32,64,64,64 >/dev/null || bad "gen_vae (small)"
"$DIFFTUNE_GEN_DIT" --out "$TMP/dit4.safetensors" --layout official --arch DiT-S/2 --depth 1 \
  --input-size 4 --in-channels 4 --classes 10 >/dev/null || bad "gen_dit (latent)"
"$DIFFTUNE_GEN_DIT" --out "$TMP/dit3.safetensors" --layout official --arch DiT-S/2 --depth 1 \
  --input-size 4 --in-channels 3 --classes 10 >/dev/null || bad "gen_dit (pixel)"

# ---- difftune sample --vae ---------------------------------------------------------------------
S=(sample --checkpoint "$TMP/dit4.safetensors" --n 2 --steps 2 --sampler ddim --device cpu)
expect_rc 0 "sample --vae --classes" -- "${S[@]}" --vae "$TMP/vae.safetensors" --classes 3,7 --out "$TMP/grid.png"
check "the grid holds 2 decoded 32-pixel images (70x36): $(png_size "$TMP/grid.png")" \
  [ "$(png_size "$TMP/grid.png")" = 70x36 ]
check "the summary line names the grid" [ "$(jq -r .path "$TMP/out")" = "$TMP/grid.png" ]
expect_rc 0 "the same seed again" -- "${S[@]}" --vae "$TMP/vae.safetensors" --classes 3,7 --out "$TMP/grid2.png"
check "the same grid again" cmp -s "$TMP/grid.png" "$TMP/grid2.png"
expect_rc 0 "other classes" -- "${S[@]}" --vae "$TMP/vae.safetensors" --classes 4,1 --out "$TMP/grid3.png"
check "other classes, another grid" not cmp -s "$TMP/grid.png" "$TMP/grid3.png"
expect_rc 2 "a latent DiT without --vae" -- "${S[@]}" --out "$TMP/x.png"
check "the refusal asks for --vae: $(cat "$TMP/err")" grep -q -- "--vae FILE" "$TMP/err"
expect_rc 2 "a VAE whose latents the DiT does not take" -- sample --checkpoint "$TMP/dit3.safetensors" \
  --n 1 --steps 1 --device cpu --vae "$TMP/vae.safetensors" --out "$TMP/x.png"
check "it says so: $(cat "$TMP/err")" grep -q "4-channel latents" "$TMP/err"
expect_rc 2 "a DiT as --vae" -- "${S[@]}" --vae "$TMP/dit3.safetensors" --out "$TMP/x.png"
for bad_list in "3,,7" "x" "3," "-1" "1,2,3.5"; do
  expect_rc 2 "--classes '$bad_list'" -- "${S[@]}" --vae "$TMP/vae.safetensors" --classes "$bad_list" --out "$TMP/x.png"
done
expect_rc 2 "a class beyond the model's" -- "${S[@]}" --vae "$TMP/vae.safetensors" --classes 3,11 --out "$TMP/x.png"
check "it names the class: $(cat "$TMP/err")" grep -q "class 11" "$TMP/err"
expect_rc 2 "--class with --classes" -- "${S[@]}" --vae "$TMP/vae.safetensors" --class 1 --classes 2 --out "$TMP/x.png"
check "no grid was written by a refused run" not test -e "$TMP/x.png"

# ---- difftune train with a vae -----------------------------------------------------------------
"$BIN" dataset synth --style solid --classes 2 --per-class 2 --size 32 --out "$TMP/ds" >/dev/null || bad "synth"
spec() { # spec FILE VAE
  cat >"$1" <<JSON
{"method": "full", "base_model": "$TMP/dit4.safetensors", "vae": "$2", "dataset": "$TMP/ds",
 "hyperparameters": {"steps": 1, "batch_size": 2}, "eval": {"sample_every": 0, "fid_every": 0},
 "checkpoint": {"every": 1}, "device": "cpu"}
JSON
}
spec "$TMP/novae.json" ""
expect_rc 2 "train: a 4-channel base model without vae" -- train --spec "$TMP/novae.json" --out "$TMP/t0" --quiet
check "the refusal names vae: $(tail -c 300 "$TMP/err")" grep -q '"vae"' "$TMP/err"
spec "$TMP/vae.json" "$TMP/vae_small.safetensors"
expect_rc 0 "train with a vae and --latent-dir" -- train --spec "$TMP/vae.json" --out "$TMP/t1" --latent-dir "$TMP/lat" --grid 1 --quiet
check "the dataset was encoded into --latent-dir" test -n "$(find "$TMP/lat" -name latents.safetensors)"
check "encoding progress" [ "$(jq -r 'select(.type == "progress" and .phase == "encoding") | .total_steps' "$TMP/out" | sort -u)" = 4 ]
check "the grid is decoded (32-pixel images)" [ "$(png_size "$TMP/t1/samples/step_0000001.png")" = 36x36 ]
DIFFTUNE_LATENT_DIR=$TMP/lat expect_rc 0 "again, through \$DIFFTUNE_LATENT_DIR" -- train --spec "$TMP/vae.json" --out "$TMP/t2" --grid 1 --quiet
check "the cache is reused" [ "$(jq -r 'select(.type == "metric" and .name == "latent_cache") | .reused' "$TMP/out")" = true ]
expect_rc 0 "without either, the default under \$HOME" -- train --spec "$TMP/vae.json" --out "$TMP/t3" --grid 1 --quiet
check "the default cache is \$HOME/.cache/difftune/latents" test -n "$(find "$TMP/home/.cache/difftune/latents" -name latents.safetensors)"
finish
