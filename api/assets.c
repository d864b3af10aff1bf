/* assets.c — answering from the compiled-in files (assets.h): the web UI under /ui/, the root
 * page, and the OpenAPI document. Every file is revalidated on each use (Cache-Control:
 * no-cache) against its content hash (ETag), so a rebuilt server never leaves a browser on old
 * modules, and an unchanged file costs a 304. */
#include <stdio.h>
#include <string.h>

#include "assets.h"
#include "http.h"

/* What a page of the UI may load and contact: only this server. Inline styles are allowed for
 * the chart library, which sizes its canvas with them; scripts never run inline. */
#define ASSETS_CSP                                                                                \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' " \
    "data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const api_asset *api_asset_find(const char *url) {
    for (int i = 0; i < api_asset_count; i++)
        if (!strcmp(api_assets[i].url, url)) return &api_assets[i];
    return NULL;
}

void api_serve_asset(api_req *r, const api_asset *a, const char *vary) {
    const char *h[] = {"ETag", a->etag, "Cache-Control", "no-cache", "X-Content-Type-Options", "nosniff",
                       "Content-Security-Policy", ASSETS_CSP, vary ? "Vary" : NULL, vary, NULL};
    if (api_etag_matches(api_header(r, "If-None-Match"), a->etag)) {
        api_reply_json(r, 304, NULL, h);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, "Content-Type", a->content_type);
        for (int i = 0; h[i]; i += 2) MHD_add_response_header(resp, h[i], h[i + 1]);
    }
    api_reply_response(r, 200, resp);
}

void api_web_file(api_req *r) {
    char url[sizeof r->params[0] + 8];
    snprintf(url, sizeof url, "/ui/%s", r->params[0]);
    const api_asset *a = api_asset_find(url);
    if (!a) {
        api_reply_error(r, 404, "not_found", NULL, "no such file of the web UI: %s", url);
        return;
    }
    api_serve_asset(r, a, NULL);
}
