# racecheck's tests, included from src/racecheck/CMakeLists.txt.
#   unit: tests/racecheck/test_rc_*.c (cmocka; the engine ones talk to an
#         in-test socket server on 127.0.0.1)
#   e2e:  every example scenario against a real racefreed (and --unsafe)
#   fuzz: tests/racecheck/fuzz_*.c with -DRF_FUZZ=ON (clang preset `fuzz`)
set(RC_TEST_DIR ${PROJECT_SOURCE_DIR}/tests/racecheck)
pkg_check_modules(RC_CMOCKA REQUIRED IMPORTED_TARGET cmocka)
enable_testing()

add_library(rc_testsrv STATIC ${RC_TEST_DIR}/rc_testsrv.c)
target_include_directories(rc_testsrv PUBLIC ${RC_TEST_DIR})
target_link_libraries(rc_testsrv PUBLIC racecheck_core PkgConfig::RC_CMOCKA)

file(GLOB RC_TESTS CONFIGURE_DEPENDS ${RC_TEST_DIR}/test_rc_*.c)
foreach(src ${RC_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE rc_testsrv)
  target_compile_definitions(${name} PRIVATE RC_TEST_DATA="${RC_TEST_DIR}/data"
                                             RC_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  add_test(NAME racecheck.${name} COMMAND ${name})
  set_tests_properties(racecheck.${name} PROPERTIES TIMEOUT 120 LABELS unit)
endforeach()

if(TARGET racefreed AND EXISTS ${RC_TEST_DIR}/e2e_examples.sh)
  add_test(NAME racecheck.e2e_examples
           COMMAND bash ${RC_TEST_DIR}/e2e_examples.sh $<TARGET_FILE:racecheck>
                   $<TARGET_FILE:racefreed> ${PROJECT_SOURCE_DIR}/examples/scenarios)
  set_tests_properties(racecheck.e2e_examples PROPERTIES TIMEOUT 900 LABELS e2e)
endif()

find_program(RC_NGINX nginx PATHS /usr/sbin /sbin)
find_program(RC_OPENSSL openssl)
if(RC_NGINX AND RC_OPENSSL)
  add_test(NAME racecheck.e2e_tls COMMAND bash ${RC_TEST_DIR}/e2e_tls.sh $<TARGET_FILE:racecheck>)
  set_tests_properties(racecheck.e2e_tls PROPERTIES TIMEOUT 120 LABELS e2e
                       ENVIRONMENT "PATH=/usr/sbin:/sbin:$ENV{PATH}")
endif()

if(RF_FUZZ)
  target_compile_options(racecheck_core PRIVATE -fsanitize=fuzzer-no-link)
  file(GLOB RC_FUZZERS CONFIGURE_DEPENDS ${RC_TEST_DIR}/fuzz_*.c)
  foreach(src ${RC_FUZZERS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE racecheck_core)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                             ${PROJECT_BINARY_DIR}/tests/fuzz)
  endforeach()
endif()
