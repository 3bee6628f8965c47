# Shared CMake helpers: warnings, the one torch precompiled header, and test registration.

# Warnings for our own targets only (no global flag edits).
function(mcm_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

# One precompiled header for <torch/torch.h>, shared by every torch translation unit.
add_library(mcm_torch_pch OBJECT ${CMAKE_SOURCE_DIR}/cmake/torch_pch.cpp)
target_link_libraries(mcm_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_precompile_headers(mcm_torch_pch PRIVATE <torch/torch.h>)
set_target_properties(mcm_torch_pch PROPERTIES POSITION_INDEPENDENT_CODE OFF)

function(mcm_use_torch target)
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_precompile_headers(${target} REUSE_FROM mcm_torch_pch)
endfunction()

# mcm_add_test(NAME name SOURCES ... LIBS ... [TORCH])
function(mcm_add_test)
  cmake_parse_arguments(T "TORCH" "NAME" "SOURCES;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(T_TORCH)
    mcm_use_torch(${T_NAME})
  endif()
  mcm_warnings(${T_NAME})
  # Paths are compiled in: gtest_discover_tests' PROPERTIES cannot carry a list-valued ENVIRONMENT.
  target_compile_definitions(${T_NAME} PRIVATE MCM_TEST_PYTHON="${Python3_EXECUTABLE}"
                             MCM_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  gtest_discover_tests(${T_NAME} DISCOVERY_TIMEOUT 120)
endfunction()

# mcm_add_mpi_test(NAME name NP n COMMAND ...): a test run under mpiexec, label "mpi".
set(MCM_MPI_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_btl=self,vader;OMPI_MCA_rmaps_base_oversubscribe=1;OMPI_MCA_btl_vader_single_copy_mechanism=none")
function(mcm_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;NP" "COMMAND" ${ARGN})
  add_test(NAME ${T_NAME}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${T_NP} --oversubscribe ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES PROCESSORS ${T_NP} TIMEOUT 600 LABELS mpi
    ENVIRONMENT "${MCM_MPI_ENV};MCM_SOURCE_DIR=${CMAKE_SOURCE_DIR};MCM_BINARY_DIR=${CMAKE_BINARY_DIR};MCM_PYTHON=${Python3_EXECUTABLE}")
endfunction()
