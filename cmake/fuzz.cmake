# rf_add_fuzz_target(NAME SOURCE CORPUS_DIR LIBS...)
# With RF_FUZZ=ON (clang preset `fuzz`): a libFuzzer binary in
# ${PROJECT_BINARY_DIR}/tests/fuzz/ that scripts/fuzz.sh runs for a bounded
# time. Otherwise: the same target linked with tests/support/fuzz_main.c and
# registered as a ctest that replays the seed corpus (label fuzz-replay).
function(rf_add_fuzz_target name source corpus)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${ARGN})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/fuzz)
  if(RF_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support/fuzz_main.c)
    if(RF_BUILD_TESTS)
      add_test(NAME fuzz-replay.${name} COMMAND ${name} ${corpus})
      set_tests_properties(fuzz-replay.${name} PROPERTIES TIMEOUT 120 LABELS fuzz-replay)
    endif()
  endif()
endfunction()
