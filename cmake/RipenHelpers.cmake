# Compile options for ripen's own targets: warnings are errors here, never for
# the Debian headers we include (those are SYSTEM include directories).
function(ripen_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                           -Wnon-virtual-dtor -Wno-missing-field-initializers)
  if(RIPEN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(RIPEN_SANITIZE)
    # This build is for finding errors, not for speed. At -O2 -g, UBSan's checks make
    # GCC about nine times slower (143 s against 16 s for one test file, 26 min for
    # the whole tree on CI); at -O0 -g1 (line tables: enough for the reports' stacks)
    # a file costs what it does in the optimized build. Asserts stay on.
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined -O0 -g1 -UNDEBUG)
    # A library's users (an installed one's too) must link the sanitizers' runtime.
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "STATIC_LIBRARY")
      target_link_options(${target} INTERFACE -fsanitize=address,undefined)
    else()
      target_link_options(${target} PRIVATE -fsanitize=address,undefined)
    endif()
  endif()
  if(RIPEN_TSAN)
    # ThreadSanitizer: data races between the worker's and the dispatcher's
    # threads. -O1 keeps the run time of the instrumented tests reasonable (TSan
    # slows code 5-15x); -g1 (line tables) is enough for the reports' stacks.
    # Only ripen's own code is instrumented: Debian's libraries are not, so a
    # race through one of them shows up only where ripen's side touches the data
    # (tests/tsan.supp lists the few reports inside them, with the reason).
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer -O1 -g1)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "STATIC_LIBRARY")
      target_link_options(${target} INTERFACE -fsanitize=thread)
    else()
      target_link_options(${target} PRIVATE -fsanitize=thread)
    endif()
  endif()
endfunction()

# A component library: public headers in include/, sources in src/.
function(ripen_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
                                            $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  ripen_target_defaults(${name})
endfunction()

function(ripen_add_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  ripen_target_defaults(${name})
endfunction()

# One of the programs a user runs (ripen, ripen-dispatcher, ripen-worker):
# built by the `programs` target, with --version (ripen_version), and reachable
# from one directory, build/bin/, through a symlink to the binary (tests and
# scripts keep using its place in the tree, e.g. build/producer/ripen).
function(ripen_add_program name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  ripen_add_executable(${name} SOURCES ${ARG_SOURCES} DEPS ${ARG_DEPS} ripen_version)
  add_custom_command(TARGET ${name} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bin
    COMMAND ${CMAKE_COMMAND} -E create_symlink $<TARGET_FILE:${name}> ${CMAKE_BINARY_DIR}/bin/${name}
    VERBATIM)
  if(NOT TARGET programs)
    add_custom_target(programs)
  endif()
  add_dependencies(programs ${name})
endfunction()

# Test programs are named by suffix: *_test.cc are unit tests that never touch a
# server (label `unit`); *_itest.cc need the real Redis and RabbitMQ that the
# test command starts (label `integration`). Each is built by the target of its
# label, `unit-tests` or `integration-tests` (tests/CMakeLists.txt), so a build
# dir builds only the suites it runs.
function(ripen_add_tests)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  foreach(src ${ARG_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
    ripen_target_defaults(${name})
    if(name MATCHES "_itest$")
      set(label integration)
    else()
      set(label unit)
    endif()
    add_dependencies(${label}-tests ${name})
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS ${label} TIMEOUT 300
      ENVIRONMENT "RIPEN_BUILD_DIR=${CMAKE_BINARY_DIR}")
  endforeach()
endfunction()
