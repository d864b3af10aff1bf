# embed.cmake — turns the file IN into a C source OUT defining
#   const unsigned char api_openapi_json[]; const unsigned long api_openapi_json_len;
# (cmake -DIN=... -DOUT=... -P embed.cmake). The bytes are followed by a NUL.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* generated from ${IN} by embed.cmake; do not edit */\n"
  "const unsigned char api_openapi_json[] = {${body}0x00};\n"
  "const unsigned long api_openapi_json_len = ${len};\n")
