# Run at build time (cmake -P), on every build: writes OUTPUT, the C++ source
# that tells the programs' --version the project version and the commit the
# tree is at, so a new commit shows without a re-configure. The file is
# rewritten only when its content changes: otherwise nothing recompiles or
# relinks.
#
#   cmake -DOUTPUT=FILE -DVERSION=0.1.0 -DSOURCE_DIR=DIR [-DGIT=/usr/bin/git] -P RipenVersion.cmake
#
# The commit is `git rev-parse --short HEAD` of SOURCE_DIR, with "-dirty" when
# tracked files differ from it; "unknown" when git is missing or SOURCE_DIR is
# not the top of a git checkout (a tarball unpacked inside another repository
# must not print that repository's commit).
foreach(var OUTPUT VERSION SOURCE_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "RipenVersion.cmake: -D${var}=... is required")
  endif()
endforeach()

set(commit unknown)
if(GIT)
  execute_process(COMMAND ${GIT} -C ${SOURCE_DIR} rev-parse --show-toplevel
    RESULT_VARIABLE rc OUTPUT_VARIABLE top OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0)
    file(REAL_PATH "${top}" top)
    file(REAL_PATH "${SOURCE_DIR}" source)
  endif()
  if(rc EQUAL 0 AND top STREQUAL source)
    execute_process(COMMAND ${GIT} -C ${SOURCE_DIR} rev-parse --short HEAD
      RESULT_VARIABLE rc OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(rc EQUAL 0 AND head MATCHES "^[0-9a-f]+$")
      set(commit ${head})
      # --no-optional-locks: a build must not take the index lock a user's
      # git command may be holding.
      execute_process(COMMAND ${GIT} --no-optional-locks -C ${SOURCE_DIR} status --porcelain --untracked-files=no
        RESULT_VARIABLE rc OUTPUT_VARIABLE changes ERROR_QUIET)
      if(NOT rc EQUAL 0 OR NOT changes STREQUAL "")
        string(APPEND commit "-dirty")
      endif()
    endif()
  endif()
endif()

set(content "// Written by cmake/RipenVersion.cmake at build time; do not edit.
#include \"ripen/version.h\"

namespace ripen {
std::string_view version() { return \"${VERSION}\"; }
std::string_view build_commit() { return \"${commit}\"; }
}  // namespace ripen
")
set(old "")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
endif()
if(NOT old STREQUAL content)
  file(WRITE ${OUTPUT} "${content}")
endif()
