// The expert FFN kernels of the CUDA backend (io.moecluster.expert.cuda.CudaExpertBackend):
//   gate/up:  h[r, i] = silu(w1[i, :] . x[r, :]) * (w3[i, :] . x[r, :])   w1, w3: [ffn, hidden]
//   down:     y[r, j] = w2[j, :] . h[r, :]                                 w2: [hidden, ffn]
// Weights are row-major [out, in] as in the checkpoint; activations and accumulation are F32.
// Two families: F32 weights on the CUDA cores' FMAs (this first part) and BF16 weights on the
// tensor cores (the second part, from "BF16 weights on the tensor cores"). Each family sums
// every output in one fixed order, whatever kernel, tile or batch size computes it, so a row's
// result never depends on the other rows (batch invariance).
//
// F32 order: K is cut into chunks of 8 elements; lane l of a warp owns the chunks l, l + 32,
// l + 64, ... and accumulates them in ascending order, element by element, with fused
// multiply-adds; then the 32 lane sums are combined by a butterfly (xor 16, 8, 4, 2, 1). The
// decode kernels (one row per block) and the prefill kernels (8 rows per block, inputs staged in
// shared memory, each weight load reused over the 8 rows) follow exactly that order. The
// vectorized path (16-byte loads) and the scalar path (rows not 16-byte aligned) also keep it.
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

// ---------------------------------------------------------------------------------------------
// BF16 weights on the tensor cores: mma.sync m16n8k16, BF16 operands, F32 accumulation.
//
// Activations arrive in F32. The tensor cores take BF16, so each activation is split into
// hi = bf16(x) and lo = bf16(x - hi), and the weights are multiplied by both: hi + lo keeps 16
// significant bits of x (relative error below 2^-16), while BF16 weights are exact operands. The
// result stays within the CPU backend's F32 arithmetic to about 1e-5, at twice the tensor work of
// a plain BF16 product, which is still far cheaper than F32 FMAs.
//
// One fixed arithmetic per output element, whatever kernel or batch size (batch invariance):
// K is cut into blocks of TC_KB = 32, the blocks into S slices of SKB blocks and the slices into
// NG groups of SPG slices, all depending on K only (TcGeometry). For each slice, partial = a
// chain of mma over its blocks in ascending order, starting from 0, each block as
// mma(k 0..15, hi), mma(k 0..15, lo), mma(k 16..31, hi), mma(k 16..31, lo) (tc_step 0..3); a
// group sums its slices' partials in order, G = ((0 + p_first) + ...), and total = ((0 + G_0) +
// G_1) + ... in group order (tc_total). The decode kernel (up to 8 rows) runs the slices of a
// 16-row tile in parallel warps, which is what makes a GEMV bandwidth-bound, and sums their
// partials through shared memory. The prefill kernel walks a group's K in one warp, adds each
// slice's partial into a running sum at the slice's end, and the groups of an output tile are
// added by the last of its blocks to finish. Same operands in the same mma slots, same
// additions: the same bits for a row alone or in any batch.
//
// Operand layout. Within a block of 32, lane (g = lane / 4, q = lane % 4) holds k = 8q .. 8q+7
// of its rows, one 16-byte load; they fill the mma k slots {2q, 2q+1, 2q+8, 2q+9} of the first
// and then of the second k16 step. A fixed permutation of k is the same product as long as the
// weights (A) and the activations (B) use the same one, and it lets every lane load 16 bytes.
// Output rows of the product are weight rows (A, row-major as in the checkpoint), its columns
// are tokens (B), so a decode step with one token still reads each weight once.

#define TC_KB 32
#define TC_MAX_SLICES 16
#define TC_DECODE_MAX_ROWS 8
#define TC_DEC_DEPTH_GATED 4
#define TC_DEC_DEPTH_DOWN 8
#define TC_DECODE_MIN_BLOCKS 1

// The slice geometry of a product over K: nkb blocks of 32, S slices of SKB blocks, NG groups of
// SPG slices. A function of K alone, computed once on the host
// (io.moecluster.expert.cuda.LaunchPlan.Geometry) and passed by value, so that every kernel of
// a product uses the same one and none spends integer divisions on it.
struct TcGeometry {
  int nkb, S, SKB, NG, SPG;
};

// Two floats as packed BF16 (round to nearest even), the first in the low half.
__device__ __forceinline__ uint32_t bf16x2(float first, float second) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(second), "f"(first));
  return r;
}

// Splits 8 floats into BF16 hi and lo parts, packed in k order.
__device__ __forceinline__ void tc_split(const float* v, uint4& hi, uint4& lo) {
  uint32_t h[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    h[i] = bf16x2(v[2 * i], v[2 * i + 1]);
    l[i] = bf16x2(v[2 * i] - bf16_lo(h[i]), v[2 * i + 1] - bf16_hi(h[i]));
  }
  hi = make_uint4(h[0], h[1], h[2], h[3]);
  lo = make_uint4(l[0], l[1], l[2], l[3]);
}

__device__ __forceinline__ void tc_mma(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Step j (0..3) of one block of 32 k: ra, rb = the lane's 8 weights of rows g and g + 8; hi,
// lo = its 8 activations of token g. The one place where the order of the mma chain is written:
// every accumulator takes steps 0, 1, 2, 3 in turn. Kernels issue a step over all their
// accumulators before the next step, so that independent mma overlap instead of waiting on
// each other.
__device__ __forceinline__ void tc_step(int j, float* c, uint4 ra, uint4 rb, uint4 hi, uint4 lo) {
  switch (j) {
    case 0: tc_mma(c, ra.x, rb.x, ra.y, rb.y, hi.x, hi.y); break;
    case 1: tc_mma(c, ra.x, rb.x, ra.y, rb.y, lo.x, lo.y); break;
    case 2: tc_mma(c, ra.z, rb.z, ra.w, rb.w, hi.z, hi.w); break;
    default: tc_mma(c, ra.z, rb.z, ra.w, rb.w, lo.z, lo.w); break;
  }
}

// Weights k0 .. k0+7 of row r (zeros past M or K).
__device__ __forceinline__ uint4 tc_load_w(const uint16_t* __restrict__ w, int r, int M, int K, int k0, int vec) {
  if (r >= M || k0 >= K) return make_uint4(0, 0, 0, 0);
  const uint16_t* p = w + (long long) r * K + k0;
  if (vec && k0 + 8 <= K) return __ldg(reinterpret_cast<const uint4*>(p));
  uint32_t v[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    uint32_t a = k0 + 2 * i < K ? __ldg(p + 2 * i) : 0;
    uint32_t b = k0 + 2 * i + 1 < K ? __ldg(p + 2 * i + 1) : 0;
    v[i] = a | (b << 16);
  }
  return make_uint4(v[0], v[1], v[2], v[3]);
}

// Activations k0 .. k0+7 of token t, split (zeros past n or K).
__device__ __forceinline__ void tc_load_x(const float* __restrict__ x, int t, int n, int K, int k0, int vec, uint4& hi,
                                          uint4& lo) {
  float v[8];
  if (t < n && k0 < K) {
    const float* p = x + (long long) t * K + k0;
    if (vec && k0 + 8 <= K) {
      float4 a = __ldg(reinterpret_cast<const float4*>(p));
      float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
      v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = k0 + e < K ? __ldg(p + e) : 0.f;
    }
  } else {
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = 0.f;
  }
  tc_split(v, hi, lo);
}


// Groups exist for the prefill kernel: it splits K over blocks by group, so that a product with
// few output tiles (a short batch, or a small M) still fills the GPU.

// total from the slice partials p[0 .. S): the canonical two-level sum.
__device__ __forceinline__ float tc_total(const float* p, TcGeometry geo) {
  float total = 0.f, group = 0.f;
  int inGroup = 0;
#pragma unroll
  for (int s = 0; s < TC_MAX_SLICES; s++) {
    if (s < geo.S) {
      group = group + p[s];
      if (++inGroup == geo.SPG || s + 1 == geo.S) {
        total = total + group;
        group = 0.f;
        inGroup = 0;
      }
    }
  }
  return total;
}

// Decode: one block of S warps per 16-row tile (grid ceil(M / 16)); warp s computes slice s of
// the tile's rows for the n <= 8 tokens, and the block sums the slice partials in the canonical
// order through shared memory. GATED: wa = w1, wb = w3 and out = silu(w1 x) * (w3 x); else
// out = wa x. x: [n, K] F32, out: [n, M] F32. Launched with S * 32 threads. A warp issues the
// loads of up to DEPTH blocks of 32 before its first mma: a GEMV is bound by loads in flight.
template <bool GATED>
__device__ __forceinline__ void tc_decode(const uint16_t* __restrict__ wa, const uint16_t* __restrict__ wb,
                                          const float* __restrict__ x, float* __restrict__ out, int n, int M, int K,
                                          int vec, TcGeometry geo) {
  constexpr int MATS = GATED ? 2 : 1;
  constexpr int DEPTH = GATED ? TC_DEC_DEPTH_GATED : TC_DEC_DEPTH_DOWN;
  __shared__ float part[TC_MAX_SLICES][MATS][16][8];
  const int lane = threadIdx.x % WARP, s = threadIdx.x / WARP;
  const int g = lane / 4, q = lane % 4;
  const int tile = blockIdx.x;
  float c[MATS][4];
#pragma unroll
  for (int m = 0; m < MATS; m++) c[m][0] = c[m][1] = c[m][2] = c[m][3] = 0.f;
  const int r0 = tile * 16 + g;
  const int kbBegin = s * geo.SKB;
  const int kbEnd = min(kbBegin + geo.SKB, geo.nkb);
  if (vec && tile * 16 + 16 <= M && kbEnd * TC_KB <= K) {
    // Interior: whole rows and blocks, 16-byte aligned. Pointers step by one block (64 bytes of
    // weights, 128 of activations) per iteration.
    const uint4* pa = reinterpret_cast<const uint4*>(wa + (long long) r0 * K) + kbBegin * 4 + q;
    const uint4* pb = reinterpret_cast<const uint4*>(wb + (long long) r0 * K) + kbBegin * 4 + q;
    const long long eight = (long long) K;  // 8 rows, in uint4
    const float4* px = reinterpret_cast<const float4*>(x + (long long) g * K) + kbBegin * 8 + 2 * q;
    const bool hasToken = g < n;
    for (int kb = kbBegin; kb < kbEnd; kb += DEPTH) {
      uint4 A[DEPTH][MATS][2], H[DEPTH], L[DEPTH];
#pragma unroll
      for (int j = 0; j < DEPTH; j++) {
        if (kb + j < kbEnd) {
          const int o = (kb - kbBegin + j) * 4;
          A[j][0][0] = __ldg(pa + o);
          A[j][0][1] = __ldg(pa + o + eight);
          if (GATED) {
            A[j][MATS - 1][0] = __ldg(pb + o);
            A[j][MATS - 1][1] = __ldg(pb + o + eight);
          }
          float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
          if (hasToken) {
            const float4 u0 = __ldg(px + 2 * o), u1 = __ldg(px + 2 * o + 1);
            v[0] = u0.x; v[1] = u0.y; v[2] = u0.z; v[3] = u0.w; v[4] = u1.x; v[5] = u1.y; v[6] = u1.z; v[7] = u1.w;
          }
          tc_split(v, H[j], L[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < DEPTH; j++) {
        if (kb + j < kbEnd) {
#pragma unroll
          for (int step = 0; step < 4; step++)
#pragma unroll
            for (int m = 0; m < MATS; m++) tc_step(step, c[m], A[j][m][0], A[j][m][1], H[j], L[j]);
        }
      }
    }
  } else {
    // Edges: rows past M, a ragged last block, or rows not 16-byte aligned. Same operands.
    for (int kb = kbBegin; kb < kbEnd; kb++) {
      const int k0 = kb * TC_KB + 8 * q;
      uint4 A[MATS][2], H, L;
      A[0][0] = tc_load_w(wa, r0, M, K, k0, vec);
      A[0][1] = tc_load_w(wa, r0 + 8, M, K, k0, vec);
      if (GATED) {
        A[MATS - 1][0] = tc_load_w(wb, r0, M, K, k0, vec);
        A[MATS - 1][1] = tc_load_w(wb, r0 + 8, M, K, k0, vec);
      }
      tc_load_x(x, g, n, K, k0, vec, H, L);
#pragma unroll
      for (int step = 0; step < 4; step++)
#pragma unroll
        for (int m = 0; m < MATS; m++) tc_step(step, c[m], A[m][0], A[m][1], H, L);
    }
  }
#pragma unroll
  for (int m = 0; m < MATS; m++) {
    part[s][m][g][2 * q] = c[m][0];
    part[s][m][g][2 * q + 1] = c[m][1];
    part[s][m][g + 8][2 * q] = c[m][2];
    part[s][m][g + 8][2 * q + 1] = c[m][3];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < 16 * 8; e += blockDim.x) {
    const int row = e / 8, col = e % 8;
    const int r = tile * 16 + row;
    if (r >= M || col >= n) continue;
    float pa[TC_MAX_SLICES], pb[TC_MAX_SLICES];
#pragma unroll
    for (int s2 = 0; s2 < TC_MAX_SLICES; s2++) {
      pa[s2] = s2 < geo.S ? part[s2][0][row][col] : 0.f;
      pb[s2] = s2 < geo.S ? part[s2][MATS - 1][row][col] : 0.f;
    }
    const float ta = tc_total(pa, geo);
    out[(long long) col * M + r] = GATED ? silu_mul(ta, tc_total(pb, geo)) : ta;
  }
}

// One float as BF16 hi and lo, bit for bit as tc_split does it.
__device__ __forceinline__ void tc_split1(float v, uint16_t& hi, uint16_t& lo) {
  uint32_t h = bf16x2(v, 0.f);
  hi = (uint16_t) (h & 0xffffu);
  lo = (uint16_t) (bf16x2(v - bf16_lo(h), 0.f) & 0xffffu);
}

// The split activations of the prefill kernels: [n][nkb][hi 32, lo 32] BF16, 128 bytes per
// token and block of 32, zero past K, so the kernels stage them with plain 16-byte copies.
__device__ __forceinline__ long long tc_split_index(int t, int nkb, int k) {
  return ((long long) t * nkb + k / TC_KB) * (2 * TC_KB) + k % TC_KB;
}

// x [n, K] F32 -> xs (split layout); one thread per 8 elements.
extern "C" __global__ void moe_split_bf16(const float* __restrict__ x, uint16_t* __restrict__ xs, int n, int K,
                                          int vec, TcGeometry geo) {
  const int nkb = geo.nkb;
  const long long chunk = (long long) blockIdx.x * blockDim.x + threadIdx.x;
  if (chunk >= (long long) n * nkb * 4) return;
  const int t = (int) (chunk / (nkb * 4));
  const int k0 = (int) (chunk % (nkb * 4)) * 8;
  uint4 hi, lo;
  tc_load_x(x, t, n, K, k0, vec, hi, lo);
  uint4* dst = reinterpret_cast<uint4*>(xs + tc_split_index(t, nkb, k0));
  dst[0] = hi;
  dst[TC_KB / 8] = lo;
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// Prefill: grid (row tiles, token tiles, NG groups), WF x WT warps. A warp computes two 16-row
// weight tiles (GATED: the w1 and the w3 rows of the same 16 features; else 32 consecutive rows)
// for TT groups of 8 tokens, over the K of its block's group. Weights and split activations go
// through an NSTAGE-deep ring of shared memory by cp.async, so NSTAGE - 1 blocks of 32 are in
// flight while one computes. At the end of every slice the warp adds its partials into the
// group's running sum. With one group the block finishes the outputs; with several, it leaves
// its group sums in gpart and the last block of the output tile adds them in group order.
// xs: split activations of K. GATED: out = split h of M (the next product's input, zero past
// M); else out = y [n, M] F32. gpart: NG * MATS * n * M floats; count: one int per output tile,
// zero before the first launch.
template <bool GATED, int WF, int WT, int TT, int NSTAGE, bool VEC>
__device__ __forceinline__ void tc_prefill(const uint16_t* __restrict__ wa, const uint16_t* __restrict__ wb,
                                           const uint16_t* __restrict__ xs, void* __restrict__ out,
                                           float* __restrict__ gpart, int* __restrict__ count, int n, int M, int K,
                                           int vec, TcGeometry geo) {
  constexpr int MATS = GATED ? 2 : 1;
  constexpr int NT = WF * WT * WARP;
  constexpr int ROWS_A = WF * 32;  // weight rows staged per block (GATED: WF*16 of w1, then of w3)
  constexpr int BT = WT * TT * 8;  // tokens per block
  constexpr int A_CHUNKS = ROWS_A * 4;
  constexpr int B_CHUNKS = BT * 8;
  constexpr int A_PER = (A_CHUNKS + NT - 1) / NT;
  constexpr int B_PER = (B_CHUNKS + NT - 1) / NT;
  constexpr int STAGE = ROWS_A * 4 + BT * 8;  // uint4 per stage
  extern __shared__ uint4 smem[];

  const int nkb = geo.nkb, SKB = geo.SKB, NG = geo.NG;
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
  const int g = lane / 4, q = lane % 4;
  const int wf = warp % WF, wt = warp / WF;
  const int rowBase = blockIdx.x * (GATED ? WF * 16 : WF * 32);
  const int tokBase = blockIdx.y * BT;
  const int group = blockIdx.z;
  const int kbBegin = group * geo.SPG * SKB;
  const int kbEnd = min(kbBegin + geo.SPG * SKB, nkb);
  const int iters = kbEnd - kbBegin;

  // What this thread copies each block of 32, fixed for the whole loop: its A chunks (row c / 4,
  // k 8 * (c % 4)) and B chunks (token c / 8, part c % 8). Stage layout: A rows of 4 chunks,
  // then B tokens of 8 chunks (hi 0..3, lo 4..7); on odd tokens the halves are swapped so that
  // tokens 2i and 2i+1 fall on different banks. Sources start at block kbBegin and step by one
  // block per iteration; a chunk past M, n or K copies zeros (from a valid address, 0 bytes).
  const uint32_t smemBase = (uint32_t) __cvta_generic_to_shared(smem);
  const char* srcA[A_PER];
  uint32_t dstA[A_PER];
  int kqA[A_PER];
  bool rowA[A_PER];
  const char* srcB[B_PER];
  uint32_t dstB[B_PER];
  int bytesB[B_PER];
#pragma unroll
  for (int i = 0; i < A_PER; i++) {
    const int c = threadIdx.x + i * NT;
    const int row = c / 4;
    const uint16_t* w = (GATED && row >= WF * 16) ? wb : wa;
    const int r = rowBase + (GATED ? row % (WF * 16) : row);
    kqA[i] = 8 * (c % 4);
    rowA[i] = c < A_CHUNKS && r < M;
    srcA[i] = reinterpret_cast<const char*>(w + (long long) (rowA[i] ? r : 0) * K + (long long) kbBegin * TC_KB + kqA[i]);
    dstA[i] = smemBase + c * 16;
  }
#pragma unroll
  for (int i = 0; i < B_PER; i++) {
    const int c = threadIdx.x + i * NT;
    const int tok = c / 8, part = c % 8;
    const int t = tokBase + tok;
    const bool in = c < B_CHUNKS && t < n;
    srcB[i] = reinterpret_cast<const char*>(xs + ((long long) (in ? t : 0) * nkb + kbBegin) * (2 * TC_KB) + part * 8);
    bytesB[i] = in ? 16 : 0;
    dstB[i] = smemBase + (ROWS_A * 4 + tok * 8 + (part ^ ((tok & 1) << 2))) * 16;
  }
  auto issue = [&](int it, int stage) {
    const uint32_t so = stage * STAGE * 16;
    const int kb = kbBegin + it;
#pragma unroll
    for (int i = 0; i < A_PER; i++) {
      if (A_CHUNKS % NT == 0 || threadIdx.x + i * NT < A_CHUNKS) {
        if (VEC) {
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dstA[i] + so),
                       "l"(srcA[i] + it * (TC_KB * 2)), "r"(rowA[i] && kb * TC_KB + kqA[i] < K ? 16 : 0));
        } else {
          const int c = threadIdx.x + i * NT;
          const int row = c / 4;
          const uint16_t* w = (GATED && row >= WF * 16) ? wb : wa;
          smem[stage * STAGE + c] =
              tc_load_w(w, rowBase + (GATED ? row % (WF * 16) : row), M, K, kb * TC_KB + kqA[i], 0);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < B_PER; i++) {
      if (B_CHUNKS % NT == 0 || threadIdx.x + i * NT < B_CHUNKS) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dstB[i] + so),
                     "l"(srcB[i] + it * (TC_KB * 4)), "r"(bytesB[i]));
      }
    }
  };

  // f(i, t, e) for every accumulator element of this thread: weight tile i, token group t, element e.
  auto each = [&](auto&& f) {
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int t = 0; t < TT; t++)
#pragma unroll
        for (int e = 0; e < 4; e++) f(i, t, e);
  };
  float acc[2][TT][4], tot[2][TT][4];
  each([&](int i, int t, int e) { acc[i][t][e] = tot[i][t][e] = 0.f; });

  const int a0 = GATED ? wf * 16 : wf * 32;  // this warp's two A tiles in the staged rows
  const int a1 = GATED ? WF * 16 + wf * 16 : wf * 32 + 16;
  const int t0 = wt * TT * 8;

#pragma unroll
  for (int s = 0; s < NSTAGE - 1; s++) {
    if (s < iters) issue(s, s);
    cp_async_commit();
  }
  int inSlice = 0;
  for (int it = 0; it < iters; it++) {
    cp_async_wait<NSTAGE - 2>();
    __syncthreads();
    if (it + NSTAGE - 1 < iters) issue(it + NSTAGE - 1, (it + NSTAGE - 1) % NSTAGE);
    cp_async_commit();
    const uint4* As = smem + (it % NSTAGE) * STAGE;
    const uint4* Bs = As + ROWS_A * 4;
    const uint4 A0a = As[(a0 + g) * 4 + q], A0b = As[(a0 + g + 8) * 4 + q];
    const uint4 A1a = As[(a1 + g) * 4 + q], A1b = As[(a1 + g + 8) * 4 + q];
    const int swap = (g & 1) << 2;
    // Step by step over all accumulators; each step needs one half (8 bytes) of a token's hi or
    // lo chunk, loaded just before use to keep registers for the accumulators.
#pragma unroll
    for (int step = 0; step < 4; step++) {
      uint2 b[TT];
#pragma unroll
      for (int t = 0; t < TT; t++) {
        const int tok = t0 + t * 8 + g;
        const uint4* chunk = Bs + tok * 8 + (((step & 1) ? 4 + q : q) ^ swap);
        b[t] = reinterpret_cast<const uint2*>(chunk)[step >> 1];
      }
      const uint32_t x0a = step < 2 ? A0a.x : A0a.z, x0b = step < 2 ? A0b.x : A0b.z;
      const uint32_t y0a = step < 2 ? A0a.y : A0a.w, y0b = step < 2 ? A0b.y : A0b.w;
      const uint32_t x1a = step < 2 ? A1a.x : A1a.z, x1b = step < 2 ? A1b.x : A1b.z;
      const uint32_t y1a = step < 2 ? A1a.y : A1a.w, y1b = step < 2 ? A1b.y : A1b.w;
#pragma unroll
      for (int t = 0; t < TT; t++) {
        // = tc_step(step, acc[i][t], A_ia, A_ib, hi, lo) with hi/lo's half for this step
        tc_mma(acc[0][t], x0a, x0b, y0a, y0b, b[t].x, b[t].y);
        tc_mma(acc[1][t], x1a, x1b, y1a, y1b, b[t].x, b[t].y);
      }
    }
    if (++inSlice == SKB || kbBegin + it + 1 == nkb) {
      inSlice = 0;
      each([&](int i, int t, int e) {
        tot[i][t][e] = tot[i][t][e] + acc[i][t][e];
        acc[i][t][e] = 0.f;
      });
    }
  }
  cp_async_wait<0>();

  // Element (i, t, e) of this thread: token and output row (GATED: i = 0 w1, i = 1 w3, one row).
  auto token = [&](int t, int e) { return tokBase + t0 + t * 8 + 2 * q + (e & 1); };
  auto row = [&](int i, int e) {
    return GATED ? rowBase + wf * 16 + g + (e >> 1) * 8 : rowBase + wf * 32 + i * 16 + g + (e >> 1) * 8;
  };
  // Where element (i, t, e) of group j's sums lives in gpart, or null past n or M.
  auto partial = [&](int j, int i, int t, int e) -> float* {
    const int tok = token(t, e), r = row(i, e);
    return tok < n && r < M ? gpart + (((long long) j * MATS + (GATED ? i : 0)) * n + tok) * M + r : nullptr;
  };
  if (NG > 1) {
    each([&](int i, int t, int e) {
      if (float* p = partial(group, i, t, e)) *p = tot[i][t][e];
    });
    __shared__ int last;
    __threadfence();
    __syncthreads();
    const int tileId = blockIdx.y * gridDim.x + blockIdx.x;
    if (threadIdx.x == 0) last = atomicAdd(count + tileId, 1) == NG - 1;
    __syncthreads();
    if (!last) return;
    if (threadIdx.x == 0) count[tileId] = 0;
    // Group by group, every element of the tile at once: NG round trips, canonical order.
    each([&](int i, int t, int e) { tot[i][t][e] = 0.f; });
    for (int j = 0; j < NG; j++) {
      each([&](int i, int t, int e) {
        const float* p = partial(j, i, t, e);
        tot[i][t][e] = tot[i][t][e] + (p ? __ldcg(p) : 0.f);
      });
    }
  } else {
    each([&](int i, int t, int e) { tot[i][t][e] = 0.f + tot[i][t][e]; });
  }

#pragma unroll
  for (int t = 0; t < TT; t++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int tok = token(t, e);
      if (tok >= n) continue;
      if (GATED) {
        const int r = row(0, e);
        const int nkbM = (M + TC_KB - 1) / TC_KB;
        if (r < nkbM * TC_KB) {
          uint16_t hi = 0, lo = 0;
          if (r < M) tc_split1(silu_mul(tot[0][t][e], tot[1][t][e]), hi, lo);
          uint16_t* hs = static_cast<uint16_t*>(out) + tc_split_index(tok, nkbM, r);
          hs[0] = hi;
          hs[TC_KB] = lo;
        }
      } else {
#pragma unroll
        for (int i = 0; i < 2; i++) {
          const int r = row(i, e);
          if (r < M) static_cast<float*>(out)[(long long) tok * M + r] = tot[i][t][e];
        }
      }
    }
  }
}

// Prefill geometries (io.moecluster.expert.cuda.LaunchPlan mirrors them).
#define TC_GU_WF 4
#define TC_GU_WT 2
#define TC_GU_TT 4
#define TC_GU_STAGES 8
#define TC_DN_WF 2
#define TC_DN_WT 2
#define TC_DN_TT 4
#define TC_DN_STAGES 6
#define TC_PREFILL_MIN_BLOCKS 1

extern "C" __global__ void __launch_bounds__(TC_MAX_SLICES * WARP, TC_DECODE_MIN_BLOCKS)
moe_gate_up_bf16_decode(const uint16_t* w1, const uint16_t* w3, const float* x, float* h, int n, int M, int K,
                        int vec, TcGeometry geo) {
  tc_decode<true>(w1, w3, x, h, n, M, K, vec, geo);
}
extern "C" __global__ void __launch_bounds__(TC_MAX_SLICES * WARP)
moe_down_bf16_decode(const uint16_t* w2, const float* h, float* y, int n, int M, int K, int vec, TcGeometry geo) {
  tc_decode<false>(w2, w2, h, y, n, M, K, vec, geo);
}
extern "C" __global__ void __launch_bounds__(TC_GU_WF * TC_GU_WT * WARP, TC_PREFILL_MIN_BLOCKS)
moe_gate_up_bf16_prefill(const uint16_t* w1, const uint16_t* w3, const uint16_t* xs, uint16_t* hs, float* gpart,
                         int* count, int n, int M, int K, int vec, TcGeometry geo) {
  if (vec) {
    tc_prefill<true, TC_GU_WF, TC_GU_WT, TC_GU_TT, TC_GU_STAGES, true>(w1, w3, xs, hs, gpart, count, n, M, K, vec, geo);
  } else {
    tc_prefill<true, TC_GU_WF, TC_GU_WT, TC_GU_TT, TC_GU_STAGES, false>(w1, w3, xs, hs, gpart, count, n, M, K, vec, geo);
  }
}
extern "C" __global__ void __launch_bounds__(TC_DN_WF * TC_DN_WT * WARP, TC_PREFILL_MIN_BLOCKS)
moe_down_bf16_prefill(const uint16_t* w2, const uint16_t* hs, float* y, float* gpart, int* count, int n, int M, int K,
                      int vec, TcGeometry geo) {
  if (vec) {
    tc_prefill<false, TC_DN_WF, TC_DN_WT, TC_DN_TT, TC_DN_STAGES, true>(w2, w2, hs, y, gpart, count, n, M, K, vec, geo);
  } else {
    tc_prefill<false, TC_DN_WF, TC_DN_WT, TC_DN_TT, TC_DN_STAGES, false>(w2, w2, hs, y, gpart, count, n, M, K, vec, geo);
  }
}
