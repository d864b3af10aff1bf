#!/usr/bin/env bash
# test_api_latent.sh — latent DiT jobs through a real `difftune serve`: POST /jobs checks "vae"
# like the other model references (not an id: 400, unknown: 404, not a VAE: 400, all with param
# vae), refuses a 4-channel base model without a vae and a vae whose latents do not fit the DiT
# (400 param vae), and forgetting_curve with a latent DiT (400 param vae); a good job runs on a
# worker that resolves the vae id to its file, encodes the dataset into DATA/latents (progress
# phase "encoding"), decodes its sample grid, keeps the id in its spec, and a second job on the
# same dataset and VAE reuses the cache. DELETE /datasets/{id} is refused (409) while a job uses
# the dataset and then removes the latent caches encoded from it (finished: __metadata__.dataset,
# a real path inside DATA/datasets/{id}; unfinished: partial/dataset), keeping those of other
# datasets (a sibling folder whose name only starts with the id included) and caches whose source
# cannot be read. Weights come from tests/tools (gen_vae, gen_dit), small.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_latent
GEN_DIT=${DIFFTUNE_GEN_DIT:?DIFFTUNE_GEN_DIT must point at tests/tools gen_dit (run under ctest)}
GEN_VAE=${DIFFTUNE_GEN_VAE:?DIFFTUNE_GEN_VAE must point at tests/tools gen_vae (run under ctest)}
rm -rf "$TMP" && mkdir -p "$TMP"
DATA=$TMP/data

# A two-level VAE (8-pixel images <-> 4x4x4 latents) keeps the worker fast.
"$GEN_VAE" --out "$TMP/vae.safetensors" --channels 32,64 --layers 1 >/dev/null || bad "gen_vae"
"$GEN_DIT" --out "$TMP/dit4.safetensors" --layout official --arch DiT-S/2 --depth 1 \
  --input-size 4 --in-channels 4 --classes 10 >/dev/null || bad "gen_dit latent"
"$GEN_DIT" --out "$TMP/dit3.safetensors" --layout official --arch DiT-S/2 --depth 1 \
  --input-size 4 --in-channels 3 --classes 10 >/dev/null || bad "gen_dit pixel"
"$BIN" dataset synth --style solid --classes 2 --per-class 2 --size 8 --out "$TMP/ds" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/ds.tar" ds

serve_start "$DATA" --devices cpu --slots-per-device 1
OCTET=(-H 'Content-Type: application/octet-stream')
http POST "/datasets?name=shapes" --data-binary "@$TMP/ds.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "upload the dataset"; DS=$(jb .id)
http POST "/models?name=sd-vae" --data-binary "@$TMP/vae.safetensors" "${OCTET[@]}"
expect_status 201 "upload the VAE"; VAE=$(jb .id)
check "kind vae" [ "$(jb .kind)" = vae ]
http POST "/models?name=latent-dit" --data-binary "@$TMP/dit4.safetensors" "${OCTET[@]}"
expect_status 201 "upload the latent DiT"; DIT4=$(jb .id)
http POST "/models?name=pixel-dit" --data-binary "@$TMP/dit3.safetensors" "${OCTET[@]}"
expect_status 201 "upload the pixel DiT"; DIT3=$(jb .id)

job() { # job BASE VAE-JSON [METHOD [DATASET]]: a tiny job request
  echo "{\"method\": \"${3:-full}\", \"base_model\": \"$1\", \"vae\": $2, \"dataset\": \"${4:-$DS}\",
    \"hyperparameters\": {\"steps\": 1, \"batch_size\": 2}, \"eval\": {\"sample_every\": 0, \"fid_every\": 0},
    \"checkpoint\": {\"every\": 1}}"
}
post() { http POST /jobs -H 'Content-Type: application/json' -d "$1"; }
count_jobs() { curl -sS "$URL/jobs?limit=100" | jq '.data | length'; }

# ---- refusals ------------------------------------------------------------------------------------
post "$(job "$DIT4" '"mdl_000000000000000000000000"')"
expect_error 404 not_found vae "an unknown vae id"
post "$(job "$DIT4" '"/etc/passwd"')"
expect_error 400 invalid_value vae "a path is not an id"
post "$(job "$DIT4" "\"$DIT3\"")"
expect_error 400 invalid_value vae "a DiT is not a VAE"
check "the message says what it is: $(jb .error.message)" bash -c "jq -r .error.message '$TMP/body' | grep -q 'is a dit, not a VAE'"
post "$(job "$DIT4" null)"
expect_error 400 invalid_value vae "a 4-channel base model without a vae"
check "the message explains: $(jb .error.message)" bash -c "jq -r .error.message '$TMP/body' | grep -q '4-channel latents'"
post "$(job "$DIT3" "\"$VAE\"")"
expect_error 400 invalid_value vae "a vae whose latents the DiT does not take"
post "{\"method\": \"forgetting_curve\", \"base_model\": \"$DIT4\", \"vae\": \"$VAE\", \"dataset\": \"$DS\",
  \"forgetting\": {\"checkpoint\": \"$DIT4\"}}"
expect_error 400 invalid_value vae "forgetting_curve with a vae"
post "{\"method\": \"forgetting_curve\", \"base_model\": \"$DIT4\", \"dataset\": \"$DS\",
  \"forgetting\": {\"checkpoint\": \"$DIT4\"}}"
expect_error 400 invalid_value vae "forgetting_curve of a latent DiT"
check "no refused request stored a job" [ "$(count_jobs)" = 0 ]

# ---- a latent job, and a second one reusing the cache -------------------------------------------
post "$(job "$DIT4" "\"$VAE\"")"
expect_status 201 "a latent job"; J1=$(jb .id)
check "the stored spec keeps the vae id" [ "$(jb .spec.vae)" = "$VAE" ]
wait_status "$J1" succeeded 60; check "the latent job succeeded" [ $? -eq 0 ]
http GET "/jobs/$J1/events?limit=1000"
check "it encoded the dataset (progress phase encoding, 4 images)" \
  [ "$(jb '[.data[] | select(.type == "progress" and .data.phase == "encoding") | .data.total_steps] | unique | join(",")')" = 4 ]
http GET "/jobs/$J1/metrics"
check "latent_cache: encoded, not reused" [ "$(jb '.series.latent_cache[0].value.reused')" = false ]
check "the cache lives under DATA/latents" test -n "$(find "$DATA/latents" -name latents.safetensors)"
http GET "/jobs/$J1/samples"
curl -sS -o "$TMP/grid.png" "$URL$(jb '.data[-1].url')"
# 16 images of 8 pixels in 4 columns with 2-pixel borders: 42 x 42
check "the sample grid is decoded to 8-pixel images (42x42)" \
  [ "$(od -An -tu1 -j16 -N8 "$TMP/grid.png" | awk '{print $4 + 256 * $3 "x" $8 + 256 * $7}')" = 42x42 ]
post "$(job "$DIT4" "\"$VAE\"")"
expect_status 201 "a second latent job"; J2=$(jb .id)
wait_status "$J2" succeeded 60; check "the second job succeeded" [ $? -eq 0 ]
http GET "/jobs/$J2/metrics"
check "the second job reuses the latent cache" [ "$(jb '.series.latent_cache[0].value.reused')" = true ]

# ---- deleting a dataset removes the latent caches encoded from it --------------------------------
# cache_source DIR: __metadata__.dataset of DIR/latents.safetensors (8 bytes of little-endian
# header length, then the JSON header)
cache_source() {
  local f=$1/latents.safetensors
  tail -c +9 "$f" | head -c "$(od -An -tu8 -N8 "$f" | tr -d ' ')" | jq -r '.__metadata__.dataset'
}
LAT=$DATA/latents REAL_DATA=$(realpath "$DATA")
K1=$(ls "$LAT")
check "one cache for the first dataset: $K1" [ "$(wc -w <<<"$K1")" = 1 ]
SRC1=$(cache_source "$LAT/$K1")
check "its metadata names the dataset's real path, in DATA/datasets/$DS: $SRC1" \
  [ "${SRC1#"$REAL_DATA/datasets/$DS/"}" != "$SRC1" ]
"$BIN" dataset synth --style solid --classes 2 --per-class 3 --size 8 --out "$TMP/ds2" >/dev/null || bad "synth 2"
tar -C "$TMP" -cf "$TMP/ds2.tar" ds2
http POST "/datasets?name=other" --data-binary "@$TMP/ds2.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "upload a second dataset"; DS2=$(jb .id)
post "$(job "$DIT4" "\"$VAE\"" full "$DS2")"
expect_status 201 "a latent job on the second dataset"; J3=$(jb .id)
wait_status "$J3" succeeded 60; check "it succeeded" [ $? -eq 0 ]
K2=$(ls "$LAT" | grep -v "^$K1\$")
check "it has a cache of its own: $K2" [ "$(wc -w <<<"$K2")" = 1 ]
# an interrupted encoding of the first dataset, one of a folder next to it, one with no source
fake() { mkdir -p "$LAT/$1/partial" && head -c 64 /dev/zero >"$LAT/$1/partial/chunk_000000.f32" &&
  if [ -n "$2" ]; then printf '%s' "$2" >"$LAT/$1/partial/dataset"; fi; }
fake unfinished "$SRC1"; fake sibling "$REAL_DATA/datasets/${DS}x/ds"; fake nosource ""
http POST /jobs -H 'Content-Type: application/json' -d "{\"method\": \"full\", \"base_model\": \"$DIT4\",
  \"vae\": \"$VAE\", \"dataset\": \"$DS\", \"hyperparameters\": {\"steps\": 1000000, \"batch_size\": 2},
  \"eval\": {\"sample_every\": 0, \"fid_every\": 0}, \"checkpoint\": {\"every\": 1000000}}"
expect_status 201 "a long job on the first dataset"; J4=$(jb .id)
http DELETE "/datasets/$DS"; expect_error 409 in_use - "delete the dataset while a job uses it"
check "the refused deletion kept every cache" [ "$(ls "$LAT" | wc -l)" = 5 ]
http POST "/jobs/$J4/cancel"; expect_status 200 "cancel the long job"
wait_status "$J4" cancelled 60; check "the long job is cancelled" [ $? -eq 0 ]
http DELETE "/datasets/$DS"; expect_status 200 "delete the first dataset"
check "its finished cache is gone" not test -e "$LAT/$K1"
check "its unfinished cache is gone" not test -e "$LAT/unfinished"
check "the dataset's folder is gone" not test -e "$DATA/datasets/$DS"
check "the other caches stay: $(ls "$LAT" | tr '\n' ' ')" \
  [ "$(ls "$LAT" | sort | tr '\n' ' ')" = "$(printf '%s\n' "$K2" nosource sibling | sort | tr '\n' ' ')" ]
check "the second dataset's cache is whole" test -s "$LAT/$K2/latents.safetensors"
http DELETE "/datasets/$DS2"; expect_status 200 "delete the second dataset"
check "its cache is gone; the sourceless and the sibling's stay" [ "$(ls "$LAT" | tr '\n' ' ')" = "nosource sibling " ]
serve_stop; check "clean shutdown" [ $? -eq 0 ]
finish
