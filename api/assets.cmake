# assets.cmake — turns the files named in a manifest into a C source that defines the table of
# files the server answers from memory (api/assets.h): the web UI and the OpenAPI document.
#   cmake -DMANIFEST=assets.manifest -DOUT=assets.c -P assets.cmake
# The manifest has one line per file: URL|CONTENT-TYPE|PATH (text/* types get "; charset=utf-8"
# here: a semicolon cannot travel through a CMake list). Each file's bytes are followed by
# a NUL; its ETag is the quoted SHA-256 of its bytes.
file(STRINGS ${MANIFEST} lines)
set(bodies "")
set(table "")
set(i 0)
foreach(line IN LISTS lines)
  string(REPLACE "|" ";" parts "${line}")
  list(GET parts 0 url)
  list(GET parts 1 type)
  list(GET parts 2 path)
  if(type MATCHES "^text/")
    string(APPEND type "; charset=utf-8")
  endif()
  file(READ ${path} hex HEX)
  file(SHA256 ${path} digest)
  string(LENGTH "${hex}" n)
  math(EXPR len "${n} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
  string(APPEND bodies "static const unsigned char asset_${i}[] = {${body}0x00};\n")
  string(APPEND table "    {\"${url}\", \"${type}\", asset_${i}, ${len}, \"\\\"${digest}\\\"\"},\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE ${OUT}.tmp "/* generated from ${MANIFEST} by api/assets.cmake; do not edit */\n"
  "#include \"assets.h\"\n\n${bodies}\n"
  "const api_asset api_assets[] = {\n${table}};\n"
  "const int api_asset_count = ${i};\n")
file(RENAME ${OUT}.tmp ${OUT})
