cmake_minimum_required(VERSION 3.25)
# cmake -DBUILD_DIR= -DSOURCE_DIR= -DWORK_DIR= -DGENERATOR= -DCXX_COMPILER= -DFLAGS= -P install_and_consume.cmake

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "failed (${status}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(path include/bnlab/bnlab.h include/bnlab/batch_norm.hpp include/bnlab/nn/layers.hpp
             lib/libbnlab.so lib/libbnlab_nn.so lib/cmake/bnlab/bnlabConfig.cmake
             lib/cmake/bnlab/bnlabConfigVersion.cmake lib/pkgconfig/bnlab.pc
             lib/pkgconfig/bnlab-nn.pc bin/bnlab)
  if(NOT EXISTS ${prefix}/${path})
    message(FATAL_ERROR "the install has no ${path}")
  endif()
endforeach()

# The installed tool finds its libraries by itself (RUNPATH $ORIGIN/../lib).
run(${prefix}/bin/bnlab --help)
if(NOT last_output MATCHES "demo")
  message(FATAL_ERROR "bin/bnlab --help printed no command list:\n${last_output}")
endif()

# C, through pkg-config.
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
run(pkg-config --cflags --libs bnlab)
separate_arguments(pc_flags UNIX_COMMAND "${last_output}")
separate_arguments(extra_flags UNIX_COMMAND "${FLAGS}")
run(cc -std=c99 ${extra_flags} ${SOURCE_DIR}/consumer.c ${pc_flags} -lm -o ${WORK_DIR}/c_consumer)
set(ENV{LD_LIBRARY_PATH} ${prefix}/lib)
run(${WORK_DIR}/c_consumer)
message(STATUS "C consumer: ${last_output}")

# C++, through find_package.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/cxx_consumer -B ${WORK_DIR}/cxx -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_CXX_FLAGS=${FLAGS}"
    -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cxx)
run(${WORK_DIR}/cxx/cxx_consumer)
message(STATUS "C++ consumer: ${last_output}")
