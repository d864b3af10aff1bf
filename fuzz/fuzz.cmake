# fuzz.cmake — the libFuzzer targets (fuzz/README.md), included by the top-level CMakeLists.txt
# when DIFFTUNE_FUZZ is ON (clang; every library is then built with -fsanitize=fuzzer-no-link,
# address, undefined). Each fuzz/fuzz_<name>.c is one executable linked with libFuzzer; its seed
# corpus is fuzz/corpus/<name>/ and its dictionary, if any, fuzz/<name>.dict. Build only these:
#   cmake --build BUILD --target difftune_fuzz

set(FUZZ_DIR ${CMAKE_SOURCE_DIR}/fuzz)

# The HTTP API's sources as a library, for the router and request targets. The API is compiled
# straight into the difftune binary, so its settings (include folders, definitions, libraries)
# are taken from that target rather than repeated here. Its compiled-in files get their own
# generated copy so no rule is shared with the binary's.
set(FUZZ_ASSETS_C ${CMAKE_BINARY_DIR}/fuzz_assets.c)
add_custom_command(OUTPUT ${FUZZ_ASSETS_C}
  COMMAND ${CMAKE_COMMAND} -DMANIFEST=${ASSETS_MANIFEST} -DOUT=${FUZZ_ASSETS_C}
          -P ${CMAKE_SOURCE_DIR}/api/assets.cmake
  DEPENDS ${ASSETS_MANIFEST} ${ASSETS_FILES} ${CMAKE_SOURCE_DIR}/api/assets.cmake)
add_library(difftune_fuzz_api STATIC EXCLUDE_FROM_ALL ${API_SRC} ${FUZZ_ASSETS_C})
foreach(prop INCLUDE_DIRECTORIES COMPILE_DEFINITIONS LINK_LIBRARIES)
  get_target_property(_fuzz_api_${prop} difftune ${prop})
  if(NOT _fuzz_api_${prop})
    set(_fuzz_api_${prop} "")
  endif()
endforeach()
target_include_directories(difftune_fuzz_api PUBLIC ${_fuzz_api_INCLUDE_DIRECTORIES})
target_compile_definitions(difftune_fuzz_api PRIVATE ${_fuzz_api_COMPILE_DEFINITIONS})
target_link_libraries(difftune_fuzz_api PUBLIC ${_fuzz_api_LINK_LIBRARIES})

# name -> what it links
set(FUZZ_TARGETS spec idx safetensors ingest request router)
set(FUZZ_LIBS_spec difftune_engine)
set(FUZZ_LIBS_idx difftune_engine)
set(FUZZ_LIBS_safetensors difftune_ingest)
set(FUZZ_LIBS_ingest difftune_ingest)
set(FUZZ_LIBS_request difftune_fuzz_api)
set(FUZZ_LIBS_router difftune_fuzz_api)

add_custom_target(difftune_fuzz)
foreach(name ${FUZZ_TARGETS})
  add_executable(fuzz_${name} EXCLUDE_FROM_ALL ${FUZZ_DIR}/fuzz_${name}.c)
  target_include_directories(fuzz_${name} PRIVATE ${FUZZ_DIR})
  target_link_libraries(fuzz_${name} PRIVATE ${FUZZ_LIBS_${name}})
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(fuzz_${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  add_dependencies(difftune_fuzz fuzz_${name})
endforeach()
# Archive extraction must never create anything outside its destination: every mkdir and open
# that the ingest code makes goes through fuzz_ingest.c's checking wrappers.
target_link_options(fuzz_ingest PRIVATE -Wl,--wrap=mkdir,--wrap=open)
