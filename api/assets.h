/* assets.h — the files the server answers from memory, compiled in by api/assets.cmake: the web
 * UI (web/, served under /ui/), the chart library it loads (/ui/vendor/, from node_modules when
 * npm ci has run before the build) and the OpenAPI document (/openapi.json). Internal to api/.
 */
#ifndef DT_API_ASSETS_H
#define DT_API_ASSETS_H

typedef struct {
    const char *url;          /* "/ui/js/app.js" */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const unsigned char *data;
    unsigned long len;        /* bytes (data has one NUL after them) */
    const char *etag;         /* "\"<sha256 hex>\"", quoted as HTTP sends it */
} api_asset;

extern const api_asset api_assets[];
extern const int api_asset_count;

/* The asset served at url, or NULL. */
const api_asset *api_asset_find(const char *url);

#endif
