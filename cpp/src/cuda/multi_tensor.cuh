// The CUDA kernels: every optimizer's per-element update (math/*.hpp, the same inline function
// the CPU loops call) run over many tensors per launch, apex's multi_tensor_apply idea.
//
// A launch covers up to kMaxTensors tensors. Each tensor is cut into chunks of kChunk elements;
// the chunks of all tensors of the launch are numbered in order and block b runs chunks b,
// b + gridDim.x, ... (so one launch of a few blocks per SM covers tensors of any size; every
// index is 64-bit). Within a chunk, a tensor whose streams are all 16-byte aligned (for the
// param dtype; twice that for float32 state beside 16-bit params) is read and written in
// 16-byte vectors, the chunk's last partial vector element by element; any other tensor goes
// element by element. Which elements a thread touches never changes the result: each element's
// update is independent and written once, so the bits are the CPU kernel's.
//
// Numerics: compiled with --fmad=false (no contraction, as the CPU's -ffp-contract=off), IEEE
// division and sqrt. 16-bit params and grads are widened to float32, updated in float32 and
// rounded to nearest even on store; their state is float32 or the param dtype. kTorchRemainder
// kernels (Adam, SGD) run the last size % 8 (float math) or size % 4 (double) elements of each
// tensor in the remainder form, as the CPU driver does, so CUDA and CPU agree bit for bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamkern/optimizers.hpp"
#include "common.cuh"
#include "launch.hpp"

namespace adamkern::cuda {
namespace {

constexpr int kMaxTensors = 36;  // keeps the kernel arguments well under 4 KB
constexpr std::int64_t kChunk = std::int64_t{1} << 16;
constexpr int kThreads = 512;
constexpr int kBlocksPerSm = 4;
constexpr int kStreams = 2 + kMaxStateBuffers;  // param, grad, state 0..3

// The tensors of one launch (a kernel argument).
struct LaunchTable {
  void* data[kStreams][kMaxTensors];
  std::int64_t size[kMaxTensors];
  std::int64_t first_chunk[kMaxTensors + 1];  // chunk numbers: tensor t has [first, next first)
  std::uint64_t vector_aligned;               // bit t: tensor t takes the 16-byte vector path
  int count;
};

// AMP and the device-resident scalars, read by every block (no host synchronisation).
struct DeviceScalars {
  const float* grad_scale;  // nullptr: host_grad_scale
  const float* found_inf;   // nullptr: never skip
  const float* lr;          // adam with device scalars only
  const float* step;
  float host_grad_scale;
  bool unscale;
};

// The device type of a storage type (the 16-bit tags of launch.hpp as CUDA's types).
template <class X>
using Storage =
    std::conditional_t<std::is_same_v<X, Half>, __half,
                       std::conditional_t<std::is_same_v<X, BFloat16>, __nv_bfloat16, X>>;

__device__ __forceinline__ float widen(float x) { return x; }
__device__ __forceinline__ double widen(double x) { return x; }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class X, class M>
__device__ __forceinline__ X narrow(M x) {
  if constexpr (std::is_same_v<X, __half>) {
    return __float2half_rn(x);
  } else if constexpr (std::is_same_v<X, __nv_bfloat16>) {
    return __float2bfloat16_rn(x);
  } else {
    return static_cast<X>(x);
  }
}

template <class X, int V>
struct alignas(sizeof(X) * V) Pack {
  X v[V];
};

template <int V, class X>
__device__ __forceinline__ void load(const void* base, std::int64_t i, X (&out)[V]) {
  const Pack<X, V> pack = *reinterpret_cast<const Pack<X, V>*>(static_cast<const X*>(base) + i);
#pragma unroll
  for (int j = 0; j < V; ++j) out[j] = pack.v[j];
}

template <int V, class X>
__device__ __forceinline__ void store(void* base, std::int64_t i, const X (&in)[V]) {
  Pack<X, V> pack;
#pragma unroll
  for (int j = 0; j < V; ++j) pack.v[j] = in[j];
  *reinterpret_cast<Pack<X, V>*>(static_cast<X*>(base) + i) = pack;
}

// The element width of the vector path: 16 bytes of params.
template <class P>
constexpr int vector_width() {
  return static_cast<int>(16 / sizeof(Storage<P>));
}

// The first element of a tensor that the CPU driver runs in the remainder form.
template <class K, class M>
__device__ __forceinline__ std::int64_t remainder_begin(std::int64_t size) {
  if constexpr (K::kTorchRemainder) {
    constexpr std::int64_t width = sizeof(M) == 4 ? 8 : 4;
    return size - size % width;
  } else {
    return size;
  }
}

// Elements [i, i + V) of one tensor in registers: the params, the grads and the state buffers
// in kReads, read from memory, widened to the math type element by element, narrowed again
// (the buffers in kWrites) and written back.
template <class P, class S, int V, unsigned kReads, unsigned kWrites>
struct Registers {
  using M = Math<P>;
  Storage<P> param[V], grad[V];
  Storage<S> state[kMaxStateBuffers][V];

  __device__ __forceinline__ void read(const LaunchTable& table, int t, std::int64_t i) {
    load<V>(table.data[0][t], i, param);
    load<V>(table.data[1][t], i, grad);
#pragma unroll
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((kReads >> k) & 1u) load<V>(table.data[2 + k][t], i, state[k]);
    }
  }

  // Element j in M; the grad unscaled (and kept so, rounded, for write()).
  __device__ __forceinline__ void widen_element(int j, bool unscale, M grad_scale, M& p, M& g,
                                                M (&s)[kMaxStateBuffers]) {
    p = widen(param[j]);
    g = widen(grad[j]);
    if (unscale) {
      g = g / grad_scale;
      grad[j] = narrow<Storage<P>>(g);
    }
#pragma unroll
    for (int k = 0; k < kMaxStateBuffers; ++k) s[k] = (kReads >> k) & 1u ? widen(state[k][j]) : M{};
  }

  __device__ __forceinline__ void narrow_state(int j, const M (&s)[kMaxStateBuffers]) {
#pragma unroll
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((kWrites >> k) & 1u) state[k][j] = narrow<Storage<S>>(s[k]);
    }
  }

  __device__ __forceinline__ void write(const LaunchTable& table, int t, std::int64_t i,
                                        bool params, bool grads) const {
    if (params) store<V>(table.data[0][t], i, param);
    if (grads) store<V>(table.data[1][t], i, grad);
#pragma unroll
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((kWrites >> k) & 1u) store<V>(table.data[2 + k][t], i, state[k]);
    }
  }
};

// Elements [i, i + V) of tensor t: load what the variant reads, update, store what it writes.
template <class K, int kVariant, class P, class S, int V>
__device__ __forceinline__ void update_elements(const LaunchTable& table, int t, std::int64_t i,
                                                std::int64_t remainder_from,
                                                const typename K::template Coefficients<Math<P>>& c,
                                                bool unscale, Math<P> grad_scale) {
  using M = Math<P>;
  Registers<P, S, V, K::reads(kVariant), K::writes(kVariant)> r;
  r.read(table, t, i);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    M p, g, s[kMaxStateBuffers];
    r.widen_element(j, unscale, grad_scale, p, g, s);
    if (K::kTorchRemainder && i + j >= remainder_from) {
      K::template update<M, kVariant, true>(p, g, s[0], s[1], s[2], s[3], c);
    } else {
      K::template update<M, kVariant, false>(p, g, s[0], s[1], s[2], s[3], c);
    }
    r.param[j] = narrow<Storage<P>>(p);
    r.narrow_state(j, s);
  }
  r.write(table, t, i, true, unscale);
}

// Elements [begin, end) of tensor t, spread over the block's threads: whole vectors of
// kVector where the tensor's buffers are vector-aligned, then one element at a time.
template <int kVector, class Body>
__device__ __forceinline__ void run_elements(const LaunchTable& table, int t, std::int64_t begin,
                                             std::int64_t end, const Body& body) {
  std::int64_t scalar_begin = begin;
  if ((table.vector_aligned >> t) & 1u) {
    scalar_begin = begin + (end - begin) / kVector * kVector;
    for (std::int64_t i = begin + std::int64_t{threadIdx.x} * kVector; i < scalar_begin;
         i += std::int64_t{blockDim.x} * kVector) {
      body.template run<kVector>(t, i);
    }
  }
  for (std::int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    body.template run<1>(t, i);
  }
}

// The first and one-past-last element of chunk `chunk` of tensor t.
__device__ __forceinline__ void chunk_bounds(const LaunchTable& table, int t, std::int64_t chunk,
                                             std::int64_t& begin, std::int64_t& end) {
  begin = (chunk - table.first_chunk[t]) * kChunk;
  end = begin + kChunk < table.size[t] ? begin + kChunk : table.size[t];
}

// The tensor of chunk `chunk` (chunks are numbered through the tensors in order).
__device__ __forceinline__ int tensor_of(const LaunchTable& table, std::int64_t chunk) {
  int t = 0;
  while (chunk >= table.first_chunk[t + 1]) ++t;
  return t;
}

// Calls body.template operator()<V>(t, i) for every element group of every chunk this block
// owns, and done(chunk) after each chunk (block-uniform, so it may synchronise).
template <int kVector, class Body, class Done>
__device__ __forceinline__ void for_each_chunk(const LaunchTable& table, Body&& body, Done&& done) {
  const std::int64_t total = table.first_chunk[table.count];
  for (std::int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = tensor_of(table, chunk);
    std::int64_t begin, end;
    chunk_bounds(table, t, chunk, begin, end);
    run_elements<kVector>(table, t, begin, end, body);
    done(chunk, t);
  }
}

template <class K, int kVariant, class P, class S>
struct UpdateBody {
  const LaunchTable& table;
  const typename K::template Coefficients<Math<P>>& c;
  bool unscale;
  Math<P> grad_scale;

  template <int V>
  __device__ __forceinline__ void run(int t, std::int64_t i) const {
    update_elements<K, kVariant, P, S, V>(table, t, i, remainder_begin<K, Math<P>>(table.size[t]),
                                          c, unscale, grad_scale);
  }
};

__device__ __forceinline__ bool skip_step(const DeviceScalars& scalars) {
  return scalars.found_inf != nullptr && *scalars.found_inf != 0.0f;
}

template <class P>
__device__ __forceinline__ Math<P> grad_scale_of(const DeviceScalars& scalars) {
  return static_cast<Math<P>>(scalars.grad_scale != nullptr ? *scalars.grad_scale
                                                            : scalars.host_grad_scale);
}

template <class K, int kVariant, class P, class S>
__global__ void __launch_bounds__(kThreads)
    update_kernel(LaunchTable table, typename K::template Coefficients<Math<P>> c,
                  DeviceScalars scalars) {
  if (skip_step(scalars)) return;
  const UpdateBody<K, kVariant, P, S> body{table, c, scalars.unscale, grad_scale_of<P>(scalars)};
  for_each_chunk<vector_width<P>()>(table, body, [](std::int64_t, int) {});
}

// Adam with lr and step in device memory: every block computes the coefficients itself, with
// the host's own formula (Adam::coefficients, in double; the device's pow is within 2 ULP of
// the host's in double, so the float32 coefficients agree except in rare roundings).
template <int kVariant, class P, class S>
__global__ void __launch_bounds__(kThreads)
    adam_device_scalars_kernel(LaunchTable table, AdamOptions options, DeviceScalars scalars) {
  if (skip_step(scalars)) return;
  if (scalars.lr != nullptr) options.lr = static_cast<double>(*scalars.lr);
  const double step = static_cast<double>(*scalars.step);
  const auto c = math::Adam::coefficients<Math<P>>(options, step);
  const UpdateBody<math::Adam, kVariant, P, S> body{table, c, scalars.unscale,
                                                    grad_scale_of<P>(scalars)};
  for_each_chunk<vector_width<P>()>(table, body, [](std::int64_t, int) {});
}

// The two-pass optimizers (LAMB, Prodigy): pass 1 is Moments::measure on every element, with
// per-chunk sums of its terms (math::add_terms); pass 2 is Apply::update with coefficients
// that depend on those sums. With state stored in 16 bits pass 1 only reads (its moments would
// be stored rounded) and pass 2 computes them again (TwoPassBody with kApply); with
// float32/float64 state pass 1 stores them and pass 2 is Apply's UpdateBody.
template <class P, class S>
__host__ __device__ constexpr bool recomputes_moments() {
  return !std::is_same<Storage<S>, Math<P>>::value;
}

// One element step of a two-pass optimizer. Pass 1 (kApply false): Moments::measure and the
// sums of its terms; it stores what Moments writes, unless the state is stored in 16 bits.
// Pass 2 (kApply true): the moments again from the same inputs (the same bits), Apply's update
// with them unrounded, and every buffer rounded once, as the CPU's mixed-precision driver does
// (optimizers.cpp, lamb_update and prodigy_update).
template <class Moments, class Apply, class P, class S, bool kApply>
struct TwoPassBody {
  const LaunchTable& table;
  const typename Moments::template Coefficients<Math<P>>& c;
  bool unscale;
  Math<P> grad_scale;
  double* first = nullptr;  // pass 1
  double* second = nullptr;

  template <int V>
  __device__ __forceinline__ void run(int t, std::int64_t i) const {
    using M = Math<P>;
    Registers<P, S, V, Moments::reads(0), Moments::writes(0)> r;
    r.read(table, t, i);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      M p, g, s[kMaxStateBuffers];
      r.widen_element(j, unscale, grad_scale, p, g, s);
      const auto measured = Moments::template measure<M, 0>(p, g, s[0], s[1], s[2], s[3], c);
      if constexpr (kApply) {
        Apply::template update<M, 0, false>(p, g, s[0], s[1], s[2], s[3], c);
        r.param[j] = narrow<Storage<P>>(p);
      } else {
        math::add_terms(*first, *second, p, measured);
      }
      r.narrow_state(j, s);
    }
    if constexpr (!kApply && recomputes_moments<P, S>()) return;  // pass 2 writes
    r.write(table, t, i, kApply, unscale);
  }
};

// Pass 1 of a two-pass optimizer: the moments, and per chunk the sums of Moments' terms into
// sums[2 * chunk], sums[2 * chunk + 1] (a fixed reduction tree: the same bits every time).
template <class Moments, class Apply, class P, class S>
__global__ void __launch_bounds__(kThreads)
    measure_kernel(LaunchTable table, typename Moments::template Coefficients<Math<P>> c,
                   DeviceScalars scalars, double* sums) {
  if (skip_step(scalars)) return;
  __shared__ double shared[kThreads][2];
  double first = 0.0, second = 0.0;
  const TwoPassBody<Moments, Apply, P, S, false> body{
      table, c, scalars.unscale, grad_scale_of<P>(scalars), &first, &second};
  for_each_chunk<vector_width<P>()>(table, body, [&](std::int64_t chunk, int) {
    block_sum2<kThreads>(first, second, shared);
    if (threadIdx.x == 0) {
      sums[2 * chunk] = first;
      sums[2 * chunk + 1] = second;
    }
    first = 0.0;
    second = 0.0;
  });
}

// Pass 2 of a two-pass optimizer over elements [begin, end) of tensor t, with coefficients c.
template <class Moments, class Apply, class P, class S>
__device__ __forceinline__ void apply_elements(
    const LaunchTable& table, int t, std::int64_t begin, std::int64_t end,
    const typename Moments::template Coefficients<Math<P>>& c, const DeviceScalars& scalars) {
  constexpr int kVector = vector_width<P>();
  if constexpr (recomputes_moments<P, S>()) {
    run_elements<kVector>(table, t, begin, end,
                          TwoPassBody<Moments, Apply, P, S, true>{table, c, scalars.unscale,
                                                                  grad_scale_of<P>(scalars)});
  } else {  // pass 1 stored the moments and the unscaled grads
    run_elements<kVector>(table, t, begin, end,
                          UpdateBody<Apply, 0, P, S>{table, c, false, Math<P>(1)});
  }
}

// Pass 2 of LAMB: each tensor's norms from its chunks' sums (fixed order), its trust ratio
// (LambApply::with_trust_ratio), and the update of its params.
template <class P, class S>
__global__ void __launch_bounds__(kThreads)
    lamb_apply_kernel(LaunchTable table, math::LambCoefficients<Math<P>> c, DeviceScalars scalars,
                      const double* sums) {
  if (skip_step(scalars)) return;
  __shared__ double shared[kThreads][2];
  const std::int64_t total = table.first_chunk[table.count];
  int current = -1;
  math::LambCoefficients<Math<P>> tensor_c = c;
  for (std::int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = tensor_of(table, chunk);
    if (t != current) {  // block-uniform
      double param_sq = 0.0, direction_sq = 0.0;
      for (std::int64_t k = table.first_chunk[t] + threadIdx.x; k < table.first_chunk[t + 1];
           k += blockDim.x) {
        param_sq += sums[2 * k];
        direction_sq += sums[2 * k + 1];
      }
      block_sum2<kThreads>(param_sq, direction_sq, shared);
      tensor_c = math::LambApply::with_trust_ratio(c, sqrt(param_sq), sqrt(direction_sq));
      current = t;
    }
    std::int64_t begin, end;
    chunk_bounds(table, t, chunk, begin, end);
    apply_elements<math::LambMoments, math::LambApply, P, S>(table, t, begin, end, tensor_c,
                                                             scalars);
  }
}

// Pass 2 of Prodigy: every element with the same coefficients (the new d, from the host).
template <class P, class S>
__global__ void __launch_bounds__(kThreads)
    prodigy_apply_kernel(LaunchTable table, math::ProdigyCoefficients<Math<P>> c,
                         DeviceScalars scalars) {
  if (skip_step(scalars)) return;
  const std::int64_t total = table.first_chunk[table.count];
  for (std::int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = tensor_of(table, chunk);
    std::int64_t begin, end;
    chunk_bounds(table, t, chunk, begin, end);
    apply_elements<math::ProdigyMoments, math::ProdigyApply, P, S>(table, t, begin, end, c,
                                                                   scalars);
  }
}

// One element step of a cautious update's count pass (math/common.hpp): whether the update
// of each element agrees with its gradient, added to *count; it only reads (the grads are
// unscaled in registers: the update pass unscales and writes them).
template <class D, int kVariant, class P, class S>
struct CountBody {
  const LaunchTable& table;
  const typename D::template Coefficients<Math<P>>& c;
  bool unscale;
  Math<P> grad_scale;
  double* count;

  template <int V>
  __device__ __forceinline__ void run(int t, std::int64_t i) const {
    using M = Math<P>;
    using Count = math::CautiousCount<D>;
    constexpr unsigned kReads = Count::reads(0);
    Storage<P> param[V], grad[V];
    Storage<S> first[V], second[V];
    load<V>(table.data[0][t], i, param);
    load<V>(table.data[1][t], i, grad);
    if constexpr ((kReads & 1u) != 0) load<V>(table.data[2][t], i, first);
    if constexpr ((kReads & 2u) != 0) load<V>(table.data[3][t], i, second);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      M g = widen(grad[j]);
      if (unscale) g = g / grad_scale;
      M s0{}, s1{}, unused2{}, unused3{};
      if constexpr ((kReads & 1u) != 0) s0 = widen(first[j]);
      if constexpr ((kReads & 2u) != 0) s1 = widen(second[j]);
      const bool agrees = Count::template measure<M, kVariant - Count::kFirst>(
          widen(param[j]), g, s0, s1, unused2, unused3, c);
      if (agrees) *count += 1.0;
    }
  }
};

// Pass 1 of a cautious update: per chunk, the count of agreeing elements into counts (exact
// in double, so the same total in any order).
template <class D, int kVariant, class P, class S>
__global__ void __launch_bounds__(kThreads)
    cautious_count_kernel(LaunchTable table, typename D::template Coefficients<Math<P>> c,
                          DeviceScalars scalars, double* counts) {
  if (skip_step(scalars)) return;
  __shared__ double shared[kThreads][2];
  double count = 0.0, unused = 0.0;
  const CountBody<D, kVariant, P, S> body{table, c, scalars.unscale, grad_scale_of<P>(scalars),
                                          &count};
  for_each_chunk<vector_width<P>()>(table, body, [&](std::int64_t chunk, int) {
    block_sum2<kThreads>(count, unused, shared);
    if (threadIdx.x == 0) counts[chunk] = count;
    count = 0.0;
    unused = 0.0;
  });
}

// Pass 2 of a cautious update: each tensor's count from its chunks' counts, its mask scale
// (math::cautious_scale, as the CPU computes it) and the update.
template <class D, int kVariant, class P, class S>
__global__ void __launch_bounds__(kThreads)
    cautious_update_kernel(LaunchTable table, typename D::template Coefficients<Math<P>> c,
                           DeviceScalars scalars, const double* counts) {
  if (skip_step(scalars)) return;
  __shared__ double shared[kThreads][2];
  const std::int64_t total = table.first_chunk[table.count];
  int current = -1;
  typename D::template Coefficients<Math<P>> tensor_c = c;
  for (std::int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = tensor_of(table, chunk);
    if (t != current) {  // block-uniform
      double count = 0.0, unused = 0.0;
      for (std::int64_t k = table.first_chunk[t] + threadIdx.x; k < table.first_chunk[t + 1];
           k += blockDim.x) {
        count += counts[k];
      }
      block_sum2<kThreads>(count, unused, shared);
      tensor_c.cautious.scale =
          math::cautious_scale<Math<P>>(D::kCautiousRescale, count, table.size[t]);
      current = t;
    }
    std::int64_t begin, end;
    chunk_bounds(table, t, chunk, begin, end);
    run_elements<vector_width<P>()>(
        table, t, begin, end,
        UpdateBody<D, kVariant, P, S>{table, tensor_c, scalars.unscale, grad_scale_of<P>(scalars)});
  }
}

// ---- host side ----

inline int block_limit(int device) {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  return sms * kBlocksPerSm;
}

inline DeviceScalars scalars_of(const DeviceCall& call) {
  return DeviceScalars{reinterpret_cast<const float*>(call.grad_scale),
                       reinterpret_cast<const float*>(call.found_inf),
                       reinterpret_cast<const float*>(call.lr),
                       reinterpret_cast<const float*>(call.step),
                       call.host_grad_scale,
                       call.unscale};
}

// Splits the call's tensors into launch tables (empty tensors left out) and calls
// launch(table, blocks) for each, on the call's device.
template <class P, class S, class Launch>
void for_each_table(const DeviceCall& call, unsigned used_states, Launch&& launch) {
  using PS = Storage<P>;
  using SS = Storage<S>;
  constexpr int kVector = vector_width<P>();
  const std::size_t count = call.params.size();
  bool complete = call.grads.size() == count && call.sizes.size() == count;
  for (int k = 0; k < kMaxStateBuffers; ++k) {
    if ((used_states >> k) & 1u) complete = complete && call.states[k].size() == count;
  }
  if (!complete) {
    throw std::invalid_argument(
        "adamkern CUDA: every list the kernel uses needs one address "
        "per param");
  }
  const int limit = block_limit(call.device);
  LaunchTable table{};
  const auto flush = [&]() {
    if (table.count == 0) return;
    const std::int64_t chunks = table.first_chunk[table.count];
    const int blocks = static_cast<int>(chunks < limit ? chunks : limit);
    launch(table, blocks);
    check(cudaGetLastError(), "kernel launch");
    table = LaunchTable{};
  };
  for (std::size_t i = 0; i < call.params.size(); ++i) {
    const std::int64_t size = call.sizes[i];
    if (size == 0) continue;
    const int t = table.count;
    const std::uintptr_t addresses[kStreams] = {call.params[i],
                                                call.grads[i],
                                                (used_states & 1u) ? call.states[0][i] : 0,
                                                (used_states & 2u) ? call.states[1][i] : 0,
                                                (used_states & 4u) ? call.states[2][i] : 0,
                                                (used_states & 8u) ? call.states[3][i] : 0};
    bool aligned = true;
    for (int s = 0; s < kStreams; ++s) {
      table.data[s][t] = reinterpret_cast<void*>(addresses[s]);
      const std::uintptr_t bytes = kVector * (s < 2 ? sizeof(PS) : sizeof(SS));
      if (addresses[s] % bytes != 0) aligned = false;
    }
    table.size[t] = size;
    table.first_chunk[t + 1] = table.first_chunk[t] + (size + kChunk - 1) / kChunk;
    if (aligned) table.vector_aligned |= std::uint64_t{1} << t;
    table.count = t + 1;
    if (table.count == kMaxTensors) flush();
  }
  flush();
}

// Calls f with `variant` as a constant, for the variants I .. End - 1 of K.
template <class K, int I, int End, class F>
void with_variant_in(int variant, F&& f) {
  if constexpr (I < End) {
    if (variant == I) {
      f(std::integral_constant<int, I>{});
    } else {
      with_variant_in<K, I + 1, End>(variant, f);
    }
  } else {
    throw std::invalid_argument("adamkern CUDA: variant out of range");
  }
}

// with_variant_in over K's plain variants (the cautious ones: launch_cautious).
template <class K, int I, class F>
void with_variant(int variant, F&& f) {
  with_variant_in<K, I, K::kVariants - kCautiousVariants<K>>(variant, f);
}

inline cudaStream_t stream_of(const DeviceCall& call) {
  return reinterpret_cast<cudaStream_t>(call.stream);
}

}  // namespace

template <class K, class P, class S>
void launch_update(const DeviceCall& call, int variant,
                   const typename K::template Coefficients<Math<P>>& coefficients) {
  DeviceScope scope(call.device);
  const DeviceScalars scalars = scalars_of(call);
  with_variant<K, 0>(variant, [&](auto v) {
    constexpr int kVariant = decltype(v)::value;
    for_each_table<P, S>(
        call, K::reads(kVariant) | K::writes(kVariant), [&](const LaunchTable& table, int blocks) {
          update_kernel<K, kVariant, P, S>
              <<<blocks, kThreads, 0, stream_of(call)>>>(table, coefficients, scalars);
        });
  });
}

template <class P, class S>
void launch_adam_device_scalars(const DeviceCall& call, int variant, const AdamOptions& options) {
  DeviceScope scope(call.device);
  const DeviceScalars scalars = scalars_of(call);
  with_variant<math::Adam, 0>(variant, [&](auto v) {
    constexpr int kVariant = decltype(v)::value;
    for_each_table<P, S>(call, math::Adam::reads(kVariant) | math::Adam::writes(kVariant),
                         [&](const LaunchTable& table, int blocks) {
                           adam_device_scalars_kernel<kVariant, P, S>
                               <<<blocks, kThreads, 0, stream_of(call)>>>(table, options, scalars);
                         });
  });
}

template <class K, class P, class S>
void launch_cautious(const DeviceCall& call, int variant,
                     const typename K::template Coefficients<Math<P>>& coefficients) {
  if constexpr (kCautiousVariants<K> == 0) {
    throw std::invalid_argument("adamkern CUDA: this optimizer has no cautious variant");
  } else {
    DeviceScope scope(call.device);
    const DeviceScalars scalars = scalars_of(call);
    const cudaStream_t stream = stream_of(call);
    constexpr int kFirst = K::kVariants - kCautiousVariants<K>;
    with_variant_in<K, kFirst, K::kVariants>(variant, [&](auto v) {
      constexpr int kVariant = decltype(v)::value;
      for_each_table<P, S>(
          call, K::reads(kVariant) | K::writes(kVariant),
          [&](const LaunchTable& table, int blocks) {
            const std::int64_t chunks = table.first_chunk[table.count];
            double* counts = nullptr;
            check(
                cudaMallocAsync(reinterpret_cast<void**>(&counts), sizeof(double) * chunks, stream),
                "cudaMallocAsync");
            cautious_count_kernel<K, kVariant, P, S>
                <<<blocks, kThreads, 0, stream>>>(table, coefficients, scalars, counts);
            check(cudaGetLastError(), "kernel launch");
            cautious_update_kernel<K, kVariant, P, S>
                <<<blocks, kThreads, 0, stream>>>(table, coefficients, scalars, counts);
            check(cudaGetLastError(), "kernel launch");
            check(cudaFreeAsync(counts, stream), "cudaFreeAsync");
          });
    });
  }
}

template <class P, class S>
void launch_lamb(const DeviceCall& call, const LambOptions& options, double step) {
  DeviceScope scope(call.device);
  const DeviceScalars scalars = scalars_of(call);
  const auto coefficients = math::LambMoments::coefficients<Math<P>>(options, step);
  const cudaStream_t stream = stream_of(call);
  for_each_table<P, S>(call, 0b11u, [&](const LaunchTable& table, int blocks) {
    const std::int64_t chunks = table.first_chunk[table.count];
    double* sums = nullptr;
    check(cudaMallocAsync(reinterpret_cast<void**>(&sums), sizeof(double) * 2 * chunks, stream),
          "cudaMallocAsync");
    measure_kernel<math::LambMoments, math::LambApply, P, S>
        <<<blocks, kThreads, 0, stream>>>(table, coefficients, scalars, sums);
    check(cudaGetLastError(), "kernel launch");
    lamb_apply_kernel<P, S><<<blocks, kThreads, 0, stream>>>(table, coefficients, scalars, sums);
    check(cudaGetLastError(), "kernel launch");
    check(cudaFreeAsync(sums, stream), "cudaFreeAsync");
  });
}

template <class P, class S>
void launch_prodigy(const DeviceCall& call, const ProdigyOptions& options, double* scalars) {
  using Moments = math::ProdigyMoments;
  if (options.lr == 0.0) return;  // as the CPU step: a group with lr 0 adds nothing
  DeviceScope scope(call.device);
  const DeviceScalars device_scalars = scalars_of(call);
  const cudaStream_t stream = stream_of(call);
  const math::ProdigyStep step = math::prodigy_step(options, scalars[kD], scalars[kK]);
  const auto coefficients = Moments::coefficients<Math<P>>(options, step);
  std::int64_t chunks = 0;  // of the whole call: d is estimated from every tensor's sums
  for (const std::int64_t size : call.sizes) chunks += (size + kChunk - 1) / kChunk;
  if (chunks == 0) return;
  double* sums = nullptr;
  const std::size_t bytes = sizeof(double) * 2 * static_cast<std::size_t>(chunks);
  check(cudaMallocAsync(reinterpret_cast<void**>(&sums), bytes, stream), "cudaMallocAsync");
  // Zeros: a step that found_inf skips leaves every sum 0, so the host keeps the scalars.
  check(cudaMemsetAsync(sums, 0, bytes, stream), "cudaMemsetAsync");
  std::int64_t offset = 0;
  for_each_table<P, S>(call, Moments::reads(0), [&](const LaunchTable& table, int blocks) {
    measure_kernel<Moments, math::ProdigyApply, P, S>
        <<<blocks, kThreads, 0, stream>>>(table, coefficients, device_scalars, sums + 2 * offset);
    offset += table.first_chunk[table.count];
  });
  std::vector<double> chunk_sums(2 * static_cast<std::size_t>(chunks));
  check(cudaMemcpyAsync(chunk_sums.data(), sums, bytes, cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
  check(cudaFreeAsync(sums, stream), "cudaFreeAsync");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  // Each tensor's sums from its chunks' (in order); the tensors in call order (empty ones
  // add nothing), as the CPU step adds them.
  std::vector<std::array<double, 2>> tensor_sums;
  std::size_t chunk = 0;
  for (const std::int64_t size : call.sizes) {
    std::array<double, 2> sum{0.0, 0.0};
    for (std::int64_t k = 0; k < (size + kChunk - 1) / kChunk; ++k, ++chunk) {
      sum[0] += chunk_sums[2 * chunk];
      sum[1] += chunk_sums[2 * chunk + 1];
    }
    tensor_sums.push_back(sum);
  }
  if (!math::prodigy_advance(options, step, tensor_sums.data(), tensor_sums.size(), scalars)) {
    return;
  }
  const auto apply_coefficients =
      math::ProdigyApply::with_new_d(coefficients, options, scalars[kD]);
  for_each_table<P, S>(call, Moments::reads(0), [&](const LaunchTable& table, int blocks) {
    prodigy_apply_kernel<P, S>
        <<<blocks, kThreads, 0, stream>>>(table, apply_coefficients, device_scalars);
  });
}

}  // namespace adamkern::cuda

// Explicit instantiations for one (param, state) storage pair: every one-pass optimizer of the
// registry (and its cautious variants, where it has them), LAMB's and Prodigy's two passes
// and Adam with device scalars.
#define ADAMKERN_CUDA_UPDATE(K, P, S)                                                   \
  template void launch_update<math::K, P, S>(                                           \
      const DeviceCall&, int, const typename math::K::template Coefficients<Math<P>>&); \
  template void launch_cautious<math::K, P, S>(                                         \
      const DeviceCall&, int, const typename math::K::template Coefficients<Math<P>>&);
#define ADAMKERN_CUDA_INSTANTIATE(P, S)                                                       \
  namespace adamkern::cuda {                                                                  \
  ADAMKERN_ONE_PASS_OPTIMIZERS(ADAMKERN_CUDA_UPDATE, P, S)                                    \
  template void launch_adam_device_scalars<P, S>(const DeviceCall&, int, const AdamOptions&); \
  template void launch_lamb<P, S>(const DeviceCall&, const LambOptions&, double);             \
  template void launch_prodigy<P, S>(const DeviceCall&, const ProdigyOptions&, double*);      \
  }
