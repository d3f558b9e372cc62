# `cmake --install build/release --prefix DIR`: headers, libbnlab.so and
# libbnlab_nn.so, the bnlab tool, a CMake package exporting bnlab::bnlab (the
# kernels and the C API) and bnlab::nn (the toolkit), and pkg-config files.
include(CMakePackageConfigHelpers)

install(TARGETS bnlab bnlab_nn EXPORT bnlabTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS bnlab_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The lab is the tool's; its headers stay in the tree.
install(DIRECTORY include/bnlab DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        PATTERN lab EXCLUDE)

set(bnlab_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/bnlab)
install(EXPORT bnlabTargets NAMESPACE bnlab:: FILE bnlabTargets.cmake
        DESTINATION ${bnlab_cmake_dir})
configure_package_config_file(cmake/bnlabConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/bnlabConfig.cmake INSTALL_DESTINATION ${bnlab_cmake_dir})
# 0.x: a minor version may change the C++ API, so only the same minor matches.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/bnlabConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/bnlabConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/bnlabConfigVersion.cmake
        DESTINATION ${bnlab_cmake_dir})

# The .pc files find the prefix from where they lie, so any --prefix works.
file(RELATIVE_PATH pc_prefix /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
foreach(pc bnlab bnlab-nn)
  configure_file(cmake/${pc}.pc.in ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
