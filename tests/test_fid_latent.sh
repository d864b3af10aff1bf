#!/usr/bin/env bash
# test_fid_latent.sh — `difftune fid --vae` on a latent DiT, with weights generated in the
# published layouts (gen_vae, two levels: 8-pixel images <-> 4x4x4 latents; gen_dit, 4 input
# channels) and random FID Inception weights: a latent `difftune train` job with eval.fid_every
# measures its checkpoint, and `difftune fid --vae` on that checkpoint reproduces the job's value
# exactly, reading the reference statistics the job cached (so the dataset was loaded at the
# decoded size, 4 x the VAE's downsampling of 2). Refused with exit 2: a latent checkpoint
# without --vae (the message names --vae), a VAE whose latent channels are not the checkpoint's
# input channels (a 3- or 8-channel DiT), a file that is not a VAE.
source "$(dirname "$0")/check_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/fid_latent
rm -rf "$TMP" && mkdir -p "$TMP"
: "${DIFFTUNE_GEN_VAE:?DIFFTUNE_GEN_VAE must point at gen_vae (ctest sets it)}"
: "${DIFFTUNE_GEN_DIT:?DIFFTUNE_GEN_DIT must point at gen_dit (ctest sets it)}"
unset DIFFTUNE_LATENT_DIR DIFFTUNE_INCEPTION_WEIGHTS DIFFTUNE_EVAL_CACHE
export HOME=$TMP/home

"$DIFFTUNE_GEN_VAE" --out "$TMP/vae.safetensors" --channels 32,64 --layers 1 >/dev/null || bad "gen_vae"
for ch in 4 3 8; do
  "$DIFFTUNE_GEN_DIT" --out "$TMP/dit$ch.safetensors" --layout official --arch DiT-S/2 --depth 1 \
    --input-size 4 --in-channels $ch --classes 10 >/dev/null || bad "gen_dit ($ch channels)"
done
"$BIN" dataset synth --style solid --classes 2 --per-class 2 --size 8 --out "$TMP/ds" >/dev/null || bad "synth"
"$BIN" fid --random-weights "$TMP/w.safetensors" --seed 1 >/dev/null || bad "random Inception weights"

# ---- a latent job measures FID on decoded samples; difftune fid --vae reproduces it -------------
cat >"$TMP/spec.json" <<JSON
{"method": "full", "base_model": "$TMP/dit4.safetensors", "vae": "$TMP/vae.safetensors",
 "dataset": "$TMP/ds", "hyperparameters": {"steps": 1, "batch_size": 2},
 "eval": {"sample_every": 0, "fid_every": 1, "fid_samples": 2, "steps": 2},
 "checkpoint": {"every": 1}, "device": "cpu"}
JSON
expect_rc 0 "a latent job with eval.fid_every" -- train --spec "$TMP/spec.json" --out "$TMP/run" \
  --latent-dir "$TMP/lat" --inception-weights "$TMP/w.safetensors" --eval-cache "$TMP/cache" --quiet
JOB=$(jq -c 'select(.type == "metric" and .name == "fid")' "$TMP/out")
check "the job measured fid: $JOB" [ "$(jq -r '.available' <<<"$JOB")" = true ]
CKPT=$TMP/run/checkpoints/step_0000001.safetensors
F=(fid --checkpoint "$CKPT" --dataset "$TMP/ds" --samples 2 --steps 2 --batch 2
   --inception-weights "$TMP/w.safetensors" --eval-cache "$TMP/cache" --device cpu)
expect_rc 0 "difftune fid --vae" -- "${F[@]}" --vae "$TMP/vae.safetensors"
check "it reproduces the job's value: $(cat "$TMP/out")" \
  jq -en --slurpfile a "$TMP/out" --argjson b "$(jq .value <<<"$JOB")" '$a[0].value == $b' >/dev/null
check "from the reference the job cached (the 4 dataset images at 8 pixels)" \
  jq -en --slurpfile a "$TMP/out" --argjson j "$JOB" \
  '$a[0].reference == {dataset_sha256: $j.reference.dataset_sha256, images: 4, cached: true}' >/dev/null

# ---- refusals ------------------------------------------------------------------------------------
expect_rc 2 "a latent checkpoint without --vae" -- "${F[@]}"
check "the refusal names --vae: $(cat "$TMP/err")" grep -q -- "--vae FILE" "$TMP/err"
check "... not the dataset loader's channel count" not grep -q "channels must be" "$TMP/err"
expect_rc 2 "a VAE for a 3-channel DiT" -- "${F[@]/$CKPT/$TMP/dit3.safetensors}" --vae "$TMP/vae.safetensors"
check "it says why: $(cat "$TMP/err")" grep -q "4-channel latents but the checkpoint takes 3" "$TMP/err"
expect_rc 2 "a VAE for an 8-channel DiT" -- "${F[@]/$CKPT/$TMP/dit8.safetensors}" --vae "$TMP/vae.safetensors"
check "it says why: $(cat "$TMP/err")" grep -q "4-channel latents but the checkpoint takes 8" "$TMP/err"
expect_rc 2 "a DiT as --vae" -- "${F[@]}" --vae "$TMP/dit3.safetensors"
check "it names the option: $(cat "$TMP/err")" grep -q -- "--vae $TMP/dit3.safetensors" "$TMP/err"
finish
