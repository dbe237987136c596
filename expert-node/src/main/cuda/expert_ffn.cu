// The expert FFN kernels of the CUDA backend (io.moecluster.expert.cuda.CudaExpertBackend):
//   gate/up:  h[r, i] = silu(w1[i, :] . x[r, :]) * (w3[i, :] . x[r, :])   w1, w3: [ffn, hidden]
//   down:     y[r, j] = w2[j, :] . h[r, :]                                 w2: [hidden, ffn]
// Weights are row-major [out, in] as in the checkpoint, F32 or BF16; activations and accumulation
// are F32.
//
// Batch invariance. Every dot product over K is summed in ONE fixed order, whatever kernel,
// tile or batch size computes it: K is cut into chunks of 8 elements; lane l of a warp owns the
// chunks l, l + 32, l + 64, ... and accumulates them in ascending order, element by element,
// with fused multiply-adds; then the 32 lane sums are combined by a butterfly (xor 16, 8, 4, 2,
// 1). The decode kernels (one row per block) and the prefill kernels (8 rows per block, inputs
// staged in shared memory, each weight load reused over the 8 rows) follow exactly that order, so
// a row's result never depends on n or on the other rows. The vectorized path (16-byte loads)
// and the scalar path (rows not 16-byte aligned) also keep the order.
//
// Compiled to PTX (expert-node/src/main/resources/io/moecluster/expert/cuda/expert_ffn.ptx) by
// the Maven profile "nvcc"; the driver JIT-compiles the PTX for the GPU it runs on.

#include <stdint.h>

#define CHUNK 8      // elements per lane per step (16 bytes of BF16)
#define WARP 32
#define TILE_K (CHUNK * WARP)  // elements of K one warp step covers

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// Loads the 8 weights of chunk c of a row (k = c*8 .. c*8+7) as floats; k >= K gives 0 and is
// never accumulated (the caller stops at K).
template <typename W>
struct Weights;

template <>
struct Weights<float> {
  __device__ __forceinline__ static void load(const float* row, long long k0, int count, bool vec, float* out) {
    if (vec && count == CHUNK) {
      float4 a = __ldg(reinterpret_cast<const float4*>(row + k0));
      float4 b = __ldg(reinterpret_cast<const float4*>(row + k0) + 1);
      out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
      out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    } else {
#pragma unroll
      for (int e = 0; e < CHUNK; e++) out[e] = e < count ? __ldg(row + k0 + e) : 0.f;
    }
  }
};

template <>
struct Weights<uint16_t> {
  __device__ __forceinline__ static void load(const uint16_t* row, long long k0, int count, bool vec, float* out) {
    if (vec && count == CHUNK) {
      uint4 q = __ldg(reinterpret_cast<const uint4*>(row + k0));
      out[0] = bf16_lo(q.x); out[1] = bf16_hi(q.x);
      out[2] = bf16_lo(q.y); out[3] = bf16_hi(q.y);
      out[4] = bf16_lo(q.z); out[5] = bf16_hi(q.z);
      out[6] = bf16_lo(q.w); out[7] = bf16_hi(q.w);
    } else {
#pragma unroll
      for (int e = 0; e < CHUNK; e++) out[e] = e < count ? __uint_as_float(((uint32_t) __ldg(row + k0 + e)) << 16) : 0.f;
    }
  }
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = WARP / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// SwiGLU's gate, the same expression as the CPU kernels: g / (1 + exp(-g)) * u.
__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.f + expf(-g)) * u; }

// One warp computes OUTS consecutive outputs for ROWS consecutive rows; WARPS warps per block.
// GATED: two weight matrices (w1, w3) and the SwiGLU epilogue; else one (wa) and a plain product.
// x: [n, K] F32, out: [n, M] F32, wa/wb: [M, K]. vec: rows are 16-byte aligned (K % 8 == 0).
template <typename W, int OUTS, int ROWS, int WARPS, bool GATED>
__device__ __forceinline__ void ffn_product(const W* __restrict__ wa, const W* __restrict__ wb,
                                            const float* __restrict__ x, float* __restrict__ out,
                                            int n, int M, int K, int vec) {
  __shared__ __align__(16) float xs[ROWS > 1 ? ROWS : 1][ROWS > 1 ? TILE_K : 1];
  const int lane = threadIdx.x % WARP;
  const int warp = threadIdx.x / WARP;
  const int out0 = (blockIdx.x * WARPS + warp) * OUTS;
  const int row0 = blockIdx.y * ROWS;

  float acc_a[OUTS][ROWS];
  float acc_b[OUTS][ROWS];
#pragma unroll
  for (int o = 0; o < OUTS; o++)
#pragma unroll
    for (int r = 0; r < ROWS; r++) { acc_a[o][r] = 0.f; acc_b[o][r] = 0.f; }

  // Decode unrolls the K loop so that each lane has several 16-byte loads in flight (a GEMV is
  // bound by memory latency times loads in flight); prefill is bound by its FMAs and registers.
#pragma unroll(ROWS > 1 ? 1 : 4)
  for (long long kt = 0; kt < K; kt += TILE_K) {
    if (ROWS > 1) {
      // Stage x[row0 .. row0+ROWS, kt .. kt+TILE_K] in shared memory (coalesced), zero-padded.
      __syncthreads();
      for (int t = threadIdx.x; t < ROWS * TILE_K; t += WARPS * WARP) {
        int r = t / TILE_K, c = t % TILE_K;
        long long k = kt + c;
        xs[r][c] = (row0 + r < n && k < K) ? x[(long long) (row0 + r) * K + k] : 0.f;
      }
      __syncthreads();
    }
    const long long k0 = kt + (long long) lane * CHUNK;
    const int count = k0 < K ? (int) min((long long) CHUNK, K - k0) : 0;
    if (count == 0) continue;  // this lane's chunk lies past K (only in the last tile)
    float xv[ROWS][CHUNK];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      if (ROWS > 1) {
#pragma unroll
        for (int e = 0; e < CHUNK; e++) xv[r][e] = xs[r][lane * CHUNK + e];
      } else {
        Weights<float>::load(x + (long long) row0 * K, k0, count, vec, xv[r]);
      }
    }
#pragma unroll
    for (int o = 0; o < OUTS; o++) {
      if (out0 + o >= M) break;
      float wva[CHUNK], wvb[CHUNK];
      Weights<W>::load(wa + (long long) (out0 + o) * K, k0, count, vec, wva);
      if (GATED) Weights<W>::load(wb + (long long) (out0 + o) * K, k0, count, vec, wvb);
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
#pragma unroll
        for (int e = 0; e < CHUNK; e++) {
          if (e < count) {
            acc_a[o][r] = __fmaf_rn(wva[e], xv[r][e], acc_a[o][r]);
            if (GATED) acc_b[o][r] = __fmaf_rn(wvb[e], xv[r][e], acc_b[o][r]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int o = 0; o < OUTS; o++) {
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      float a = warp_sum(acc_a[o][r]);
      float b = GATED ? warp_sum(acc_b[o][r]) : 0.f;
      if (lane == 0 && out0 + o < M && row0 + r < n) {
        out[(long long) (row0 + r) * M + out0 + o] = GATED ? silu_mul(a, b) : a;
      }
    }
  }
}

// Decode: one row per block, 1 output per warp, 4 warps (4 outputs a block). Memory-bound GEMV:
// one output per warp gives the down projection (M = hidden, often 1-4K) enough warps to keep
// the memory system busy.
#define DECODE_OUTS 1
#define DECODE_WARPS 4
// Prefill: 8 rows per block staged in shared memory, 4 outputs per warp, 8 warps (32 outputs).
#define PREFILL_OUTS 4
#define PREFILL_ROWS 8
#define PREFILL_WARPS 8

#define DEFINE_KERNELS(SUFFIX, W)                                                                     \
  extern "C" __global__ void __launch_bounds__(DECODE_WARPS * WARP)                                  \
  moe_gate_up_##SUFFIX##_decode(const W* w1, const W* w3, const float* x, float* h, int n, int M, int K, int vec) { \
    ffn_product<W, DECODE_OUTS, 1, DECODE_WARPS, true>(w1, w3, x, h, n, M, K, vec);                  \
  }                                                                                                   \
  extern "C" __global__ void __launch_bounds__(PREFILL_WARPS * WARP)                                 \
  moe_gate_up_##SUFFIX##_prefill(const W* w1, const W* w3, const float* x, float* h, int n, int M, int K, int vec) { \
    ffn_product<W, PREFILL_OUTS, PREFILL_ROWS, PREFILL_WARPS, true>(w1, w3, x, h, n, M, K, vec);     \
  }                                                                                                   \
  extern "C" __global__ void __launch_bounds__(DECODE_WARPS * WARP)                                  \
  moe_down_##SUFFIX##_decode(const W* w2, const float* h, float* y, int n, int M, int K, int vec) {  \
    ffn_product<W, DECODE_OUTS, 1, DECODE_WARPS, false>(w2, w2, h, y, n, M, K, vec);                 \
  }                                                                                                   \
  extern "C" __global__ void __launch_bounds__(PREFILL_WARPS * WARP)                                 \
  moe_down_##SUFFIX##_prefill(const W* w2, const float* h, float* y, int n, int M, int K, int vec) { \
    ffn_product<W, PREFILL_OUTS, PREFILL_ROWS, PREFILL_WARPS, false>(w2, w2, h, y, n, M, K, vec);    \
  }

DEFINE_KERNELS(f32, float)
DEFINE_KERNELS(bf16, uint16_t)
