# `cmake --install` puts ripen's programs, its libraries for C++ users (the
# producer API and the worker API, with the shared parts they need), their
# headers, and a CMake package: another project does
#   find_package(ripen REQUIRED)
#   target_link_libraries(app PRIVATE ripen::producer)   # or ripen::worker
# The dependencies are the same Debian packages ripen builds with.
include(CMakePackageConfigHelpers)

set_target_properties(ripen_shared PROPERTIES EXPORT_NAME shared)
set_target_properties(ripen_producer PROPERTIES EXPORT_NAME producer)
set_target_properties(ripen_worker PROPERTIES EXPORT_NAME worker)

install(TARGETS ripen ripen-dispatcher ripen-worker RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ripen_shared ripen_producer ripen_worker
  EXPORT ripenTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# version.h belongs to the programs (library ripen_version), not to the API.
install(DIRECTORY shared/include/ripen producer/include/ripen worker/include/ripen
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} PATTERN version.h EXCLUDE)
install(FILES shared/envelope.schema.json DESTINATION ${CMAKE_INSTALL_DATADIR}/ripen)

set(RIPEN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ripen)
install(EXPORT ripenTargets NAMESPACE ripen:: DESTINATION ${RIPEN_CMAKE_DIR})
configure_package_config_file(cmake/ripenConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/ripenConfig.cmake
  INSTALL_DESTINATION ${RIPEN_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ripenConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ripenConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ripenConfigVersion.cmake
  DESTINATION ${RIPEN_CMAKE_DIR})
