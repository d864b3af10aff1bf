#!/usr/bin/env bash
# test_openapi.sh — api/openapi.json against the route table in api/routes.c: the document is
# OpenAPI 3.1 JSON, every route is documented with its method (and no operation exists that the
# server does not route), each operation has a unique operationId named after its route, the
# scope its route needs (x-scope, security, and 401/403/429 where a key is needed), a 2xx
# and an error response, a request body exactly when the route takes one (with the media types
# the route accepts), path parameters matching its template, and every "$ref" resolves.
# Needs only python3's standard library; the server binary is not used.
#
# usage: DIFFTUNE_SOURCE=. bash tests/test_openapi.sh [openapi.json [routes.c]]
set -u
SRC=${DIFFTUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
PY=${DIFFTUNE_PYTHON:-python3}
DOC=${1:-$SRC/api/openapi.json}
ROUTES=${2:-$SRC/api/routes.c}

exec "$PY" - "$DOC" "$ROUTES" <<'PYTHON'
import json
import re
import sys

doc_path, routes_path = sys.argv[1], sys.argv[2]
failures = []


def fail(msg):
    failures.append(msg)


def finish(summary):
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    print(summary)
    if failures:
        print("test_openapi: %d failure(s)" % len(failures), file=sys.stderr)
        sys.exit(1)
    print("test_openapi: ok")
    sys.exit(0)


# ---- the route table -----------------------------------------------------------------------

def c_strings(text):
    """Concatenates the adjacent C string literals in text (no escapes are used in routes.c)."""
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))


try:
    with open(routes_path, encoding="utf-8") as f:
        csrc = f.read()
except OSError as e:
    failures.append("cannot read %s: %s" % (routes_path, e))
    finish("no routes")

csrc = re.sub(r"/\*.*?\*/", " ", csrc, flags=re.S)      # comments
csrc = csrc.replace("\\\n", " ")                          # macro continuation lines
macros = {}
for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(.*)$", csrc, flags=re.M):
    if '"' in m.group(2):
        macros[m.group(1)] = c_strings(m.group(2))

table = re.search(r"api_routes\s*\[\s*\]\s*=\s*\{(.*?)\n\s*\}\s*;", csrc, flags=re.S)
if not table:
    fail("%s: no api_routes[] table found" % routes_path)
    finish("no routes")

ROUTE_RE = re.compile(
    r'\{\s*"([A-Z]+)"\s*,\s*"([^"]*)"\s*,\s*(API_BODY_\w+)\s*,\s*(\w+)\s*,\s*"([^"]+)"\s*,'
    r'\s*(NULL|\w+|(?:"(?:[^"\\]|\\.)*"\s*)+)\s*(?:,\s*[01]\s*)?(?:,\s*(0|DT_SCOPE_\w+)\s*)?\}', re.S)
routes = []
for m in ROUTE_RE.finditer(table.group(1)):
    method, pattern, body, _handler, name, accepts, scope = m.groups()
    if accepts == "NULL":
        types = None
    elif accepts.startswith('"'):
        types = c_strings(accepts)
    elif accepts in macros:
        types = macros[accepts]
    else:
        fail("route %s: cannot resolve its media types %s" % (name, accepts))
        types = ""
    routes.append({"method": method.lower(), "pattern": pattern, "body": body, "name": name,
                   "scope": {None: None, "0": "public", "DT_SCOPE_READ": "read", "DT_SCOPE_SUBMIT": "submit",
                             "DT_SCOPE_ADMIN": "admin"}.get(scope, "?" + str(scope)),
                   "accepts": None if types is None else
                   sorted(t.strip().lower() for t in types.split(",") if t.strip())})
# Every "{ "METHOD", ..." entry must have parsed, or a route would go unchecked.
entries = len(re.findall(r'\{\s*"[A-Z]+"\s*,', table.group(1)))
if entries != len(routes) or not routes:
    fail("parsed %d of %d entries of api_routes[] in %s" % (len(routes), entries, routes_path))


def route_key(method, path):
    """The route a documented path stands for: every {param} segment becomes {}."""
    return method, re.sub(r"\{[^{}/]+\}", "{}", path)


# A final {*} (the rest of the path) is documented as one {param} like any other.
routed = {(r["method"], r["pattern"].replace("{*}", "{}")): r for r in routes}

# ---- the document --------------------------------------------------------------------------

try:
    with open(doc_path, encoding="utf-8") as f:
        doc = json.load(f)
except (OSError, ValueError) as e:
    failures.append("%s does not parse as JSON: %s" % (doc_path, e))
    finish("no document")

if not isinstance(doc, dict):
    fail("the document is not a JSON object")
    finish("no document")
if not str(doc.get("openapi", "")).startswith("3.1"):
    fail('"openapi" is %r, expected 3.1.x' % doc.get("openapi"))
info = doc.get("info")
if not isinstance(info, dict) or not info.get("title") or not info.get("version"):
    fail("info needs a title and a version")
paths = doc.get("paths")
if not isinstance(paths, dict):
    fail('"paths" is missing or not an object')
    paths = {}

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def resolve(ref):
    """The object a local "$ref" points at, or None when it does not resolve."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = doc
    if ref in ("#", "#/"):
        return node
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def deref(obj):
    seen = 0
    while isinstance(obj, dict) and "$ref" in obj and seen < 16:
        obj = resolve(obj["$ref"])
        seen += 1
    return obj


documented = set()
op_ids = {}
n_ops = 0
for path, item in paths.items():
    if not path.startswith("/") or not isinstance(item, dict):
        fail("paths: %r is not a path item" % path)
        continue
    template_params = set(re.findall(r"\{([^{}/]+)\}", path))
    common = item.get("parameters", [])
    for method in (k for k in item if k in METHODS):
        o = item[method]
        where = "%s %s" % (method.upper(), path)
        n_ops += 1
        key = route_key(method, path)
        if method == "head":  # the server answers HEAD on every GET route
            key = route_key("get", path)
        route = routed.get(key)
        if not route:
            fail("%s is documented but api/routes.c has no such route" % where)
        elif method != "head":
            documented.add((route["method"], route["pattern"]))
        if not isinstance(o, dict):
            fail("%s is not an operation object" % where)
            continue
        oid = o.get("operationId")
        if not oid:
            fail("%s has no operationId" % where)
        elif oid in op_ids:
            fail("%s: operationId %s is also used by %s" % (where, oid, op_ids[oid]))
        else:
            op_ids[oid] = where
            if route and method != "head" and oid != route["name"].replace(".", "_"):
                fail("%s: operationId %s, expected %s (route %s)" % (
                    where, oid, route["name"].replace(".", "_"), route["name"]))
        responses = o.get("responses")
        if not isinstance(responses, dict) or not responses:
            fail("%s has no responses" % where)
            responses = {}
        codes = [str(c) for c in responses]
        # access: the documented scope is the route's, and a keyed route documents how keys fail
        if route and method != "head":
            if o.get("x-scope") != route["scope"]:
                fail("%s: x-scope %r, but the route needs %r" % (where, o.get("x-scope"), route["scope"]))
            sec = o.get("security")
            if route["scope"] == "public":
                if sec != []:
                    fail("%s is public: security must be []" % where)
            else:
                names = sorted(k for req in (sec or []) for k in req)
                want = ["apiKey", "session"] if method == "get" else ["apiKey"]
                if names != want:
                    fail("%s: security %s, expected %s (sessions carry reads only)" % (where, names, want))
                for c in ("401", "403", "429"):
                    if c not in codes:
                        fail("%s needs a key but documents no %s" % (where, c))
        if not any(re.fullmatch(r"2(\d\d|XX)", c) for c in codes):
            fail("%s has no 2xx response" % where)
        if not any(re.fullmatch(r"4(\d\d|XX)", c) or c == "default" for c in codes):
            fail("%s has neither a 4xx nor a default response" % where)
        # path parameters: exactly the template's, each required
        params = [deref(p) for p in common + o.get("parameters", [])]
        in_path = set()
        for p in params:
            if not isinstance(p, dict):
                continue
            if p.get("in") == "path":
                in_path.add(p.get("name"))
                if p.get("required") is not True:
                    fail("%s: path parameter %s must be required" % (where, p.get("name")))
        if in_path != template_params:
            fail("%s: path parameters %s do not match the template's %s" % (
                where, sorted(in_path), sorted(template_params)))
        # request body: present exactly when the route takes one, with its media types
        body = deref(o.get("requestBody"))
        if route and method != "head":
            if route["body"] == "API_BODY_NONE":
                if body is not None:
                    fail("%s documents a request body; the route takes none" % where)
            elif not isinstance(body, dict) or not isinstance(body.get("content"), dict):
                fail("%s takes a body (%s) but documents none" % (where, route["body"]))
            else:
                got = set(t.lower() for t in body["content"])
                want = set(route["accepts"])
                if got != want:
                    fail("%s: request media types differ from the route's: missing %s, extra %s"
                         % (where, sorted(want - got), sorted(got - want)))

for r in routes:
    if (r["method"], r["pattern"]) not in documented:
        fail("route %s %s (%s) is not documented" % (r["method"].upper(), r["pattern"], r["name"]))

# ---- every $ref resolves -------------------------------------------------------------------

n_refs = 0


def walk(node, where):
    global n_refs
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                n_refs += 1
                if resolve(v) is None:
                    fail("%s: $ref %s does not resolve inside the document" % (where, v))
            else:
                walk(v, where + "/" + str(k).replace("~", "~0").replace("/", "~1"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, "%s/%d" % (where, i))


walk(doc, "#")

components = doc.get("components", {}) if isinstance(doc.get("components"), dict) else {}
finish("openapi %s: %d paths, %d operations (%d routes in routes.c), %d schemas, %d refs" % (
    doc.get("openapi"), len(paths), n_ops, len(routes), len(components.get("schemas", {})),
    n_refs))
PYTHON
