-- wrk_post_job.lua — POST /jobs for bench/bench_server.sh: every request creates a job (the
-- store grows by one job and one status event per request). The dataset id comes from the
-- environment: DATASET=ds_... wrk -s bench/wrk_post_job.lua http://127.0.0.1:PORT/jobs
local ds = os.getenv("DATASET") or error("set DATASET to the id of an uploaded dataset")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"method": "pretrain", "dataset": "' .. ds .. '", ' ..
           '"model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, ' ..
           '"patch_size": 2, "image_size": 8}, ' ..
           '"hyperparameters": {"steps": 10, "batch_size": 4}, "device": "cpu"}'

-- No response() callback: it would run Lua per answer and slow wrk down. wrk reports
-- non-2xx answers itself, and the script checks the server's per-route counters.
