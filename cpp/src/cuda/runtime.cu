// Runtime helpers of the CUDA target (device queries, copies), kept out of the kernel files.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "launch.hpp"

namespace adamkern::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return 0;
  }
  return count;
}

int pointer_device(std::uintptr_t pointer) {
  if (device_count() == 0) return -1;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, reinterpret_cast<const void*>(pointer)) !=
      cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged
             ? attributes.device
             : -1;
}

void copy_async(std::uintptr_t destination, std::uintptr_t source, std::int64_t bytes,
                std::uintptr_t stream, int device) {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  const cudaError_t status =
      cudaMemcpyAsync(reinterpret_cast<void*>(destination), reinterpret_cast<const void*>(source),
                      static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice,
                      reinterpret_cast<cudaStream_t>(stream));
  cudaSetDevice(previous);
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("adamkern CUDA: cudaMemcpyAsync failed: ") +
                             cudaGetErrorString(status));
  }
}

void synchronize(int device) {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  const cudaError_t status = cudaDeviceSynchronize();
  cudaSetDevice(previous);
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("adamkern CUDA: ") + cudaGetErrorString(status));
  }
}

const char* runtime_version_string() {
  static std::string version = [] {
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    return std::to_string(runtime / 1000) + "." + std::to_string((runtime % 1000) / 10);
  }();
  return version.c_str();
}

}  // namespace adamkern::cuda
