# The optional CUDA target: adamkern._cuda, the same per-element math (math/*.hpp) run by
# multi-tensor kernels on device memory. Included from CMakeLists.txt when ADAMKERN_CUDA=ON.

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR
    "ADAMKERN_CUDA=ON but no CUDA compiler (nvcc) was found. Install the CUDA toolkit and put "
    "nvcc on PATH (or set CUDACXX=/path/to/nvcc), or build without ADAMKERN_CUDA for the "
    "CPU-only package.")
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES ${ADAMKERN_CUDA_ARCHITECTURES})
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "adamkern: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
# Static runtime: adamkern._cuda imports on a machine without a driver (device_count() is 0).
set(CMAKE_CUDA_RUNTIME_LIBRARY Static)

# One object file per param dtype, so the kernels compile in parallel. --fmad=false is the
# device's -ffp-contract=off: an fma happens only where the math headers write one, so the
# device rounds exactly as the CPU kernels do. Division and sqrt stay IEEE (no fast math).
add_library(adamkern_cuda STATIC
  cpp/src/cuda/kernels_f32.cu cpp/src/cuda/kernels_f64.cu cpp/src/cuda/kernels_f16.cu
  cpp/src/cuda/kernels_bf16.cu cpp/src/cuda/adafactor.cu cpp/src/cuda/runtime.cu)
target_include_directories(adamkern_cuda PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/cpp/include
                                                ${CMAKE_CURRENT_SOURCE_DIR}/cpp/src/cuda)
target_compile_options(adamkern_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false --expt-relaxed-constexpr -O3 -Xcompiler=-fno-math-errno>)
target_link_libraries(adamkern_cuda PUBLIC CUDA::cudart_static)
set_target_properties(adamkern_cuda PROPERTIES CUDA_SEPARABLE_COMPILATION OFF
                                               POSITION_INDEPENDENT_CODE ON)

if(ADAMKERN_PYTHON)
  pybind11_add_module(_cuda MODULE cpp/bindings/cuda_module.cpp cpp/bindings/keywords.cpp)
  target_link_libraries(_cuda PRIVATE adamkern adamkern_cuda)
  install(TARGETS _cuda LIBRARY DESTINATION adamkern)
endif()
