#!/usr/bin/env bash
# test_api_models_published.sh — POST /models with weights in the published layouts, through a
# real `difftune serve` and curl: an SD VAE (diffusers' AutoencoderKL, kind "vae"), a DiT in
# diffusers' transformer layout (needs ?input_size=, and is stored with its config so it loads
# unaided), and an official-layout BF16 DiT; and `difftune sample --input-size` and `difftune
# train --input-size` for a diffusers file. Weights come from tests/tools (gen_vae, gen_dit) at small sizes. Refusals must name their
# parameter and store nothing. The VAE part needs the "model kind vae" store migration.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_models_published
GEN_DIT=${DIFFTUNE_GEN_DIT:?DIFFTUNE_GEN_DIT must point at tests/tools gen_dit (run under ctest)}
GEN_VAE=${DIFFTUNE_GEN_VAE:?DIFFTUNE_GEN_VAE must point at tests/tools gen_vae (run under ctest)}
rm -rf "$TMP" && mkdir -p "$TMP"

"$GEN_VAE" --out "$TMP/vae.safetensors" --channels 32,64 --layers 1 --dtype f16 >/dev/null || bad "gen_vae"
"$GEN_DIT" --out "$TMP/diffusers.safetensors" --layout diffusers --arch DiT-S/2 --depth 2 \
  --input-size 8 --classes 10 --dtype bf16 >/dev/null || bad "gen_dit diffusers"
"$GEN_DIT" --out "$TMP/official.safetensors" --layout official --arch DiT-S/2 --depth 1 \
  --input-size 8 --classes 10 --dtype bf16 >/dev/null || bad "gen_dit official"

# ---- the CLI takes the input size of a diffusers file as --input-size -------------------------
"$GEN_DIT" --out "$TMP/pixels.safetensors" --layout diffusers --arch DiT-S/2 --depth 1 \
  --input-size 8 --in-channels 3 --classes 5 >/dev/null || bad "gen_dit pixels"
expect_rc 2 "sample a diffusers DiT without --input-size" -- sample --checkpoint "$TMP/pixels.safetensors" \
  --n 2 --steps 2 --sampler ddim --device cpu --out "$TMP/grid.png"
check "the message names --input-size" grep -q -- '--input-size' "$TMP/err"
expect_rc 0 "sample a diffusers DiT with --input-size" -- sample --checkpoint "$TMP/pixels.safetensors" \
  --input-size 8 --n 2 --steps 2 --sampler ddim --device cpu --out "$TMP/grid.png"
check "the grid is written" test -s "$TMP/grid.png"
# ... and so does `difftune train`, whose checkpoints then state it themselves
"$BIN" dataset synth --style solid --classes 5 --per-class 2 --size 8 --out "$TMP/ds" >/dev/null ||
  bad "dataset synth"
printf '{"method": "full", "base_model": "%s", "dataset": "%s", "hyperparameters": {"steps": 1, "batch_size": 2}, "eval": {"sample_every": 0}, "device": "cpu"}' \
  "$TMP/pixels.safetensors" "$TMP/ds" > "$TMP/full.json"
expect_rc 2 "train from a diffusers DiT without --input-size" -- train --spec "$TMP/full.json" \
  --out "$TMP/run0" --grid 1 --quiet
check "the message names --input-size" grep -q -- '--input-size' "$TMP/err"
expect_rc 0 "train from a diffusers DiT with --input-size" -- train --spec "$TMP/full.json" \
  --input-size 8 --out "$TMP/run1" --grid 1 --quiet
expect_rc 0 "its checkpoint samples without hints" -- sample \
  --checkpoint "$TMP/run1/checkpoints/step_0000001.safetensors" --n 2 --steps 2 --sampler ddim \
  --device cpu --out "$TMP/grid1.png"

serve_start "$TMP/data" --slots-per-device 0 --devices cpu
count() { curl -sS "$URL/models?limit=100" | jq '.data | length'; }
PY=${DIFFTUNE_PYTHON:-python3}
# the safetensors header's __metadata__.config of file $1, as compact JSON
meta_config() {
  "$PY" -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n)).get("__metadata__", {}).get("config", ""))' "$1"
}
OCTET=(-H 'Content-Type: application/octet-stream')

# ---- the SD VAE ----------------------------------------------------------------------------
http POST "/models?name=sd-vae&input_size=32" --data-binary "@$TMP/vae.safetensors" "${OCTET[@]}"
expect_error 422 invalid_model input_size "input_size on a VAE"
check "a refused upload stores nothing" [ "$(count)" = 0 ]
http POST "/models?name=sd-vae" --data-binary "@$TMP/vae.safetensors" "${OCTET[@]}"
expect_status 201 "VAE upload"
VAE=$(jb .id)
check "kind vae" [ "$(jb .kind)" = vae ]
check "VAE config" [ "$(jb '[.config.latent_channels, (.config.block_out_channels | join("/")), .config.layers_per_block, .config.downsample_factor, .config.attention_names] | join(",")')" = "4,32/64,1,2,diffusers" ]
check "VAE scaling factor" [ "$(jb '.config.scaling_factor * 100000 | round')" = 18215 ]
check "VAE hash is the file's" [ "$(jb .sha256)" = "$(sha256sum "$TMP/vae.safetensors" | cut -d' ' -f1)" ]
http GET "/models/$VAE"; expect_status 200 "get the VAE"
check "the VAE reads back as kind vae" [ "$(jb .kind)" = vae ]

# ---- diffusers' DiT transformer ------------------------------------------------------------
http POST "/models?name=dit-diffusers" --data-binary "@$TMP/diffusers.safetensors" "${OCTET[@]}"
expect_error 422 invalid_model input_size "diffusers DiT without input_size"
check "the message says how to give it" grep -q 'input_size=32' "$TMP/body"
http POST "/models?input_size=abc" --data-binary "@$TMP/diffusers.safetensors" "${OCTET[@]}"
expect_error 400 invalid_value input_size "input_size not an integer"
http POST "/models?input_size=7" --data-binary "@$TMP/diffusers.safetensors" "${OCTET[@]}"
expect_error 422 invalid_model input_size "input_size of no whole patches"
check "refusals store nothing" [ "$(count)" = 1 ]
http POST "/models?name=dit-diffusers&input_size=8" --data-binary "@$TMP/diffusers.safetensors" "${OCTET[@]}"
expect_status 201 "diffusers DiT with input_size"
DIT=$(jb .id)
check "kind dit" [ "$(jb .kind)" = dit ]
check "diffusers DiT config" [ "$(jb '[.config.hidden_size, .config.num_heads, .config.depth, .config.image_size, .config.num_classes, .config.layout] | join(",")')" = "384,6,2,8,10,diffusers" ]
STORED="$TMP/data/models/$DIT/model.safetensors"
check "the stored file carries its config" \
  [ "$(meta_config "$STORED" | jq -c '[.image_size, .num_heads, .depth]')" = "[8,6,2]" ]
check "the upload had none" [ -z "$(meta_config "$TMP/diffusers.safetensors")" ]
check "size and hash are the stored file's" \
  [ "$(jb '.bytes|tostring') $(jb .sha256)" = "$(stat -c %s "$STORED") $(sha256sum "$STORED" | cut -d' ' -f1)" ]
http POST "/models?name=dit-multipart&input_size=8" -F "file=@$TMP/diffusers.safetensors"
expect_status 201 "multipart diffusers DiT with input_size"

# ---- an official-layout BF16 DiT: pos_embed says the input size -----------------------------
http POST "/models?name=dit-official&input_size=16" --data-binary "@$TMP/official.safetensors" "${OCTET[@]}"
expect_error 422 invalid_model input_size "input_size contradicting pos_embed"
http POST "/models?name=dit-official" --data-binary "@$TMP/official.safetensors" "${OCTET[@]}"
expect_status 201 "official BF16 DiT"
check "official layout, input size from pos_embed" [ "$(jb '[.config.image_size, .config.layout] | join(",")')" = "8,official" ]
check "an official upload is stored as sent" [ "$(jb .sha256)" = "$(sha256sum "$TMP/official.safetensors" | cut -d' ' -f1)" ]

http GET "/models?limit=100"; expect_status 200 "list"
check "all kinds listed" [ "$(jb '[.data[].kind] | sort | unique | join(",")')" = "dit,vae" ]
http DELETE "/models/$VAE"; expect_status 200 "delete the VAE"
serve_stop
finish
