/* layout.h — where things live under the server's data directory (DESIGN.md section 4).
 *
 *   DIR/difftune.db                    the store (SQLite, WAL)
 *   DIR/datasets/<ds_id>/              an extracted, validated dataset upload (+ .preview.png)
 *   DIR/models/<mdl_id>/model.safetensors
 *   DIR/jobs/<job_id>/checkpoints/     step_NNNNNNN.safetensors (+ .state.safetensors)
 *   DIR/jobs/<job_id>/samples/         step_NNNNNNN.png
 *   DIR/jobs/<job_id>/log/worker.log   the workers' stderr, every attempt appended
 *   DIR/banks/<key>/                   knowledge banks shared by jobs with the same base and settings
 *   DIR/latents/<key>/                 datasets encoded by a VAE, shared by the jobs of a latent DiT
 *                                      on the same dataset and VAE (engine/latents.h)
 *   DIR/eval-cache/<key>.safetensors   reference statistics of a dataset for an extractor (eval.h)
 *   DIR/tmp/                           uploads in flight (removed when done)
 */
#ifndef DT_LAYOUT_H
#define DT_LAYOUT_H

#define DT_LAYOUT_DB "difftune.db"
#define DT_LAYOUT_DATASETS "datasets"
#define DT_LAYOUT_MODELS "models"
#define DT_LAYOUT_MODEL_FILE "model.safetensors"
#define DT_LAYOUT_JOBS "jobs"
#define DT_LAYOUT_CHECKPOINTS "checkpoints" /* in DIR/jobs/<job_id>/ */
#define DT_LAYOUT_BANKS "banks"
#define DT_LAYOUT_LATENTS "latents"
#define DT_LAYOUT_EVAL_CACHE "eval-cache"
#define DT_LAYOUT_TMP "tmp"
#define DT_LAYOUT_WORKER_LOG "log/worker.log"

#endif
